"""A JSONL file of job records as a pipeline POSTs them: one POST /api/jobs body a line (the
samples' jobs.jsonl, or a pipeline's own log of what it sent). Each line
becomes a job, validated as the API validates a body; a line that is not a JSON object is
refused with its reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from . import Item, Job, Problem, Where


def looks_like(first: dict) -> bool:
    """A record as posted: a job id, and no schema (a stored line names its schema)."""
    return isinstance(first.get("job_id"), str) and "schema" not in first


def record_lines(path: Path) -> Iterator[Item]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = Where(str(path), number)
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as error:
                yield Problem(where, f"not JSON ({error})")
                continue
            if not isinstance(body, dict):
                yield Problem(where, "not a JSON object (one job record a line)")
                continue
            yield Job(body, where)
