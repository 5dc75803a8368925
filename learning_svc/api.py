"""Flask blueprint: HTTP <-> service. One error handler gives every error the SPEC §2 shape."""
from __future__ import annotations

import csv
import io
from urllib.parse import quote

import orjson
from flask import Blueprint, Response, current_app, request, stream_with_context
from werkzeug.exceptions import HTTPException

from . import records
from .index import queries
from .security import Refused
from .service import Conflict, NotFound, Service, Unavailable

bp = Blueprint("api", __name__, url_prefix="/api")
CSV_FIELDS = ("job_id", "status", "completed_at", "started_at", "duration_sec", "packs", "variant_index",
              "variant_total", "num_outputs", "model", "sampler", "scheduler", "steps", "cfg_scale", "seed",
              "width", "height", "loras", "embeddings", "outputs", "rating", "rated_at")


def service() -> Service:
    return current_app.extensions["learning_svc"]


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, headers=headers, mimetype="application/json")


def error_response(status: int, code: str, message: str, fields: list | None = None) -> Response:
    return json_response({"error": {"code": code, "message": message, "fields": fields or []}}, status)


def read_json():
    data = request.get_data(cache=False)
    if len(data) > current_app.config["MAX_CONTENT_LENGTH"]:
        raise Refused(413, "too_large", "the body is larger than 1 MiB")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise records.InvalidRecord(f"the body is not valid JSON: {error}", [{"loc": "body", "msg": str(error)}]) from None


def args() -> dict[str, list[str]]:
    return request.args.to_dict(flat=False)


# ---------------------------------------------------------------- jobs

@bp.post("/jobs")
def post_job():
    job = records.parse(records.JobIn, read_json())
    created, summary = service().record_job(job)
    location = f"/api/jobs/{quote(job.job_id, safe='')}"
    return json_response(summary, 201 if created else 200, {"Location": location})


@bp.get("/jobs")
def list_jobs():
    jobs, next_cursor = service().list_jobs(queries.parse_page(args()))
    return json_response({"jobs": jobs, "next_cursor": next_cursor})


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    return json_response(service().get_job(job_id))


@bp.put("/jobs/<job_id>/rating")
def put_rating(job_id: str):
    body = records.parse_rating(read_json())
    return json_response(service().rate_job(job_id, body.rating, body.source))


@bp.delete("/jobs/<job_id>/rating")
def delete_rating(job_id: str):
    source = "api"
    if request.content_length:
        body = read_json()
        if isinstance(body, dict) and isinstance(body.get("source"), str):
            source = body["source"][:32]
    return json_response(service().rate_job(job_id, None, source))


@bp.get("/ratings")
def ratings():
    queries.parse_filters(args(), set())
    return json_response(service().ratings_dict())


@bp.get("/facets")
def facets():
    params = args()
    size = queries._int(params, "facet_size", 1, 1000) or 50
    params.pop("facet_size", None)
    return json_response({"facets": service().facets(queries.parse_filters(params), size)})


@bp.get("/export")
def export():
    params = args()
    fmt = queries._one(params, "format") or "jsonl"
    sort = queries._one(params, "sort") or "-completed_at"
    params.pop("format", None)
    params.pop("sort", None)
    if fmt not in ("jsonl", "csv"):
        raise queries.BadQuery("format", f"must be jsonl or csv, got {fmt[:20]!r}")
    if sort not in queries.SORTS:
        raise queries.BadQuery("sort", f"must be one of {', '.join(queries.SORTS)}")
    rows = service().export(queries.parse_filters(params), sort)
    body = _jsonl(rows) if fmt == "jsonl" else _csv(rows)
    mimetype = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
    headers = {"Content-Disposition": f'attachment; filename="learning_export.{fmt}"'}
    return Response(stream_with_context(body), mimetype=mimetype, headers=headers)


def _jsonl(rows):
    for summary, record in rows:
        line = record()
        line["rating"], line["rated_at"] = summary["rating"], summary["rated_at"]
        yield orjson.dumps(line) + b"\n"


def _csv(rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for summary, _ in rows:
        writer.writerow([_cell(summary.get(name)) for name in CSV_FIELDS])
        if buffer.tell() > 65536:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _cell(value):
    if isinstance(value, list):
        return "|".join(str(v) for v in value)
    return "" if value is None else value


@bp.get("/health")
def health():
    return json_response(service().health())


@bp.get("/openapi.json")
def openapi():
    from .openapi import document
    return json_response(document())


# ---------------------------------------------------------------- errors

def install_error_handlers(app) -> None:
    @app.errorhandler(records.InvalidRecord)
    def _invalid(error):
        return error_response(400, "invalid", str(error), error.fields)

    @app.errorhandler(queries.BadQuery)
    def _bad_query(error):
        return error_response(400, "invalid_parameter", f"{error.param}: {error.msg}",
                              [{"loc": error.param, "msg": error.msg}])

    @app.errorhandler(Refused)
    def _refused(error):
        return error_response(error.status, error.code, error.message)

    @app.errorhandler(NotFound)
    def _not_found(error):
        return error_response(404, "not_found", str(error))

    @app.errorhandler(Conflict)
    def _conflict(error):
        return error_response(409, "conflict", str(error))

    @app.errorhandler(Unavailable)
    def _unavailable(error):
        return error_response(503, "unavailable", str(error))

    @app.errorhandler(HTTPException)
    def _http(error):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(error.code, "http_error")
        message = "the body is larger than 1 MiB" if error.code == 413 else error.description
        return error_response(error.code or 500, code, message)

    @app.errorhandler(Exception)
    def _unexpected(error):
        app.logger.exception("unexpected error")
        return error_response(500, "internal", "an unexpected error happened; see the server log")
