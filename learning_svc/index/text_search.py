"""The jobs a text search matches, held in memory for common words (SQLite FTS5; on
PostgreSQL for a text search alone, whose pages are bisections of the held orders).

Checking FTS5 for one job costs ~80 µs, so a listing that walks its sort index and
checks each job against a word found in a fifth of all prompts spends ~20 ms on a page.
Holding the word instead costs ~3 µs a match once (in a background thread): after that a
Python set answers "does job N match?" in ~0.1 µs from SQL (`text_match(id)`), and the
matches sorted by each sort key give any page of a search alone by bisection.

Jobs and rating events are only appended. A held search covers the jobs below the indexed
offset of the JSONL; when the index has grown it adds the matches above that offset, and
moves the matches that rating events since its ratings offset have re-rated. It belongs to
one index generation (index_meta), which changes when the index starts over and at each
amendment (rare: PATCH can change a job's text, time and duration), so that the search is
held anew; an older generation's entries age out of the LRU.
"""

from __future__ import annotations

import logging
import sys
import threading
from array import array
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from dataclasses import dataclass, field
from heapq import merge
from operator import itemgetter

from sqlalchemy import Connection, text

from .words import cjk_spaced, query_terms

log = logging.getLogger(__name__)

# A search matching up to this many jobs fetches and sorts them: cheaper than walking a
# sort index for a rare word (at 1M jobs a page of 50 walks N / matches * 50 jobs).
FETCH_UP_TO = 2_000
# A search matching more than this is checked job by job in FTS5 instead of being held in
# memory: such a word is in so many prompts that a page needs few checks.
SET_MAX = 600_000
CACHE_BYTES = 128 * 2**20  # all held searches together (~128 bytes a match)
MERGE_AT = 4_096  # jobs added or re-rated since a held order was sorted, before it is sorted again
# (Defaults: a Service makes its MatchSets from Settings, which tests set per case.)
FUNCTION = "text_match"  # the SQL function the listing calls; bound per query (see bind)
# The sort columns a held search keeps its matches sorted by, so that a page is found by
# bisection wherever the matches sit in the order (a pack's words are all in one week of
# jobs). The rating ones follow the rating events.
ORDERS = ("completed_at", "duration_key", "rating_hi", "rating_lo")
UNRATED = -1  # rating_hi of an unrated job (index/tables.py)


@dataclass
class _Order:
    """Matches sorted by (key, id): a main part in two parallel arrays, and a small sorted
    tail of the jobs added or re-rated since it was made (inserting into arrays of half a
    million would move megabytes per job). Re-rated jobs are `stale` in the main part. The
    tail is merged into the main part when it reaches MERGE_AT."""

    keys: array = field(default_factory=lambda: array("d"))
    ids: array = field(default_factory=lambda: array("q"))
    tail: list[tuple[float, int]] = field(default_factory=list)
    tail_keys: dict[int, float] = field(default_factory=dict)  # job -> its key in the tail
    stale: set[int] = field(default_factory=set)
    merge_at: int = MERGE_AT

    def add(self, key: float, job: int) -> None:
        """A job recorded since."""
        self._to_tail(key, job)

    def rekey(self, job: int, key: float) -> None:
        """A job re-rated since: its entry so far no longer counts."""
        if job in self.tail_keys:
            del self.tail[bisect_left(self.tail, (self.tail_keys[job], job))]
        else:
            self.stale.add(job)  # its entry in the main part (if it has one)
        self._to_tail(key, job)

    def _to_tail(self, key: float, job: int) -> None:
        self.tail_keys[job] = key
        insort(self.tail, (key, job))
        if len(self.tail) >= self.merge_at:
            self._merge()

    def current(self):
        """Every (key, id) in order: the main part without its stale entries, merged with the tail."""
        return merge(((key, job) for key, job in zip(self.keys, self.ids) if job not in self.stale), self.tail)

    def _merge(self) -> None:
        keys, ids = array("d"), array("q")
        if self.stale:  # entries to drop: one pass in Python (~1 µs a match)
            for key, job in self.current():
                keys.append(key)
                ids.append(job)
        else:  # only insertions: slices of the main part between them (C speed)
            done = 0
            for key, job in self.tail:
                lo, hi = bisect_left(self.keys, key), bisect_right(self.keys, key)
                at = bisect_left(self.ids, job, lo, hi)
                keys.extend(self.keys[done:at])
                ids.extend(self.ids[done:at])
                keys.append(key)
                ids.append(job)
                done = at
            keys.extend(self.keys[done:])
            ids.extend(self.ids[done:])
        self.keys, self.ids = keys, ids
        self.tail, self.tail_keys, self.stale = [], {}, set()

    def count_key(self, key: float, below: int) -> int:
        """How many current entries have `key`, leaving out ids >= below. The main part is
        sorted by (key, id): its tie group and the ids below `below` in it are bisections, and
        each stale entry one more (a pass over half a million unrated matches took ~30 ms)."""
        lo, hi = bisect_left(self.keys, key), bisect_right(self.keys, key)
        at = bisect_left(self.ids, below, lo, hi)
        main = at - lo
        for job in self.stale:
            i = bisect_left(self.ids, job, lo, at)
            main -= i < at and self.ids[i] == job
        return main + sum(1 for k, job in self.tail if k == key and job < below)

    def page(self, descending: bool, after: tuple | None, n: int, below: int) -> list[int]:
        """The next n ids after the cursor position (key, id), leaving out ids >= below (not in the reader's snapshot)."""
        keys, ids, tail, stale = self.keys, self.ids, self.tail, self.stale
        if after is None:
            at, t = (len(ids) - 1, len(tail) - 1) if descending else (0, 0)
        else:
            key, job = after
            lo, hi = bisect_left(keys, key), bisect_right(keys, key)  # the cursor's tie group
            if descending:
                at, t = bisect_left(ids, job, lo, hi) - 1, bisect_left(tail, (key, job)) - 1
            else:
                at, t = bisect_right(ids, job, lo, hi), bisect_right(tail, (key, job))
        step, found = (-1 if descending else 1), []
        while len(found) < n:
            while 0 <= at < len(ids) and (ids[at] >= below or ids[at] in stale):
                at += step
            while 0 <= t < len(tail) and tail[t][1] >= below:
                t += step
            main = (keys[at], ids[at]) if 0 <= at < len(ids) else None
            recent = tail[t] if 0 <= t < len(tail) else None
            if main is None and recent is None:
                break
            if recent is None or (main is not None and (main > recent if descending else main < recent)):
                found.append(main[1])
                at += step
            else:
                found.append(recent[1])
                t += step
        return found


@dataclass
class _Held:
    key: tuple[str, str]  # (index generation, FTS5 query)
    ids: set[int] | None  # None: more than SET_MAX matches, not held
    below: int  # ids holds the matches among the jobs with id < below (the log checkpoint)...
    rated_below: int  # ...with the ratings of the rating events with id < rated_below
    lock: threading.Lock = field(default_factory=threading.Lock)
    orders: dict[str, _Order] = field(default_factory=dict)
    size: int = 0  # bytes, as counted against the budget

    def measure(self) -> int:
        held = 0 if self.ids is None else sys.getsizeof(self.ids) + 32 * len(self.ids)
        return held + sum(16 * len(order.ids) + 150 * len(order.tail) for order in self.orders.values())


@dataclass(frozen=True)
class TextPlan:
    """ "fetch": a rare search (or a common one until it is held), fetched from FTS5 and sorted;
    "set": a held one; "probe": one of the commonest words, checked in FTS5 job by job."""

    kind: str
    held: _Held | None
    below: int  # the transaction's log checkpoint: ids at or above it are not in its snapshot

    def page(self, order: str, descending: bool, after: tuple | None, n: int) -> list[int]:
        """The ids of the next n matches of a held search in one of ORDERS."""
        with self.held.lock:
            return self.held.orders[order].page(descending, after, n, self.below)

    def count(self, rated: bool | None) -> int:
        """How many jobs of the snapshot a held search matches (all, rated or unrated), from
        memory: counting them in SQL calls text_match() once a job (~0.5 s at 200,000 jobs)."""
        held = self.held
        with held.lock:
            if held.below <= self.below:  # no jobs past this snapshot held yet (the usual case)
                matches = len(held.ids)
            else:
                matches = sum(1 for job in held.ids if job < self.below)
            if rated is None:
                return matches
            unrated = held.orders["rating_hi"].count_key(UNRATED, self.below)
        return matches - unrated if rated else unrated


class MatchSets:
    """An LRU of held searches per (index generation, FTS5 query), within a memory budget.

    Every read happens in the caller's transaction, so that what it is given fits its snapshot.
    """

    def __init__(
        self,
        budget: int = CACHE_BYTES,
        background: bool = True,
        fetch_up_to: int = FETCH_UP_TO,
        set_max: int = SET_MAX,
        merge_at: int = MERGE_AT,
    ):
        self.budget, self.used = budget, 0
        self.fetch_up_to, self.set_max, self.merge_at = fetch_up_to, set_max, merge_at
        self.entries: OrderedDict[tuple[str, str], _Held] = OrderedDict()
        self.lock = threading.Lock()
        # Holding a common word takes ~3 µs a match (~1 s for a word in a fifth of a million
        # jobs): done in a thread while the request that asked fetches the matches and sorts them.
        self.background = background
        self.building: dict[tuple[str, str], threading.Thread] = {}
        self.one_build_at_a_time = threading.Lock()

    def plan(self, conn: Connection, fts: str) -> TextPlan:
        """How this transaction's listing finds the matches of an FTS5 query (one lookup a request)."""
        kind, held, (below, _) = self._held(conn, fts)
        return TextPlan(kind, held, below)

    def wait_for_builds(self) -> None:
        while threads := list(self.building.values()):
            for thread in threads:
                thread.join()

    def _held(self, conn: Connection, fts: str) -> tuple[str, _Held | None, tuple[int, int]]:
        """(plan, held search or None, the snapshot's (log, ratings) checkpoint offsets)."""
        key, snapshot = _snapshot(conn, fts)
        with self.lock:
            held = self.entries.get(key)
            if held is not None:
                self.entries.move_to_end(key)
        if held is None:
            count = _count(conn, fts, self.set_max + 1)
            if count <= self.fetch_up_to and conn.dialect.name == "sqlite":
                return "fetch", None, snapshot
            if count <= self.fetch_up_to:  # PostgreSQL: held at once (a few matches), as its plans for
                held = self._keep(_build(conn, key, snapshot, self.merge_at))  # fetching them can walk
                return "set", held, snapshot  # every job's tsvector along the sort order
            if count > self.set_max:
                held = self._keep(_Held(key, None, *snapshot))
            elif self.background:  # fetching the matches costs ~1.5 µs each: bounded, unlike checking
                self._build_later(conn.engine, key)  # each job of a sort order (~50 µs a job, 40 s for
                return "fetch", None, snapshot  # a word whose jobs are all at the far end of the order)
            else:
                held = self._keep(_build(conn, key, snapshot, self.merge_at))
        elif held.ids is not None and (snapshot[0] > held.below or snapshot[1] > held.rated_below):
            with held.lock:
                self._catch_up(conn, fts, held, snapshot)
            self._account(held)
        return ("probe" if held.ids is None else "set"), held, snapshot

    def _keep(self, held: _Held) -> _Held:
        with self.lock:
            kept = self.entries.setdefault(held.key, held)
        self._account(kept)
        return kept

    def _build_later(self, engine, key: tuple[str, str]) -> None:
        def build() -> None:
            try:
                with self.one_build_at_a_time, engine.connect() as conn:
                    now, snapshot = _snapshot(conn, key[1])
                    if now == key:  # else the index started over meanwhile: the next search asks again
                        self._keep(_build(conn, key, snapshot, self.merge_at))
            except Exception:  # noqa: BLE001 - a cache: the searches go on without it
                log.exception("holding the matches of %s failed", key[1])
            finally:
                with self.lock:
                    self.building.pop(key, None)

        with self.lock:
            if key in self.building:
                return
            self.building[key] = thread = threading.Thread(target=build, name="text-search-build", daemon=True)
        thread.start()

    @staticmethod
    def _catch_up(conn: Connection, fts: str, held: _Held, snapshot: tuple[int, int]) -> None:
        """Add the jobs appended since, then move the matches re-rated since (a few rows each)."""
        below, rated_below = snapshot
        if below > held.below:
            for row in _sort_keys(conn, fts, held.below):
                held.ids.add(row[0])
                for column, name in enumerate(ORDERS, start=1):
                    held.orders[name].add(row[column], row[0])
            held.below = below
        if rated_below > held.rated_below:
            rerated = (
                "SELECT jobs.id, jobs.rating_hi, jobs.rating_lo FROM rating_events "
                "JOIN jobs ON jobs.job_id = rating_events.job_id WHERE rating_events.id >= ? AND jobs.id < ?"
            )
            if conn.dialect.paramstyle != "qmark":
                rerated = rerated.replace("?", "%s")
            rows = conn.exec_driver_sql(rerated, (held.rated_below, held.below))
            for job, rating_hi, rating_lo in rows:
                if job in held.ids:
                    held.orders["rating_hi"].rekey(job, rating_hi)
                    held.orders["rating_lo"].rekey(job, rating_lo)
            held.rated_below = rated_below

    def _account(self, held: _Held) -> None:
        """Count a held search's current size; evict the least recently used beyond the budget."""
        size = held.measure()
        with self.lock:
            if self.entries.get(held.key) is not held:
                return  # evicted, or built twice at once (the first one is kept)
            self.used += size - held.size
            held.size = size
            while self.used > self.budget and len(self.entries) > 1:
                _, old = self.entries.popitem(last=False)
                self.used -= old.size


def _snapshot(conn: Connection, fts: str) -> tuple[tuple[str, str], tuple[int, int]]:
    """((index generation, fts), (log, ratings) checkpoint offsets) as this transaction sees them."""
    generation, below, rated_below = conn.execute(
        text(
            "SELECT (SELECT value FROM index_meta WHERE key = 'generation'), "
            "(SELECT \"offset\" FROM checkpoints WHERE name = 'log'), "
            "(SELECT \"offset\" FROM checkpoints WHERE name = 'ratings')"
        )
    ).one()
    return (generation, fts), (below or 0, rated_below or 0)


def _build(conn: Connection, key: tuple[str, str], snapshot: tuple[int, int], merge_at: int = MERGE_AT) -> _Held:
    """Hold a search: its matches' sort keys are copied once into a temporary table, then read
    back in each order. SQLite joins and sorts without the GIL and the rows reach the arrays
    10,000 at a time, so that requests served meanwhile hardly wait."""
    if conn.dialect.name != "sqlite":
        return _build_from_rows(key, snapshot, _sort_keys(conn, key[1], 0), merge_at)
    db = conn.connection.driver_connection
    db.execute("DROP TABLE IF EXISTS temp.held_build")  # left by a rolled-back build on this connection
    db.execute(f"CREATE TEMP TABLE held_build (id INTEGER PRIMARY KEY, {', '.join(ORDERS)})")
    try:
        db.execute("INSERT INTO temp.held_build " + MATCHES_WITH_KEYS, (key[1], 0))
        orders = {}
        for name in ORDERS:
            order = orders[name] = _Order(merge_at=merge_at)
            rows = db.execute(f"SELECT {name}, id FROM temp.held_build ORDER BY {name}, id")
            while chunk := rows.fetchmany(10_000):
                order.keys.extend(map(itemgetter(0), chunk))
                order.ids.extend(map(itemgetter(1), chunk))
    finally:
        db.execute("DROP TABLE IF EXISTS temp.held_build")
    ids: set[int] = set()
    every = orders[ORDERS[0]].ids
    for i in range(0, len(every), 10_000):
        ids.update(every[i : i + 10_000])
    return _Held(key, ids, *snapshot, orders=orders)


def _build_from_rows(key, snapshot, rows: list[tuple], merge_at: int) -> _Held:
    """PostgreSQL: the matches' (id, *ORDERS) rows sorted here, in each order."""
    orders = {}
    for column, name in enumerate(ORDERS, start=1):
        ranked = sorted(rows, key=itemgetter(column, 0))
        order = orders[name] = _Order(merge_at=merge_at)
        order.keys.extend(row[column] for row in ranked)
        order.ids.extend(row[0] for row in ranked)
    return _Held(key, {row[0] for row in rows}, *snapshot, orders=orders)


def _count(conn: Connection, fts: str, limit: int) -> int:
    return conn.exec_driver_sql(COUNT[conn.dialect.name == "sqlite"], (fts, limit)).scalar_one()


# The matches of a search (SQLite: an FTS5 query; PostgreSQL: a tsquery on the jobs' tsvector,
# migration 0008), counted up to a limit; and their (id, *ORDERS) with id >= a start, in id order.
COUNT = {
    True: "SELECT count(*) FROM (SELECT rowid FROM jobs_fts WHERE jobs_fts MATCH ? LIMIT ?)",
    False: "SELECT count(*) FROM (SELECT id FROM jobs WHERE search_tsv @@ to_tsquery('simple', %s) LIMIT %s) m",
}
MATCHES_WITH_KEYS = (
    f"SELECT jobs.id, {', '.join('jobs.' + name for name in ORDERS)} FROM jobs_fts "
    "JOIN jobs ON jobs.id = jobs_fts.rowid WHERE jobs_fts MATCH ? AND jobs_fts.rowid >= ? "
    "ORDER BY jobs_fts.rowid"
)
MATCHES_WITH_KEYS_PG = (
    f"SELECT id, {', '.join(ORDERS)} FROM jobs WHERE search_tsv @@ to_tsquery('simple', %s) AND id >= %s ORDER BY id"
)


def _sort_keys(conn: Connection, fts: str, start: int) -> list[tuple]:
    """MATCHES_WITH_KEYS, straight from the driver (SQLAlchemy rows cost more than the query)."""
    statement = MATCHES_WITH_KEYS if conn.dialect.name == "sqlite" else MATCHES_WITH_KEYS_PG
    return conn.connection.driver_connection.execute(statement, (fts, start)).fetchall()


def bind(conn: Connection, ids: set[int]) -> None:
    """Make text_match(id) test membership in `ids` for this connection's next statements.

    SQLite calls set.__contains__ without a Python frame; unbind() (on the pool's check-in)
    drops the reference, so that an evicted set is freed.
    """
    conn.connection.driver_connection.create_function(FUNCTION, 1, ids.__contains__, deterministic=True)


def unbind(dbapi_conn) -> None:
    dbapi_conn.create_function(FUNCTION, 1, None)


def fts_query(q: str) -> str:
    """User words -> an FTS5 query: every word must occur; a word ending in `*` as a prefix.

    Whole words by default: a prefix must be expanded into every matching term for each
    job it is checked against, which makes a common prefix ~10x slower to search.
    Quotes neutralise FTS5 syntax.
    """
    parts = []
    for word in query_terms(q):
        star = "*" if word.endswith("*") else ""
        parts.append('"' + cjk_spaced(word.rstrip("*")).replace('"', '""') + '"' + star)
    return " ".join(parts)
