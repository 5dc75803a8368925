"""Bringing existing history in: each module turns one outside source into what the API takes.

An importer yields Items: a Job (a POST /api/jobs body), a Rating, a Review, or a Problem (an
entry that cannot be imported, and why). It knows its source format and nothing of journals,
indexes or HTTP: `run.py` writes what they find through the service, as the API would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson


@dataclass(frozen=True)
class Where:
    """Where an entry was found: a file, and its line or item number (1-based) when it has one."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return self.path if self.line is None else f"{self.path}:{self.line}"


@dataclass
class Job:
    body: dict  # a POST /api/jobs body
    where: Where
    stored: bool = False  # the body is a line as learning_svc stored it (our own export): keep it as is
    amendments: list[dict] = field(default_factory=list)  # our export's amendment lines: `set` of each
    note: str = ""  # imported, with something left out that the report says (a text chunk too large)
    # The entry is a record as posted (a JSONL of records): what it says otherwise than the job
    # recorded is a conflict to report (the API's 409). A StableNew job's merged lines, an
    # image's copy elsewhere, are the same job told again: nothing to report.
    strict: bool = False


@dataclass
class Rating:
    job_id: str
    rating: int
    timestamp: float
    source: str
    rating_id: str  # the same for the same rating in a second import: it is then seen to be there
    where: Where


@dataclass
class Review:
    """A job's review as another service had it (our export): what the job here lacks is set."""

    job_id: str
    review: dict  # flag, tags, note, scores, image_ratings (an export's `learning_svc.review`)
    where: Where


@dataclass
class Problem:
    where: Where
    reason: str
    outcome: str = "refused"  # "refused" (it carries a job that cannot be imported) | "skipped" (no job to import)


Item = Job | Rating | Review | Problem


def json_lines(path: Path, strict: bool = False) -> Iterator[tuple[Where, object]]:
    """(where, value) of each non-blank line of a JSONL file, or (where, Problem) for a line that
    is not JSON. `strict`: JSON as the API reads it (NaN and Infinity, which Python's json
    writes and StableNew's files may hold, are not JSON numbers there)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = Where(str(path), number)
            try:
                yield where, orjson.loads(raw) if strict else json.loads(raw)
            except (ValueError, UnicodeDecodeError) as error:
                yield where, Problem(where, f"not JSON ({error})")


DATA_FOLDER_CACHES = ("thumbnails", "imports")  # a learning_svc data folder's, never history


def is_data_folder(folder: Path) -> bool:
    """A learning_svc data folder (a StableNew installation may hold one: logs/learning)."""
    from ..osutil import FOLDER_ID_FILE

    return any((folder / name).exists() for name in (FOLDER_ID_FILE, "learning_log_v2.jsonl", "index.sqlite3"))


def in_data_folder_cache(path: Path) -> bool:
    """Is this file in a learning_svc data folder's thumbnails or reports? (Made from jobs:
    imported, each thumbnail of an image became a job of its own, and each view made another.)"""
    return any(folder.name in DATA_FOLDER_CACHES and is_data_folder(folder.parent) for folder in path.parents)
