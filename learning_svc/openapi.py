"""The OpenAPI 3.1 document, generated from the pydantic models (JSON Schema 2020-12, 3.1's dialect)."""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from .config import Settings
from .params import AmendParams, ChangesParams, ExportParams, FacetParams, ListParams, query_parameters
from .records import JobIn, JobSummary, RatingClear, RatingIn
from .reviews import BatchIn, ImageRatingIn, ReviewIn


class JobPage(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None


class RatingEvent(BaseModel):
    schema_: Literal["learning_rating_v2"] = "learning_rating_v2"
    rating_id: str
    job_id: str
    rating: int | None
    timestamp: float
    source: str


class JobDetail(BaseModel):
    record: dict = Field(description="the stored line, with the job's amendments applied")
    summary: JobSummary = Field(description="the job as the listing shows it")
    amendments: list[dict] = Field(description="the job's amendment lines (learning_amend_v2), oldest first")
    rating: int | None
    rated_at: float | None
    rating_history: list[RatingEvent]


class JobPatch(BaseModel):
    """Fields of a job record (as in JobRecord) to set; anything but job_id and what the service writes."""

    model_config = ConfigDict(
        extra="allow", title="JobPatch", json_schema_extra={"minProperties": 1, "not": {"required": ["job_id"]}}
    )


class AmendResult(BaseModel):
    job_id: str
    amended: list[str] = Field(description="the fields changed; empty when the job already had these values")
    summary: JobSummary


class RatingResult(BaseModel):
    job_id: str
    rating: int | None
    rated_at: float | None


class AmendedSummary(JobSummary):
    matches: bool = Field(description="whether the job, amended, matches the filters (it may have come into them)")


class Changes(BaseModel):
    jobs: list[JobSummary] = Field(description="new jobs matching the filters, in the order they arrived")
    amended: list[AmendedSummary] = Field(description="jobs amended since the position (whatever the filters)")
    rated: list[JobSummary] = Field(description="each job rated or reviewed since the position, as it is now")
    next: str = Field(description="the position to ask from next time")
    more: bool = Field(description="true: more changes wait; ask again from `next` at once")


class Count(BaseModel):
    jobs: int = Field(description="jobs matching the filters, counted up to 100,000")
    exact: bool = Field(description="false: there are more than `jobs`")
    unrated: int = Field(description="of those, jobs without a rating (counted up to 100,000)")
    unrated_exact: bool


class ReviewResult(BaseModel):
    job_id: str
    output: int | None = Field(description="the image reviewed; null: the job")
    changed: list[str] = Field(description="the keys that changed; empty when it already was so (nothing written)")
    previous: dict = Field(description="a `set` that puts back what changed (for undo)")
    expect: dict = Field(description="what the change left: an undo's `expect` (POST /api/ratings:batch items)")
    review: dict | None = Field(description="the job's review state now")


class BatchUndo(BaseModel):
    job_id: str
    output: int | None
    set: dict
    expect: dict


class BatchTarget(BaseModel):
    job_id: str
    output: int | None


class BatchResult(BaseModel):
    changed: int
    unchanged: int
    previous: list[BatchUndo] = Field(description="POST these back as `items` to undo the batch")
    conflicted: list[BatchTarget] = Field(
        description="items left out: their job no longer holds what their `expect` says (changed since)"
    )


class FacetValue(BaseModel):
    value: str | int | None
    count: int
    mean_rating: float | None


class FacetSample(BaseModel):
    jobs: int
    order: str


class Facets(BaseModel):
    facets: dict[str, list[FacetValue]]
    sampled: FacetSample | None = None  # set when counted over the newest `jobs` matching jobs only
    filter_values: dict[str, dict[str, str]] = {}  # field -> each value of the query -> the facet value it is
    implied: dict[str, list[str]] = {}  # filters the query's values imply: a sampler named with its scheduler


class ErrorField(BaseModel):
    loc: str
    msg: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[ErrorField]


class ErrorBody(BaseModel):
    error: ErrorDetail


class BatchLine(BaseModel):
    """One line of the answer to an NDJSON batch: the result of the record on that line."""

    line: int = Field(description="the record's line in the batch, from 1")
    status: int = Field(description="what a POST of the record alone would have answered: 201, 200, 400, 409, 503")
    job_id: str | None = Field(description="the record's job_id (null when the line has none)")
    summary: JobSummary | None = Field(None, description="the stored summary (status 200 or 201)")
    error: ErrorDetail | None = Field(None, description="why the record was not recorded (any other status)")


class FieldInfo(BaseModel):
    name: str
    label: str
    plural: str
    kind: str
    multi: bool
    facet: bool
    choices: list[str] | None
    description: str


class FieldList(BaseModel):
    fields: list[FieldInfo]


MODELS = (
    JobIn,
    JobPatch,
    AmendResult,
    RatingIn,
    RatingClear,
    JobSummary,
    JobPage,
    JobDetail,
    Changes,
    Count,
    ReviewIn,
    ImageRatingIn,
    ReviewResult,
    BatchIn,
    BatchResult,
    RatingResult,
    Facets,
    FieldList,
    ErrorBody,
    BatchLine,
)


@cache
def _schemas() -> tuple[dict, dict]:
    return models_json_schema([(m, "validation") for m in MODELS], ref_template="#/components/schemas/{model}")


def _ref(model: type[BaseModel]) -> dict:
    # pydantic names each component itself (the class name, not the title): ask it, never guess
    return _schemas()[0][(model, "validation")]


def _json(model) -> dict:
    return {"content": {"application/json": {"schema": _ref(model)}}}


NDJSON = "application/x-ndjson"
BATCH_LINES, BATCH_BYTES = Settings.max_batch_lines, Settings.max_batch_bytes  # the defaults


def _errors(*codes: int) -> dict:
    return {str(code): {"description": "error", **_json(ErrorBody)} for code in codes}


def _link(operation: str, **parameters) -> dict:
    return {"operationId": operation, "parameters": {"job_id": "$response.body#/job_id", **parameters}}


# Links between operations (a recorded job can be read, rated, amended, its outputs fetched), so
# that stateful fuzzers such as schemathesis follow them with real job ids.
JOB_LINKS = {
    "GetJob": _link("getJob"),
    "RateJob": _link("rateJob"),
    "ClearRating": _link("clearRating"),
    "AmendJob": _link("amendJob"),
    "FirstOutput": _link("outputImage", n="0"),  # a link's parameter values are strings in 3.1's schema
    "FirstThumbnail": _link("outputThumbnail", n="0"),
}

JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
}
OUTPUT_N = {"name": "n", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}


WRITES = ("post", "put", "patch", "delete")


@cache
def document() -> dict:
    """The OpenAPI document; every operation that reads or writes the index may answer 503
    (the index database cannot be reached, e.g. PostgreSQL restarting), and every write 401
    without the bearer token when the service has one (LEARNING_SVC_TOKEN)."""
    spec = _document()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path != "/api/fields":
                operation["responses"].setdefault("503", _errors(503)["503"])
            if method in WRITES:
                operation["responses"].setdefault("401", _errors(401)["401"])
                operation["security"] = [{"bearer": []}, {}]  # {}: none needed when the service has no token
    return spec


def _document() -> dict:
    _, top = _schemas()
    return {
        "openapi": "3.1.0",  # pydantic writes JSON Schema 2020-12, which is 3.1's ({"type": "null"})
        "info": {
            "title": "learning_svc",
            "version": "2",
            "description": "Job history and ratings of a Stable Diffusion pipeline (see SPEC.md).",
        },
        "paths": {
            "/api/jobs": {
                "post": {
                    "summary": "Record a completed job",
                    "operationId": "recordJob",
                    "description": (
                        f"One record as JSON; or many as {NDJSON}, one record (JobIn) a line, at most "
                        f"{BATCH_LINES:,} lines and {BATCH_BYTES // 2**20} MiB (the defaults), written with one "
                        "fsync: the answer is 200 with one BatchLine a line, in the records' order. A refused "
                        "line never blocks the others; the batch itself is refused (413) only when it is too large."
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {
                            **_json(JobIn)["content"],
                            NDJSON: {"schema": {"type": "string", "description": "one JobIn a line"}},
                        },
                    },
                    "responses": {
                        "201": {"description": "recorded", **_json(JobSummary), "links": JOB_LINKS},
                        "200": {
                            "description": f"identical retry (JSON); or the results of a batch ({NDJSON})",
                            "content": {
                                **_json(JobSummary)["content"],
                                NDJSON: {"schema": {**_ref(BatchLine), "description": "one a line"}},
                            },
                            "links": JOB_LINKS,
                        },
                        **_errors(400, 403, 409, 413, 415, 503),
                    },
                },
                "get": {
                    "summary": "List jobs",
                    "operationId": "listJobs",
                    "parameters": query_parameters(ListParams),
                    "responses": {
                        "200": {
                            "description": "a page of jobs",
                            **_json(JobPage),
                            "links": {
                                "NextPage": {
                                    "operationId": "listJobs",
                                    "parameters": {"cursor": "$response.body#/next_cursor"},
                                },
                                "FirstJob": {
                                    "operationId": "getJob",
                                    "parameters": {"job_id": "$response.body#/jobs/0/job_id"},
                                },
                            },
                        },
                        **_errors(400),
                    },
                },
            },
            "/api/jobs/{job_id}": {
                "get": {
                    "summary": "One job with its rating history",
                    "operationId": "getJob",
                    "parameters": [JOB_ID],
                    "responses": {"200": {"description": "the job", **_json(JobDetail)}, **_errors(404)},
                },
                "patch": {
                    "summary": "Amend a recorded job: set fields (appends an amendment line)",
                    "operationId": "amendJob",
                    "parameters": [JOB_ID, *query_parameters(AmendParams)],
                    "requestBody": {"required": True, **_json(JobPatch)},
                    "responses": {
                        "200": {"description": "amended (or already so)", **_json(AmendResult)},
                        **_errors(400, 403, 404, 409, 413, 415, 503),
                    },
                },
            },
            "/api/jobs/{job_id}/outputs/{n}": {
                "get": {
                    "summary": "Output image n of a job; a placeholder image when it cannot be read",
                    "operationId": "outputImage",
                    "parameters": [JOB_ID, OUTPUT_N],
                    "responses": {
                        "200": {
                            "description": "the image",
                            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
                        },
                        **_errors(404),
                    },
                },
            },
            "/api/jobs/{job_id}/outputs/{n}/thumbnail": {
                "get": {
                    "summary": "A small JPEG of output n; a placeholder image when it cannot be read",
                    "description": "503 with Retry-After while another large image's thumbnail is being made "
                    "(one at a time, and none waited for).",
                    "operationId": "outputThumbnail",
                    "parameters": [JOB_ID, OUTPUT_N],
                    "responses": {
                        "200": {
                            "description": "the thumbnail",
                            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
                        },
                        **_errors(404, 503),
                    },
                },
            },
            "/api/jobs/{job_id}/rating": {
                "put": {
                    "summary": "Rate a job 0-5",
                    "operationId": "rateJob",
                    "parameters": [JOB_ID],
                    "requestBody": {"required": True, **_json(RatingIn)},
                    "responses": {
                        "200": {
                            "description": "stored",
                            **_json(RatingResult),
                            "links": {"GetJob": _link("getJob"), "ClearRating": _link("clearRating")},
                        },
                        **_errors(400, 403, 404, 413, 415, 503),
                    },
                },
                "delete": {
                    "summary": "Clear a job's rating",
                    "operationId": "clearRating",
                    "parameters": [JOB_ID],
                    "requestBody": {"required": False, **_json(RatingClear)},
                    "responses": {
                        "200": {"description": "cleared", **_json(RatingResult)},
                        **_errors(400, 403, 404, 413, 415, 503),
                    },
                },
            },
            "/api/jobs/{job_id}/outputs/{n}/rating": {
                "put": {
                    "summary": "Rate one image of a job 0-5 (the job's own rating stays)",
                    "operationId": "rateImage",
                    "parameters": [JOB_ID, OUTPUT_N],
                    "requestBody": {"required": True, **_json(ImageRatingIn)},
                    "responses": {
                        "200": {"description": "stored (or already so)", **_json(ReviewResult)},
                        **_errors(400, 403, 404, 413, 415, 503),
                    },
                },
                "delete": {
                    "summary": "Clear an image's rating",
                    "operationId": "clearImageRating",
                    "parameters": [JOB_ID, OUTPUT_N],
                    "requestBody": {"required": False, **_json(RatingClear)},
                    "responses": {
                        "200": {"description": "cleared", **_json(ReviewResult)},
                        **_errors(400, 403, 404, 413, 415, 503),
                    },
                },
            },
            "/api/jobs/{job_id}/review": {
                "post": {
                    "summary": "Flag, tag, note or sub-score a job (a review event with what changed)",
                    "operationId": "reviewJob",
                    "parameters": [JOB_ID],
                    "requestBody": {"required": True, **_json(ReviewIn)},
                    "responses": {
                        "200": {"description": "stored (or already so)", **_json(ReviewResult)},
                        **_errors(400, 403, 404, 413, 415, 503),
                    },
                }
            },
            "/api/ratings:batch": {
                "post": {
                    "summary": "Rate, flag or tag many jobs in one append and fsync; or undo one",
                    "operationId": "reviewBatch",
                    "requestBody": {"required": True, **_json(BatchIn)},
                    "responses": {
                        "200": {"description": "stored", **_json(BatchResult)},
                        **_errors(400, 403, 404, 409, 413, 415, 503),
                    },
                }
            },
            "/api/ratings": {
                "get": {
                    "summary": "Current rating of every rated job",
                    "operationId": "ratings",
                    "responses": {
                        "200": {
                            "description": "{job_id: rating}",
                            "content": {
                                "application/json": {
                                    "schema": {"type": "object", "additionalProperties": {"type": "integer"}}
                                }
                            },
                        }
                    },
                }
            },
            "/api/changes": {
                "get": {
                    "summary": "What arrived since a position: new jobs, amendments, ratings (the page follows this)",
                    "operationId": "changes",
                    "parameters": query_parameters(ChangesParams),
                    "responses": {
                        "200": {
                            "description": "the changes and the next position",
                            **_json(Changes),
                            "links": {
                                "Following": {
                                    "operationId": "changes",
                                    "parameters": {"after": "$response.body#/next"},
                                }
                            },
                        },
                        **_errors(400),
                    },
                }
            },
            "/api/count": {
                "get": {
                    "summary": "How many jobs match the filters, and how many of them are unrated",
                    "description": "Takes a listing's query string as it is: its sort, limit and cursor change no count.",
                    "operationId": "count",
                    "parameters": query_parameters(ListParams),
                    "responses": {"200": {"description": "the counts", **_json(Count)}, **_errors(400)},
                }
            },
            "/api/facets": {
                "get": {
                    "summary": "Value counts and mean ratings per field",
                    "operationId": "facets",
                    "parameters": query_parameters(FacetParams),
                    "responses": {"200": {"description": "facets", **_json(Facets)}, **_errors(400)},
                }
            },
            "/api/export": {
                "get": {
                    "summary": "Stream matching jobs as JSONL or CSV",
                    "operationId": "export",
                    "parameters": query_parameters(ExportParams),
                    "responses": {
                        "200": {
                            "description": "the export",
                            "content": {
                                "application/x-ndjson": {"schema": {"type": "string"}},
                                "text/csv": {"schema": {"type": "string"}},
                            },
                        },
                        **_errors(400),
                    },
                }
            },
            "/api/fields": {
                "get": {
                    "summary": "The filterable and facetable fields (for building pickers)",
                    "operationId": "fields",
                    "responses": {"200": {"description": "the fields", **_json(FieldList)}},
                }
            },
            "/api/health": {
                "get": {
                    "summary": "Status and counts",
                    "operationId": "health",
                    "responses": {
                        "200": {
                            "description": "health",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": top["$defs"],
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "LEARNING_SVC_TOKEN, needed on writes when the service is given one",
                }
            },
        },
    }
