"""A JSONL file of job records as a pipeline POSTs them: one POST /api/jobs body a line (the
samples' jobs.jsonl, or a pipeline's own log of what it sent). Each line
becomes a job, validated as the API validates a body; a line that is not a JSON object is
refused with its reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from . import Item, Job, Problem, json_lines


def looks_like(first: dict) -> bool:
    """A record as posted: a job id, and no schema (a stored line names its schema)."""
    return isinstance(first.get("job_id"), str) and "schema" not in first


def record_lines(path: Path) -> Iterator[Item]:
    for where, body in json_lines(path, strict=True):  # validated as POST /api/jobs validates a body
        if isinstance(body, Problem):
            yield body
        elif not isinstance(body, dict):
            yield Problem(where, "not a JSON object (one job record a line)")
        else:
            yield Job(body, where, strict=True)
