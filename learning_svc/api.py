"""Flask blueprint: HTTP <-> service. One error handler gives every error the SPEC §2 shape."""

from __future__ import annotations

import re
import threading
from urllib.parse import quote

import orjson
from flask import Blueprint, Response, current_app, request, send_file, stream_with_context
from sqlalchemy.exc import DatabaseError, InterfaceError, OperationalError, ProgrammingError
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import IntegerConverter

from . import exporting, images, params, records, reviews
from .fields import FIELDS
from .index import db
from .security import Refused
from .service import (
    RENEWING,
    TABLES_GONE,
    BadReview,
    Conflict,
    NotFound,
    Service,
    Unavailable,
    index_error_message,
    stored_op,
)

ERROR_STATUS = {Conflict: (409, "conflict"), NotFound: (404, "not_found"), Unavailable: (503, "unavailable")}

bp = Blueprint("api", __name__, url_prefix="/api")


class OutputNumber(IntegerConverter):
    """An image's place in its job as the URL gives it: `0`, `1`, ... One address per image:
    `01` was image 1 too, a second URL for its rating and its file."""

    regex = r"(?:0|[1-9][0-9]{0,8})"


@bp.record_once
def _converters(state) -> None:  # before the rules below are added
    state.app.url_map.converters["output"] = OutputNumber


def service() -> Service:
    return current_app.extensions["learning_svc"]


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, headers=headers, mimetype="application/json")


def error_response(status: int, code: str, message: str, fields: list | None = None) -> Response:
    return json_response({"error": {"code": code, "message": message, "fields": fields or []}}, status)


def settings():
    return current_app.extensions["learning_svc_settings"]


def too_large_message(limit: int | None = None) -> str:
    return f"the body is larger than {records.size_text(limit or current_app.config['MAX_CONTENT_LENGTH'])}"


def read_body(limit: int | None = None) -> bytes:
    """The request body, at most `limit` bytes (a JSON body: LEARNING_SVC's one-record limit)."""
    limit = limit or settings().max_body_bytes
    data = request.get_data(cache=False)
    if len(data) > limit:
        raise Refused(413, "too_large", too_large_message(limit))
    # A UTF-8 byte order mark (PowerShell's Out-File, Notepad) is not JSON: RFC 8259 lets a parser
    # pass over it, and a batch's first record was refused for it.
    return data.removeprefix(b"\xef\xbb\xbf")


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
    if request.mimetype == NDJSON:
        return post_batch()
    job = records.parse_json(records.JobIn, read_body(), settings().naive_tz)
    created, summary = service().record_job(job)
    location = f"/api/jobs/{quote(job.job_id, safe='')}"
    return json_response(summary, 201 if created else 200, {"Location": location})


NDJSON = "application/x-ndjson"


def post_batch() -> Response:
    """Many records, one per line: all new ones written with one append and one fsync; one result
    line per record, in order ({line, status, job_id, summary | error}). A bad line never blocks
    the good ones; the whole batch is refused only when it is not a batch we take."""
    config = settings()
    lines = read_body(config.max_batch_bytes).split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()
    if len(lines) > config.max_batch_lines:
        raise Refused(413, "too_large", f"a batch holds at most {config.max_batch_lines:,} records, got {len(lines):,}")
    results: list[dict | None] = [None] * len(lines)
    ops, positions = [], []
    validated = service().validator.validate(lines, config.naive_timezone, config.max_body_bytes)
    for n, (valid, outcome) in enumerate(validated):
        if not valid:
            message, fields = outcome
            results[n] = {
                "line": n + 1,
                "status": 400,
                "job_id": _job_id_of(lines[n]),
                "error": {"code": "invalid", "message": message, "fields": fields},
            }
            continue
        line, data, summary, rows = outcome
        if line is None:  # a worker's: what the decisions read of it
            line = {"job_id": rows.job["job_id"], "input_hash": rows.job["input_hash"]}
        ops.append(stored_op(line, data, summary, rows, source=lines[n]))
        positions.append(n)
    for n, op in zip(positions, service().submit_many(ops, together=True)):
        job_id = op.payload["job_id"]
        if op.error is None:
            created, summary = op.result
            results[n] = {"line": n + 1, "status": 201 if created else 200, "job_id": job_id, "summary": summary}
        else:
            status, code = ERROR_STATUS.get(type(op.error), (503, "unavailable"))
            results[n] = {
                "line": n + 1,
                "status": status,
                "job_id": job_id,
                "error": {"code": code, "message": str(op.error), "fields": []},
            }
    body = b"".join(orjson.dumps(result) + b"\n" for result in results)
    return Response(body, status=200, mimetype=NDJSON)


def _job_id_of(raw: bytes):
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    job_id = value.get("job_id") if isinstance(value, dict) else None
    return job_id if isinstance(job_id, str) else None


@bp.get("/jobs")
def list_jobs():
    jobs, next_cursor = service().list_jobs(params.parse(params.ListParams, args()).page())
    return json_response({"jobs": jobs, "next_cursor": next_cursor})


@bp.get("/changes")
def changes():
    """What arrived since a position, in the index's order of arrival (the page follows it)."""
    chosen = params.parse(params.ChangesParams, args())
    return json_response(service().changes(chosen.filters(), chosen.position()))


@bp.get("/count")
def count():
    """How many jobs match the filters, and how many of them are unrated. A listing's query
    string is taken as it is (its sort, limit and cursor change no count)."""
    return json_response(service().count(params.parse(params.ListParams, args()).filters()))


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


@bp.get("/jobs/<job_id>/outputs/<output:n>")
def output_image(job_id: str, n: int):
    try:
        output = service().open_output(job_id, n)
    except images.Unreadable:
        return _placeholder(images.UNREADABLE, "unreadable")
    except images.Replaced:
        return _placeholder(images.REPLACED, "replaced")
    if output is None:
        return _placeholder()
    # the handle that was checked is the one sent (send_file closes it)
    return send_file(
        output.file,
        mimetype=output.mimetype,
        max_age=3600,
        conditional=True,
        etag=output.etag,
        last_modified=output.stat.st_mtime,
    )


@bp.get("/jobs/<job_id>/outputs/<output:n>/thumbnail")
def output_thumbnail(job_id: str, n: int):
    try:
        found = service().output_thumbnail(job_id, n)
    except images.TooLarge as error:
        return _placeholder(f"too large to preview: {error}", "too-large")
    except images.Busy:
        response = error_response(503, "unavailable", "another large image's thumbnail is being made; ask again")
        response.headers["Retry-After"] = "1"
        response.cache_control.no_store = True
        return response
    except images.Unreadable:
        return _placeholder(images.UNREADABLE, "unreadable")
    except images.Replaced:
        return _placeholder(images.REPLACED, "replaced")
    if found is None:
        return _placeholder()
    data, output = found
    if data is None:
        return _placeholder(images.UNREADABLE, "unreadable")
    response = Response(data, mimetype="image/jpeg")
    response.cache_control.max_age = 3600
    response.set_etag(output.etag)
    response.last_modified = output.stat.st_mtime
    return response.make_conditional(request)


def _placeholder(label: str = images.MISSING, kind: str = "missing") -> Response:
    """A missing, unreadable or too large output shows a placeholder image, never an error page."""
    response = Response(images.placeholder(label), mimetype="image/png", headers={"X-Learning-Placeholder": kind})
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


@bp.put("/jobs/<job_id>/outputs/<output:n>/rating")
def put_image_rating(job_id: str, n: int):
    """Rate one image of a job (a review event with its output index); the job's rating stays."""
    body = records.parse(reviews.ImageRatingIn, read_json())
    return json_response(service().review_job(job_id, {"rating": body.rating}, body.source, output=n))


@bp.delete("/jobs/<job_id>/outputs/<output:n>/rating")
def delete_image_rating(job_id: str, n: int):
    body = records.parse(records.RatingClear, read_json()) if request.content_length else records.RatingClear()
    return json_response(service().review_job(job_id, {"rating": None}, body.source, output=n))


@bp.post("/jobs/<job_id>/review")
def review_job(job_id: str):
    """Flag, tag, note or sub-score a job: one review event with what changed."""
    body = records.parse(reviews.ReviewIn, read_json())
    changes = body.model_dump(exclude_unset=True, exclude={"source"})
    return json_response(service().review_job(job_id, changes, body.source))


@bp.post("/ratings:batch")
def review_batch():
    """One change for many jobs, or one per item (undo): every event in one append and fsync."""
    raw = records.loads(read_body(settings().max_batch_bytes))
    for form in ("job_ids", "items"):  # too many is 413, as for `where` (README: at most 20,000 jobs)
        given = raw.get(form) if isinstance(raw, dict) else None
        if isinstance(given, list) and len(given) > reviews.MAX_BATCH_JOBS:
            raise Refused(
                413, "too_many", f"a change applies to at most {reviews.MAX_BATCH_JOBS:,} jobs, got {len(given):,}"
            )
    body = records.parse(reviews.BatchIn, raw)
    expects = None
    if body.items is not None:
        items = [(item.job_id, item.output, item.set.model_dump(exclude_unset=True)) for item in body.items]
        expects = [item.expect.model_dump(exclude_unset=True) if item.expect else None for item in body.items]
    else:
        changes = body.set.model_dump(exclude_unset=True)
        if body.where is not None:
            job_ids = _matching(body.where, body.expect)
        else:
            job_ids = list(dict.fromkeys(body.job_ids))
        items = [(job_id, None, changes) for job_id in job_ids]
    return json_response(service().review_many(items, body.source, expects))


def _matching(where: str, expect: int) -> list[str]:
    """The jobs a listing query matches, if they are as many as the user confirmed."""
    from urllib.parse import parse_qs

    query = parse_qs(where, keep_blank_values=False)
    query.pop("sort", None)  # a listing's order: the same jobs
    paged = [name for name in ("limit", "cursor") if name in query]
    if paged:  # they were dropped silently, and the change went to every matching job
        raise params.BadQuery("where", f"{paged[0]} picks a page of a listing; a change applies to every job matched")
    filters = params.parse(params.Filtering, query).filters()
    found = service().matching_job_ids(filters, reviews.MAX_BATCH_JOBS)
    if len(found) > reviews.MAX_BATCH_JOBS:
        raise Refused(413, "too_many", f"the filter matches more than {reviews.MAX_BATCH_JOBS:,} jobs; narrow it")
    if len(found) != expect:
        raise Conflict(f"the filter now matches {len(found)} jobs, not the {expect} confirmed; confirm again")
    return found


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
    query = args()
    chosen = params.parse(params.FacetParams, query)
    found, sampled = service().facets(chosen.filters(), chosen.facet_size)
    # Each field value of the query as the facets list it: a link's `sampler=dpmpp_2m` is "DPM++ 2M",
    # `status=FAILED` is "failed" (the facets' own spelling where a job has the value).
    given = [(field, value) for field in FIELDS for value in query.get(field.name, ()) if value.strip()]
    keys = {(field, value): field.parse(value) for field, value in given}
    listed = service().facet_displays({(field.name, key) for (field, _), key in keys.items()})
    spelled: dict[str, dict[str, str]] = {}
    for field, value in given:
        spelled.setdefault(field.name, {})[value] = listed.get((field.name, keys[field, value])) or field.shown(value)
    # `sampler=DPM++ 2M Karras` filters scheduler Karras too (params): said, so that the page's
    # address gets `sampler=DPM++ 2M&scheduler=Karras`, each picker's own value
    implied = {"scheduler": [scheduler]} if (scheduler := params.implied_scheduler(query)) else {}
    return json_response({"facets": found, "sampled": sampled, "filter_values": spelled, "implied": implied})


@bp.get("/export")
def export():
    chosen = params.parse(params.ExportParams, args())
    slots = current_app.extensions["learning_svc_exports"]
    if not slots.acquire(blocking=False):
        # Each export streams on one of the threads that answer reads (Settings.threads): eight
        # at once held them all, and the page and /api/health waited 20-36 s behind them.
        response = error_response(
            503,
            "unavailable",
            f"{export_slots(settings().threads)} exports are being sent already (each takes one of the "
            f"{settings().threads} threads that answer reads); try again when one has finished",
        )
        response.headers["Retry-After"] = "5"
        return response
    taken = threading.Lock()  # the slot is given back once: when the last chunk is out, or on close

    def give_back() -> None:
        if taken.acquire(blocking=False):
            slots.release()

    def sent(chunks):
        try:
            yield from chunks
        finally:
            give_back()

    try:
        body = sent(exporting.chunks(service().export(chosen.filters(), chosen.sort), chosen.format))
        headers = {"Content-Disposition": f'attachment; filename="learning_export.{chosen.format}"'}
        response = Response(stream_with_context(body), content_type=exporting.FORMATS[chosen.format], headers=headers)
    except BaseException:
        give_back()
        raise
    response.call_on_close(give_back)  # cut off or abandoned before its end: waitress closes the response
    return response


def export_slots(threads: int) -> int:
    """Exports streamed at once: a quarter of the read threads, the rest for the page and health."""
    return max(1, threads // 4)


@bp.get("/health")
def health():
    return json_response(service().health())


@bp.get("/openapi.json")
def openapi():
    from .openapi import document

    return json_response(document())


# ---------------------------------------------------------------- errors


_OUTPUT_PATH = re.compile(r"/api/jobs/[^/]+/outputs/([^/]*)(?:/(?:thumbnail|rating))?")


def _not_found_message(path: str) -> str | None:
    """What a 404 of a path the API almost has means (werkzeug's text asked to check the spelling)."""
    match = _OUTPUT_PATH.fullmatch(path)
    if match and not re.fullmatch(OutputNumber.regex, match.group(1)):
        return f"{match.group(1)[:40]!r} is no image number: images are numbered 0, 1, 2, … (no sign, no leading zero)"
    return None


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

    @app.errorhandler(BadReview)
    def _bad_review(error):
        return error_response(400, "invalid", str(error))

    @app.errorhandler(NotFound)
    def _not_found(error):
        return error_response(404, "not_found", str(error))

    @app.errorhandler(Conflict)
    def _conflict(error):
        return error_response(409, "conflict", str(error))

    @app.errorhandler(Unavailable)
    def _unavailable(error):
        return error_response(503, "unavailable", str(error))

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _index_unreachable(error):
        # The index database is down, restarting or refusing connections (or SQLite's file is
        # locked past its timeout): a moment's trouble to try again, not a bug. What was
        # acknowledged is in the JSONL either way.
        app.extensions["learning_svc"].log_unread(error)
        return error_response(503, "unavailable", index_error_message(error))

    @app.errorhandler(ProgrammingError)
    def _index_without_tables(error):
        # Its tables dropped under the service (a database dropped and made again): say so. Any
        # other ProgrammingError is a bug: a 500 as before.
        if index_error_message(error) != TABLES_GONE:
            return _unexpected(error)
        app.logger.error("the index database could not be read: %s", " ".join(str(error.orig or error).split())[:300])
        return error_response(503, "unavailable", TABLES_GONE)

    @app.errorhandler(DatabaseError)
    def _index_damaged(error):
        # SQLite's index file damaged ("file is not a database", "malformed"): the service makes
        # it anew from the JSONL (Service._note_damage); meanwhile a moment's trouble, not a 500.
        if not db.damaged_index(error):
            return _unexpected(error)
        return error_response(503, "unavailable", RENEWING)

    @app.errorhandler(HTTPException)
    def _http(error):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(error.code, "http_error")
        message = too_large_message() if error.code == 413 else error.description
        if error.code == 404:
            message = _not_found_message(request.path) or f"no such address: {request.path[:200]}"
        response = error_response(error.code or 500, code, message)
        if isinstance(error, MethodNotAllowed) and error.valid_methods:  # RFC 9110: a 405 says what is allowed
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error):
        app.logger.exception("unexpected error")
        return error_response(500, "internal", "an unexpected error happened; see the server log")
