"""The jobs a text search matches, kept in memory for common words (SQLite FTS5 only).

Checking FTS5 for one job costs ~80 µs, so a listing that walks its sort index and
checks each job against a word found in a fifth of all prompts spends ~20 ms on a page.
Reading the word's whole match list costs about as much once (~0.5 µs a job), and after
that a Python set answers "does job N match?" in ~0.1 µs from SQL (`text_match(id)`).

The sets stay valid without invalidation: a job's text never changes and jobs are only
appended, so the matches among the jobs below the indexed offset R are final. A set is
extended with the matches above R when the index has grown, and belongs to one index
generation (index_meta), which changes when the index starts over.
"""
from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import Connection, text

# A search matching up to this many jobs fetches and sorts them: cheaper than walking a
# sort index for a rare word (at 1M jobs a page of 50 walks N / matches * 50 jobs).
FETCH_UP_TO = 2_000
# A search matching more than this is checked job by job in FTS5 instead of being held in
# memory: such a word is in so many prompts that a page needs few checks.
SET_MAX = 600_000
CACHE_BYTES = 64 * 2**20  # all held sets together (a set costs ~64 bytes a job)
FUNCTION = "text_match"  # the SQL function the listing calls; bound per query (see bind)


@dataclass
class _Entry:
    ids: set[int] | None  # None: more than SET_MAX matches
    below: int  # the matches of every job with id < below are in ids
    size: int
    lock: threading.Lock


class MatchSets:
    """An LRU of match sets per (index generation, FTS5 query), within CACHE_BYTES."""

    def __init__(self, budget: int = CACHE_BYTES):
        self.budget, self.used = budget, 0
        self.entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self.lock = threading.Lock()

    def lookup(self, conn: Connection, fts: str) -> tuple[str, set[int] | None]:
        """("fetch", None) for a rare search, ("set", ids) for a common one, ("probe", None) for a very common one.

        Reads in the connection's transaction, so that the answer fits its snapshot.
        """
        generation, below = conn.execute(text(
            "SELECT (SELECT value FROM index_meta WHERE key = 'generation'), "
            "(SELECT \"offset\" FROM checkpoints WHERE name = 'log')")).one()
        key = (generation, fts)
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None:
                self.entries.move_to_end(key)
        if entry is None:
            ids = _matches(conn, fts, 0, SET_MAX + 1)
            if len(ids) <= FETCH_UP_TO:
                return "fetch", None
            entry = _Entry(None if len(ids) > SET_MAX else set(ids), below or 0, 0, threading.Lock())
            self._keep(key, entry)
        elif entry.ids is not None and (below or 0) > entry.below:
            with entry.lock:  # jobs appended since: add their matches (a few rows of FTS5)
                if below > entry.below:
                    entry.ids.update(_matches(conn, fts, entry.below, None))
                    entry.below = below
        return ("probe", None) if entry.ids is None else ("set", entry.ids)

    def _keep(self, key: tuple[str, str], entry: _Entry) -> None:
        entry.size = 0 if entry.ids is None else sys.getsizeof(entry.ids) + 32 * len(entry.ids)
        with self.lock:
            if key in self.entries:
                return
            self.entries[key] = entry
            self.used += entry.size
            while self.used > self.budget and len(self.entries) > 1:
                _, old = self.entries.popitem(last=False)
                self.used -= old.size


def _matches(conn: Connection, fts: str, start: int, limit: int | None) -> list[int]:
    rows = conn.exec_driver_sql(
        "SELECT rowid FROM jobs_fts WHERE jobs_fts MATCH ? AND rowid >= ? LIMIT ?", (fts, start, -1 if limit is None else limit))
    return [row[0] for row in rows]


def bind(conn: Connection, ids: set[int]) -> None:
    """Make text_match(id) test membership in `ids` for this connection's next statements.

    set.__contains__ is called by SQLite without a Python frame; unbind() (on the pool's
    check-in) drops the reference so that an evicted set is freed.
    """
    conn.connection.driver_connection.create_function(FUNCTION, 1, ids.__contains__, deterministic=True)


def unbind(dbapi_conn) -> None:
    dbapi_conn.create_function(FUNCTION, 1, None)


MATCH_SETS = MatchSets()
