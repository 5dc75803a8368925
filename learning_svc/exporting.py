"""Export of matching jobs as JSONL (each stored record as stored, the service's view under
`learning_svc`) or CSV (one row per job: identity, times in UTC, every registry field, the
generation summary and the rating), streamed."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import BinaryIO

import orjson

from . import params, records
from .config import Settings
from .fields import FIELDS

FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
EXPORT_KEY = "learning_svc"  # the service's own fields in an exported JSONL line, apart from the record's


def _iso(epoch) -> str:
    if not isinstance(epoch, (int, float)):
        return ""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _weights(items) -> str:
    return "|".join(f"{i['name']}:{i.get('weight', 1.0):g}" for i in items or () if isinstance(i, dict) and "name" in i)


def _field_columns(taken: set[str]) -> list:
    """A column per registry field: its values as grouped (display form, several joined by "|"),
    named `<field>_group` where a column of the raw value already has the field's name.
    Numbers and choices are shown as given, so they need no second column."""
    columns = []
    for field in FIELDS:
        if field.review:  # the review's own columns come last (REVIEW_COLUMNS)
            continue
        if field.name in taken and (field.kind != "text" or not field.groups):
            continue
        name = f"{field.name}_group" if field.name in taken else field.name
        columns.append((name, lambda s, r, field=field: "|".join(display for _, display in field.values(r))))
    return columns


def _output(item: tuple[str, int]) -> int:
    return int(item[0])


# (column, value from (summary, stored record))
_SUMMARY_COLUMNS = [
    ("job_id", lambda s, r: s["job_id"]),
    ("status", lambda s, r: s["status"]),
    ("completed_at", lambda s, r: _iso(s["completed_at"])),
    ("started_at", lambda s, r: _iso(s["started_at"])),
    ("duration_sec", lambda s, r: s["duration_sec"]),
    ("rating", lambda s, r: s["rating"]),
    ("rated_at", lambda s, r: _iso(s["rated_at"])),
    ("run_id", lambda s, r: s.get("run_id")),
    ("variant_index", lambda s, r: s["variant_index"]),
    ("variant_total", lambda s, r: s["variant_total"]),
    ("model", lambda s, r: s["model"]),
    ("vae", lambda s, r: s.get("vae")),
    ("sampler", lambda s, r: s["sampler"]),
    ("scheduler", lambda s, r: s["scheduler"]),
    ("steps", lambda s, r: s["steps"]),
    ("cfg_scale", lambda s, r: s["cfg_scale"]),
    ("seed", lambda s, r: s["seed"]),
    ("width", lambda s, r: s["width"]),
    ("height", lambda s, r: s["height"]),
]
# The review (reviews.py): tags joined by "|", sub-scores and image ratings as name:value.
REVIEW_COLUMNS = [
    ("flag", lambda s, r: s["flag"]),
    ("tag", lambda s, r: "|".join(s["tags"])),
    ("note", lambda s, r: s["note"]),
    ("scores", lambda s, r: "|".join(f"{name}:{value}" for name, value in sorted(s["scores"].items()))),
    ("image_rating", lambda s, r: "|".join(f"{n}:{v}" for n, v in sorted(s["image_ratings"].items(), key=_output))),
]
CSV_COLUMNS = [
    *_SUMMARY_COLUMNS,
    *_field_columns({name for name, _ in _SUMMARY_COLUMNS}),
    ("lora_weights", lambda s, r: _weights(r.get("loras"))),
    ("embedding_weights", lambda s, r: _weights(r.get("embeddings"))),
    ("prompt", lambda s, r: r.get("prompt")),
    ("negative_prompt", lambda s, r: r.get("negative_prompt")),
    ("num_outputs", lambda s, r: s["num_outputs"]),
    ("outputs", lambda s, r: "|".join(s["outputs"])),
    ("error", lambda s, r: s.get("error")),
    *REVIEW_COLUMNS,
]


def jsonl_chunks(rows: Iterable) -> Iterator[bytes]:
    """Each stored line unchanged, plus the service's view of it under EXPORT_KEY (never over a
    stored key): the rating, and the job's amendment lines when it has any."""
    for summary, lines in rows:
        line, amendments = lines()
        line[EXPORT_KEY] = {"rating": summary["rating"], "rated_at": summary["rated_at"]}
        review = {key: summary[key] for key in ("flag", "tags", "note", "scores", "image_ratings") if summary[key]}
        if review:
            line[EXPORT_KEY]["review"] = review
        if amendments:
            line[EXPORT_KEY]["amendments"] = amendments
        yield orjson.dumps(line) + b"\n"


def csv_chunks(rows: Iterable) -> Iterator[bytes]:
    """One row per job, from its current record (amendments applied)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180; a lone CR in a value is then quoted
    writer.writerow([name for name, _ in CSV_COLUMNS])
    for summary, lines in rows:
        base, amendments = lines()
        stored = records.effective_line(base, amendments) if amendments else base
        writer.writerow([_cell(get(summary, stored)) for _, get in CSV_COLUMNS])
        if buffer.tell() > 65536:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    """A CSV cell. Text that a spreadsheet would take for a formula (`=HYPERLINK(...)` in a
    prompt read from a downloaded image) is written with a leading `'`, as OWASP advises:
    shown as text, never run. Numbers are written as numbers."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def chunks(rows: Iterable, fmt: str) -> Iterator[bytes]:
    return jsonl_chunks(rows) if fmt == "jsonl" else csv_chunks(rows)


def export_to(settings: Settings, query: dict[str, list[str]], fmt: str, out: BinaryIO) -> int:
    """The command-line export: same filters as the API, written to `out`; returns the job count."""
    from .service import Service

    chosen = params.parse(params.ExportParams, {**query, "format": [fmt]})
    if not settings.log_path.exists():  # no history here (yet): an empty export, and nothing made
        out.write(b"".join(chunks([], fmt)))
        return 0
    service = Service(settings).start()
    count = 0
    try:

        def counted():
            nonlocal count
            for item in service.export(chosen.filters(), chosen.sort):
                count += 1
                yield item

        for chunk in chunks(counted(), fmt):
            out.write(chunk)
    finally:
        service.close()
    return count
