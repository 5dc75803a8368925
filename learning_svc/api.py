"""Flask blueprint: HTTP <-> service. One error handler gives every error the SPEC §2 shape."""

from __future__ import annotations

from urllib.parse import quote

import orjson
from flask import Blueprint, Response, current_app, request, send_file, stream_with_context
from werkzeug.exceptions import HTTPException

from . import exporting, images, params, records
from .fields import FIELDS
from .security import Refused
from .service import Conflict, NotFound, Service, Unavailable

bp = Blueprint("api", __name__, url_prefix="/api")


def service() -> Service:
    return current_app.extensions["learning_svc"]


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, headers=headers, mimetype="application/json")


def error_response(status: int, code: str, message: str, fields: list | None = None) -> Response:
    return json_response({"error": {"code": code, "message": message, "fields": fields or []}}, status)


def too_large_message() -> str:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    size = f"{limit / 2**20:g} MiB" if limit >= 2**20 else f"{limit / 1024:g} KiB"
    return f"the body is larger than {size}"


def read_body() -> bytes:
    data = request.get_data(cache=False)
    if len(data) > current_app.config["MAX_CONTENT_LENGTH"]:
        raise Refused(413, "too_large", too_large_message())
    return data


def read_json():
    return records.loads(read_body())


def args() -> dict[str, list[str]]:
    query = request.args.to_dict(flat=False)
    for name, values in query.items():
        # SQLite (FTS5 MATCH among others) cuts strings at NUL: refuse it here like in bodies
        if "\x00" in name or any("\x00" in value for value in values):
            raise params.BadQuery(name.replace("\x00", "\\x00")[:40], "must not contain NUL characters")
    return query


# ---------------------------------------------------------------- jobs


@bp.post("/jobs")
def post_job():
    job = records.parse_json(records.JobIn, read_body(), current_app.extensions["learning_svc_settings"].naive_tz)
    created, summary = service().record_job(job)
    location = f"/api/jobs/{quote(job.job_id, safe='')}"
    return json_response(summary, 201 if created else 200, {"Location": location})


@bp.get("/jobs")
def list_jobs():
    jobs, next_cursor = service().list_jobs(params.parse(params.ListParams, args()).page())
    return json_response({"jobs": jobs, "next_cursor": next_cursor})


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    return json_response(service().get_job(job_id))


@bp.patch("/jobs/<job_id>")
def amend_job(job_id: str):
    """Set fields of a recorded job (an amendment line; the record itself is never rewritten)."""
    chosen = params.parse(params.AmendParams, args())
    patch = records.check_patch(read_json())
    changed, summary = service().amend_job(job_id, patch, chosen.replace)
    return json_response({"job_id": job_id, "amended": changed, "summary": summary})


@bp.get("/jobs/<job_id>/outputs/<int:n>")
def output_image(job_id: str, n: int):
    found = service().output_file(job_id, n)
    if found is None:
        return _placeholder()
    path, mimetype = found
    return send_file(path, mimetype=mimetype, max_age=3600, conditional=True)


@bp.get("/jobs/<job_id>/outputs/<int:n>/thumbnail")
def output_thumbnail(job_id: str, n: int):
    data = service().output_thumbnail(job_id, n)
    if data is None:
        return _placeholder()
    response = Response(data, mimetype="image/jpeg")
    response.cache_control.max_age = 3600
    return response


def _placeholder() -> Response:
    """A missing or unreadable output shows a placeholder image, never an error page."""
    response = Response(images.placeholder(), mimetype="image/png", headers={"X-Learning-Placeholder": "missing"})
    response.cache_control.no_store = True
    return response


@bp.put("/jobs/<job_id>/rating")
def put_rating(job_id: str):
    body = records.parse_rating(read_json())
    return json_response(service().rate_job(job_id, body.rating, body.source))


@bp.delete("/jobs/<job_id>/rating")
def delete_rating(job_id: str):
    body = records.parse(records.RatingClear, read_json()) if request.content_length else records.RatingClear()
    return json_response(service().rate_job(job_id, None, body.source))


@bp.get("/ratings")
def ratings():
    params.parse(params.NoParams, args())
    return json_response(service().ratings_dict())


@bp.get("/fields")
def fields():
    """The filterable fields, for the page's pickers (fields.py)."""
    params.parse(params.NoParams, args())
    return json_response({"fields": [field.describe() for field in FIELDS]})


@bp.get("/facets")
def facets():
    chosen = params.parse(params.FacetParams, args())
    found, sampled = service().facets(chosen.filters(), chosen.facet_size)
    return json_response({"facets": found, "sampled": sampled})


@bp.get("/export")
def export():
    chosen = params.parse(params.ExportParams, args())
    body = exporting.chunks(service().export(chosen.filters(), chosen.sort), chosen.format)
    headers = {"Content-Disposition": f'attachment; filename="learning_export.{chosen.format}"'}
    return Response(stream_with_context(body), content_type=exporting.FORMATS[chosen.format], headers=headers)


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

    @app.errorhandler(params.BadQuery)
    def _bad_query(error):
        return error_response(400, "invalid_parameter", f"{error.param}: {error.msg}", error.fields)

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
        message = too_large_message() if error.code == 413 else error.description
        return error_response(error.code or 500, code, message)

    @app.errorhandler(Exception)
    def _unexpected(error):
        app.logger.exception("unexpected error")
        return error_response(500, "internal", "an unexpected error happened; see the server log")
