"""Export of matching jobs as JSONL (full stored record + rating) or CSV (summary + rating), streamed."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import orjson

from .config import Settings
from .index import queries

CSV_FIELDS = ("job_id", "status", "completed_at", "started_at", "duration_sec", "packs", "variant_index",
              "variant_total", "num_outputs", "model", "sampler", "scheduler", "steps", "cfg_scale", "seed",
              "width", "height", "loras", "embeddings", "outputs", "rating", "rated_at")
FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


def jsonl_chunks(rows: Iterable) -> Iterator[bytes]:
    for summary, record in rows:
        line = record()
        line["rating"], line["rated_at"] = summary["rating"], summary["rated_at"]
        yield orjson.dumps(line) + b"\n"


def csv_chunks(rows: Iterable) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for summary, _ in rows:
        writer.writerow([_cell(summary.get(name)) for name in CSV_FIELDS])
        if buffer.tell() > 65536:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _cell(value):
    if isinstance(value, list):
        return "|".join(str(v) for v in value)
    return "" if value is None else value


def chunks(rows: Iterable, fmt: str) -> Iterator[bytes]:
    return jsonl_chunks(rows) if fmt == "jsonl" else csv_chunks(rows)


def parse_export(params: dict[str, list[str]]) -> tuple[str, str, queries.Filters]:
    """(format, sort, filters) from query parameters; raises BadQuery."""
    params = dict(params)
    fmt = queries.one_param(params, "format") or "jsonl"
    sort = queries.one_param(params, "sort") or "-completed_at"
    params.pop("format", None)
    params.pop("sort", None)
    if fmt not in FORMATS:
        raise queries.BadQuery("format", f"must be jsonl or csv, got {fmt[:20]!r}")
    if sort not in queries.SORTS:
        raise queries.BadQuery("sort", f"must be one of {', '.join(queries.SORTS)}, got {sort[:40]!r}")
    return fmt, sort, queries.parse_filters(params)


def export_to(settings: Settings, params: dict[str, list[str]], fmt: str, out: BinaryIO) -> int:
    """The command-line export: same filters as the API, written to `out`; returns the job count."""
    from .service import Service

    _, sort, filters = parse_export({**params, "format": [fmt]})
    service = Service(settings).start()
    count = 0
    try:
        def counted():
            nonlocal count
            for item in service.export(filters, sort):
                count += 1
                yield item
        for chunk in chunks(counted(), fmt):
            out.write(chunk)
    finally:
        service.close()
    return count
