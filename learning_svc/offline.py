"""Recording a job straight into the journal while the service is down (the client's fallback).

It keeps the service's guarantees: the record is validated as the service would, an
identical retry writes nothing, and the same job id with other content is refused. To
know what is already recorded it asks the index (read-only, standard-library sqlite3)
for the lines it covers and reads the rest of the journal, all under the journal's lock,
so no other writer can add the same job meanwhile. Needs records and the journal only:
no SQLAlchemy, no Flask.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path

import orjson

from . import records
from .journal import Journal

LOG_NAME = "learning_log_v2.jsonl"
INDEX_NAME = "index.sqlite3"


@dataclass
class Outcome:
    status: str  # "created" | "identical" | "conflict" | "invalid"
    summary: dict | None = None
    message: str = ""


def record_offline(
    data_dir: Path, body: bytes, naive_timezone: tzinfo | None = None, lock_timeout: float = 10.0
) -> Outcome:
    """Validate a POST /api/jobs body and append it to the data dir's journal unless it is there.

    Raises OSError (and filelock.Timeout) when the journal cannot be locked or written.
    """
    try:
        job = records.parse(records.JobIn, orjson.loads(body), naive_timezone=naive_timezone)
        line = records.stored_job(job)
    except (records.InvalidRecord, orjson.JSONDecodeError) as error:
        return Outcome("invalid", message=str(error))
    journal = Journal(Path(data_dir) / LOG_NAME, lock_timeout=lock_timeout)
    with journal.locked():
        journal.repair_tail(records.is_sound)  # never glue a line onto the torn tail of a crashed writer
        stored = find_stored(journal, Path(data_dir) / INDEX_NAME, line["job_id"])
        if stored is not None:
            summary = records.job_summary(records.line_summary(stored), None, None)
            if records.same_input(stored.get("input_hash"), job):
                return Outcome("identical", {**summary, "offline": True})
            return Outcome("conflict", message=f"job {line['job_id']!r} was already recorded with different content")
        journal.append(records.dumps(line))
    return Outcome("created", {**records.job_summary(records.line_summary(line), None, None), "offline": True})


def find_stored(journal: Journal, index_path: Path, job_id: str) -> dict | None:
    """The stored line of `job_id`, or None: the index for the part of the journal it covers
    (when it is a SQLite file that agrees with the journal), then the journal past that part."""
    covered = _from_index(journal, index_path, job_id)
    if covered is None:
        return _scan(journal, 0, job_id)
    found, checkpoint = covered
    return found if found is not None else _scan(journal, checkpoint, job_id)


def _from_index(journal: Journal, index_path: Path, job_id: str) -> tuple[dict | None, int] | None:
    """(the line the index knows, or None; the offset it has indexed up to), or None when the
    index cannot say (missing, another database, not matching this journal)."""
    if not index_path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{index_path.as_posix()}?mode=ro", uri=True, timeout=5) as db:
            checkpoint = db.execute("SELECT \"offset\" FROM checkpoints WHERE name = 'log'").fetchone()
            row = db.execute("SELECT id, line_length FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    except sqlite3.Error:
        return None
    offset = checkpoint[0] if checkpoint else 0
    if offset > journal.size() or (offset and journal.read_at(offset - 1, 1) != b"\n"):
        return None  # the journal was replaced or cut: the index no longer describes it
    if row is None:
        return None, offset
    line = _decode(journal.read_at(row[0], row[1]))
    if line is None or line.get("job_id") != job_id:
        return None  # an index of another journal
    return line, offset


def _scan(journal: Journal, start: int, job_id: str) -> dict | None:
    """The first learning_log_v2 line of job_id from `start` (a cheap byte test before parsing)."""
    needle = b'"job_id":' + orjson.dumps(job_id)
    for _, raw in journal.scan(start):
        if needle in raw:
            line = _decode(raw)
            if line is not None and line.get("schema") == records.LOG_SCHEMA and line.get("job_id") == job_id:
                return line
    return None


def _decode(raw: bytes) -> dict | None:
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return line if isinstance(line, dict) else None
