"""learning_svc's own `export --format jsonl`: moving history between machines.

Each line is a stored record as the other service wrote it, with that service's view under
`learning_svc` (rating, rated_at, review, amendment lines). The record is kept as stored (its
job id, logged_at and input hash, so that the pipeline's retries stay identical retries), its
amendments are replayed, its rating becomes a rating event, and its review (flag, tags, note,
sub-scores, image ratings) sets what the job here lacks.

The service's journal itself (learning_log_v2.jsonl) reads the same way, without the view; its
amendment lines are reported: an export carries them with their job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from ..exporting import EXPORT_KEY
from ..records import AMEND_SCHEMA, LOG_SCHEMA
from . import Item, Job, Problem, Rating, Review, Where, json_lines

SOURCE = "import"


def looks_like(first: dict) -> bool:
    return first.get("schema") == LOG_SCHEMA


def export_lines(path: Path) -> Iterator[Item]:
    for where, line in json_lines(path):
        if isinstance(line, Problem):
            yield line
        elif isinstance(line, dict) and line.get("schema") == AMEND_SCHEMA:
            yield Problem(
                where, "an amendment line of a journal: `learning-svc export` carries it with its job", "skipped"
            )
        elif not isinstance(line, dict) or line.get("schema") != LOG_SCHEMA:
            yield Problem(where, "not a learning_log_v2 record", "skipped")
        else:
            yield from _export_line(line, where)


def _export_line(line: dict, where: Where) -> Iterator[Item]:
    view = line.pop(EXPORT_KEY, None) or {}
    amendments = [a.get("set") for a in view.get("amendments") or () if isinstance(a, dict)]
    yield Job(line, where, stored=True, amendments=[a for a in amendments if isinstance(a, dict)])
    rating, rated_at = view.get("rating"), view.get("rated_at")
    if isinstance(rating, int) and not isinstance(rating, bool) and 0 <= rating <= 5 and rated_at is not None:
        digest = hashlib.sha256(f"{line.get('job_id')}\x00{rated_at}\x00{rating}".encode()).hexdigest()[:32]
        yield Rating(str(line.get("job_id")), rating, float(rated_at), SOURCE, f"import-{digest}", where)
    if isinstance(view.get("review"), dict) and view["review"]:
        yield Review(str(line.get("job_id")), view["review"], where)
