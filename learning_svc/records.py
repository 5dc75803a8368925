"""The two line types of the journal: validation, defaults and resolution (SPEC §1)."""

from __future__ import annotations

import hashlib
import math
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from . import prompts

LOG_SCHEMA = "learning_log_v2"
RATING_SCHEMA = "learning_rating_v2"
MAX_DEPTH = 64
MAX_NUMBER = 2**64


def _job_id(value: str) -> str:
    if not 1 <= len(value) <= 128:
        raise ValueError(f"job_id must be 1 to 128 characters, got {len(value)}")
    if _BAD_JOB_ID.search(value):
        raise ValueError("job_id must not contain '/' or control characters")
    return value


def _timestamp(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("must be epoch seconds (a number) or an ISO-8601 string")
    return to_epoch(value)


_BAD_JOB_ID = re.compile(r"[\x00-\x1f\x7f/]")
# The JSON schemas below only document what the validators enforce (OpenAPI, schemathesis).
JobId = Annotated[
    StrictStr,
    AfterValidator(_job_id),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^[^\x00-\x1f\x7f/]+$"}),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Timestamp = Annotated[
    float,
    BeforeValidator(_timestamp),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 99_999_999_999},
                {"type": "string", "format": "date-time"},
            ]
        }
    ),
]


class InvalidRecord(ValueError):
    """Bad input, with field-level details in `fields` ([{"loc", "msg"}])."""

    def __init__(self, message: str, fields: list[dict] | None = None):
        super().__init__(message)
        self.fields = fields or []


def _present(*names: str) -> dict:
    """JSON schema: these keys are given and not null."""
    return {"required": list(names), "properties": {n: {"not": {"type": "null"}} for n in names}}


class NamedWeight(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    name: Name
    weight: float = Field(default=1.0, allow_inf_nan=False)


class JobIn(BaseModel):
    """A completed job as the pipeline posts it (SPEC §1.1). Unknown keys are kept as given."""

    model_config = ConfigDict(
        strict=True,
        extra="allow",
        title="JobRecord",
        json_schema_extra={"anyOf": [_present("completed_at"), _present("started_at", "duration_sec")]},
    )

    job_id: JobId
    variant_index: Annotated[StrictInt, Field(ge=0)] = 0
    variant_total: Annotated[StrictInt, Field(ge=1)] = 1
    batch_index: Annotated[StrictInt, Field(ge=0)] | None = None
    batch_total: Annotated[StrictInt, Field(ge=1)] | None = None
    status: Literal["completed", "failed", "cancelled"] = "completed"
    packs: list[Name] = []
    run_config: dict[str, Any] = {}
    randomization_plan: dict[str, Any] | None = None
    stages: dict[str, dict[str, Any]] = {}
    prompt: str | None = None
    negative_prompt: str | None = None
    model: Name | None = None
    vae: Name | None = None
    sampler: Name | None = None
    scheduler: Name | None = None
    steps: Annotated[StrictInt, Field(ge=0, le=100_000)] | None = None
    cfg_scale: Annotated[float, Field(allow_inf_nan=False)] | None = None
    seed: Annotated[StrictInt, Field(ge=-1, le=MAX_NUMBER - 1)] | None = None
    width: Annotated[StrictInt, Field(ge=0, le=1_000_000)] | None = None
    height: Annotated[StrictInt, Field(ge=0, le=1_000_000)] | None = None
    loras: list[NamedWeight] | None = None
    embeddings: list[NamedWeight] | None = None
    outputs: list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]] = []
    num_outputs: Annotated[StrictInt, Field(ge=0)] | None = None
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    duration_sec: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    timings: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = {}
    run_id: Annotated[str, StringConstraints(max_length=256)] | None = None
    extra: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _cross_field_rules(self) -> JobIn:
        """Rules across fields; fills completed_at / duration_sec from each other."""
        if self.variant_index >= self.variant_total:
            _fail(
                "variant_index",
                f"variant_index ({self.variant_index}) must be less than variant_total ({self.variant_total})",
            )
        if self.num_outputs is not None and self.num_outputs != len(self.outputs):
            _fail(
                "num_outputs",
                f"num_outputs ({self.num_outputs}) must equal the number of outputs ({len(self.outputs)})",
            )
        started, completed, duration = self.started_at, self.completed_at, self.duration_sec
        if completed is None:
            if started is None or duration is None:
                _fail("completed_at", "completed_at is required (or started_at together with duration_sec)")
            self.completed_at = started + duration
        elif started is not None:
            elapsed = completed - started
            if elapsed < 0:
                _fail("completed_at", "completed_at is before started_at")
            if duration is None:
                self.duration_sec = elapsed
            elif abs(duration - elapsed) > 1.0:
                _fail(
                    "duration_sec",
                    f"duration_sec ({duration}) disagrees with completed_at - started_at ({elapsed:.3f})",
                )
        return self


def _fail(loc: str, msg: str):
    """A rule across fields is broken: the error names the field it is about (see _fields)."""
    raise PydanticCustomError("cross_field", "{msg}", {"loc": loc, "msg": msg})


Source = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[\w.\-]+$")]


class RatingIn(BaseModel):
    """Body of PUT /api/jobs/<job_id>/rating."""

    model_config = ConfigDict(strict=True, extra="forbid", title="RatingRequest")
    rating: Annotated[StrictInt, Field(ge=0, le=5)]
    source: Source = "api"


class RatingClear(BaseModel):
    """Optional body of DELETE /api/jobs/<job_id>/rating: the same `source` rule as a PUT."""

    model_config = ConfigDict(strict=True, extra="forbid", title="RatingClearRequest")
    source: Source = "api"


# ---------------------------------------------------------------- the summary


class LineSummary(BaseModel):
    """The listing summary of a stored line (SPEC §2.1), without the rating.

    The one definition: line_summary() builds it for the index, JobSummary adds the rating
    for the API, and the OpenAPI document describes it.
    """

    job_id: str
    status: str
    completed_at: float
    started_at: float | None
    duration_sec: float | None
    packs: list[str]
    variant_index: int
    variant_total: int
    num_outputs: int
    outputs: list[str]
    model: str | None
    vae: str | None
    sampler: str | None
    scheduler: str | None
    steps: int | None
    cfg_scale: float | None
    seed: int | None
    width: int | None
    height: int | None
    loras: list[str]
    embeddings: list[str]
    run_id: str | None
    error: str | None = Field(description="why a failed job failed (`extra.error` or `error_message`)")


class JobSummary(LineSummary):
    rating: int | None
    rated_at: float | None


_COPIED = tuple(name for name in LineSummary.model_fields if name not in ("loras", "embeddings", "error"))


def _names(items) -> list[str]:
    return [item["name"] for item in items or () if isinstance(item, dict) and isinstance(item.get("name"), str)]


def _error(line: dict) -> str | None:
    extra = line.get("extra")
    for value in ((extra or {}).get("error") if isinstance(extra, dict) else None, line.get("error_message")):
        if isinstance(value, str) and value.strip():
            return value[:2000]
    return None


def line_summary(line: dict) -> dict:
    """The LineSummary of a stored line, as a plain dict (built for every indexed line: no validation)."""
    summary = {name: line.get(name) for name in _COPIED}
    summary["loras"] = _names(line.get("loras"))
    summary["embeddings"] = _names(line.get("embeddings"))
    summary["error"] = _error(line)
    return summary


def job_summary(line_part: dict, rating: int | None, rated_at: float | None) -> dict:
    return {**line_part, "rating": rating, "rated_at": rated_at if rating is not None else None}


def is_sound(line: bytes) -> bool:
    """Does a journal line parse as a JSON object? (a torn or garbage last line does not)"""
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def to_epoch(value: float | str) -> float:
    """Epoch seconds from a number or an ISO-8601 string (naive means UTC)."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO-8601 timestamp: {value[:40]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        value = parsed.timestamp()
    if isinstance(value, bool) or not math.isfinite(value) or not 0 <= value < 1e11:
        raise ValueError("timestamp must be epoch seconds between 1970 and year 5000")
    return float(value)


# ---------------------------------------------------------------- validation


def check_json_shape(value: Any, loc: str = "", depth: int = 0) -> None:
    """Refuse what strict JSON parsers let through but the journal must not store."""
    if depth > MAX_DEPTH:
        raise InvalidRecord(
            f"nesting deeper than {MAX_DEPTH} levels", [{"loc": loc or "body", "msg": "too deeply nested"}]
        )
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidRecord(
                "strings must not contain NUL characters", [{"loc": loc or "body", "msg": "contains a NUL character"}]
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            check_json_shape(key, loc, depth + 1)
            check_json_shape(item, f"{loc}.{key}" if loc else key, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_json_shape(item, f"{loc}[{i}]", depth + 1)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) >= MAX_NUMBER:
        raise InvalidRecord("numbers must be below 2**64", [{"loc": loc or "body", "msg": "number too large"}])


# A number of 20+ digits or with a 2-digit exponent may reach 2**64; "\u0000" is an escaped NUL.
_MAYBE_HUGE_NUMBER = re.compile(rb"\d{20}|[eE]\+?\d{2}")


def needs_shape_check(raw: bytes) -> bool:
    """Cheap screens of a raw JSON body: when none fires, check_json_shape cannot fail.

    Nesting deeper than MAX_DEPTH needs more than MAX_DEPTH brackets; NUL must be escaped.
    """
    return (
        b"\\u0000" in raw or raw.count(b"{") + raw.count(b"[") > MAX_DEPTH or _MAYBE_HUGE_NUMBER.search(raw) is not None
    )


def loads(raw: bytes) -> Any:
    """Strict JSON (no NaN/Infinity, valid UTF-8, no lone surrogates) or InvalidRecord."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRecord(f"the body is not valid JSON: {error}", [{"loc": "body", "msg": str(error)}]) from None


def parse_json(model: type[BaseModel], raw: bytes) -> BaseModel:
    """parse() of a raw JSON body, walking it for shape problems only when a screen fires."""
    return parse(model, loads(raw), shape_checked=not needs_shape_check(raw))


def _fields(error: ValidationError) -> list[dict]:
    fields = []
    for err in error.errors(include_url=False):
        ctx = err.get("ctx") or {}
        loc = ctx.get("loc") if err["type"] == "cross_field" else ".".join(str(part) for part in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        loc = loc or "body"
        fields.append({"loc": loc, "msg": msg})
    return fields


def parse(model: type[BaseModel], data: Any, shape_checked: bool = False) -> BaseModel:
    if not isinstance(data, dict):
        raise InvalidRecord("the body must be a JSON object", [{"loc": "body", "msg": "expected an object"}])
    if not shape_checked:
        check_json_shape(data)
    try:
        parsed = model.model_validate(data)
    except ValidationError as error:
        fields = _fields(error)
        summary = "; ".join(f"{f['loc']}: {f['msg']}" for f in fields[:3])
        raise InvalidRecord(f"invalid {model.model_config.get('title', 'record')}: {summary}", fields) from None
    return parsed


def parse_rating(data: Any) -> RatingIn:
    if isinstance(data, dict) and "rating" in data:
        rating = data["rating"]
        if isinstance(rating, bool) or not isinstance(rating, int) or not 0 <= rating <= 5:
            msg = f"rating must be an integer from 0 to 5, got {orjson.dumps(rating).decode()[:40]}"
            raise InvalidRecord(msg, [{"loc": "rating", "msg": msg}])
    return parse(RatingIn, data)


# ---------------------------------------------------------------- resolution

_LOOKUP_KEYS = {
    "prompt": ("prompt",),
    "negative_prompt": ("negative_prompt",),
    "model": ("model", "sd_model_checkpoint", "model_name"),
    "vae": ("vae", "sd_vae"),
    "sampler": ("sampler", "sampler_name"),
    "scheduler": ("scheduler",),
    "steps": ("steps",),
    "cfg_scale": ("cfg_scale",),
    "seed": ("seed",),
    "width": ("width",),
    "height": ("height",),
}
_LOOKUP_TYPES = {"steps": int, "seed": int, "width": int, "height": int, "cfg_scale": (int, float)}


def _lookup(sources: list[dict], field: str) -> Any:
    wanted = _LOOKUP_TYPES.get(field, str)
    for source in sources:
        for key in _LOOKUP_KEYS[field]:
            value = source.get(key)
            if isinstance(value, wanted) and not isinstance(value, bool) and value != "":
                return float(value) if field == "cfg_scale" else value
    return None


def _lookup_sources(job: JobIn) -> list[dict]:
    candidates = [job.run_config, job.stages.get("txt2img"), job.run_config.get("txt2img")]
    return [c for c in candidates if isinstance(c, dict)]


def input_hash(job: JobIn) -> str:
    canonical = orjson.dumps(job.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


def stored_job(job: JobIn, logged_at: float | None = None) -> dict:
    """The self-contained line written to learning_log_v2.jsonl, keys in a stable order."""
    sources = _lookup_sources(job)
    summary = {f: getattr(job, f) if getattr(job, f) is not None else _lookup(sources, f) for f in _LOOKUP_KEYS}
    loras, embeddings = prompts.detect(summary["prompt"], summary["negative_prompt"])
    if job.loras is not None:
        loras = [lw.model_dump() for lw in job.loras]
    if job.embeddings is not None:
        embeddings = [ew.model_dump() for ew in job.embeddings]
    line = {
        "schema": LOG_SCHEMA,
        "job_id": job.job_id,
        "status": job.status,
        "completed_at": job.completed_at,
        "started_at": job.started_at,
        "duration_sec": job.duration_sec,
        "variant_index": job.variant_index,
        "variant_total": job.variant_total,
        "batch_index": job.batch_index,
        "batch_total": job.batch_total,
        "packs": job.packs,
        **{
            f: summary[f]
            for f in ("model", "vae", "sampler", "scheduler", "steps", "cfg_scale", "seed", "width", "height")
        },
        "prompt": summary["prompt"],
        "negative_prompt": summary["negative_prompt"],
        "loras": loras,
        "embeddings": embeddings,
        "outputs": job.outputs,
        "num_outputs": len(job.outputs),
        "timings": job.timings,
        "run_id": job.run_id,
        "run_config": job.run_config,
        "randomization_plan": job.randomization_plan,
        "stages": job.stages,
        "extra": job.extra,
    }
    line.update(job.model_extra or {})
    line["logged_at"] = time.time() if logged_at is None else logged_at
    line["input_hash"] = input_hash(job)
    return line


def rating_event(job_id: str, rating: int | None, source: str, timestamp: float | None = None) -> dict:
    return {
        "schema": RATING_SCHEMA,
        "rating_id": str(uuid.uuid4()),
        "job_id": job_id,
        "rating": rating,
        "timestamp": time.time() if timestamp is None else timestamp,
        "source": source,
    }


def dumps(line: dict) -> bytes:
    """One compact journal line, newline included."""
    return orjson.dumps(line) + b"\n"
