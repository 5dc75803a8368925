"""Use cases: record a job, rate it, clear a rating — JSONL first, then the index.

Writes go through one committer thread per process (group commit): it takes the
journal locks, decides every waiting request (new, identical retry, conflict, unknown
job) against a snapshot of the index plus the lines appended since that snapshot's
checkpoint (the backlog), appends all new lines with one write and one fsync per file,
and answers. A follower thread indexes the journals behind it, in large batches, each
with its checkpoint; reads wait (bounded) until the index holds every write acknowledged
before they began, by this process or another (read-your-writes).

Amendments, and lines another process appended, take the indexed path: index the
journals up to their end, decide, append and index in one transaction.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson
from filelock import Timeout
from sqlalchemy import Connection, event, select
from sqlalchemy.exc import DBAPIError

from . import images, records, reviews
from .batches import Validator, default_processes
from .config import Settings
from .index import db, facets, queries
from .index.plan import Filters, Page, Thresholds, make_plan
from .index.project import PROJECTION, JobRows, UnprojectableLine, output_hash, output_key, placed, project_rating
from .index.sync import (
    LOG,
    RATINGS,
    Checkpoint,
    Indexer,
    Prepared,
    SyncReport,
    claim_index,
    index_owner,
    read_checkpoint,
    read_checkpoints,
    remove_abandoned_scratch,
    repair_tails,
    stale_reason,
)
from .index.tables import index_meta
from .index.tables import jobs as jobs_table
from .index.text_search import MatchSets
from .journal import DamagedJournal, Journal, JournalWriteError
from .osutil import data_folder_id, hold_index_file

log = logging.getLogger(__name__)
INDEX_RETRY_SECONDS, INDEX_RETRY_MAX_SECONDS = 2.0, 60.0  # a failing index is tried again after these, doubling
INDEX_RETRY_REACHED_SECONDS = 1.0  # ... and this soon after its last try once a read reached the database again
COUNT_UP_TO = 100_000  # counts of matching jobs stop here ("100,000+")
MAX_BATCH = 1000  # queued writes one commit takes; a batch submitted together is taken whole
WAIT_SECONDS = 60
IDLE_CHECK_SECONDS = 2.0
STOP_SECONDS = 10.0  # how long close() waits for each of the committer, the follower, the checkpointer
CHECKPOINT_SECONDS = 0.5  # SQLite: how often the WAL is copied back into the index file while writes go on
READ_WAIT_SECONDS = 5.0  # how long a read waits for the follower to index what was acknowledged before it
FOLLOW_BATCH = 5000  # journal lines the follower indexes in one transaction
# How long the follower gathers rating and review lines before indexing them when no read
# waits for them: a rating rewrites ~95 index pages (its ~20 tag rows' sort-key copies), and
# one transaction for many ratings writes the pages they share once (fewer writes beside the
# journal's fsync).
FOLLOW_GATHER_SECONDS = 0.5
# Job lines are gathered for less: their projection is CPU, and half a second of them held the
# request threads up (ingest p99 75 vs 46 ms). Not at all (a transaction each commit, ~4 jobs
# at 8 clients, writing the same index pages each time) cost 10-15% more CPU a job: 8-client
# ingest 420 -> 472 jobs/s, p99 53 -> 39 ms with 50 ms (BENCHMARKS.md, session 8).
JOB_GATHER_SECONDS = 0.05
# Line bytes kept in memory for the follower (as parsed lines, several times that); past that it
# reads them back from the journal. Counted in bytes: 20,000 lines of 1 MB each held 20 GB.
HANDED_MAX_BYTES = 32 * 2**20


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


class BadReview(ValueError):
    """A review change that cannot be made (a rating on a job's review, tags both ways)."""


class Unavailable(RuntimeError):
    """The write could not be made durable; nothing was acknowledged."""


# Said once when the index cannot be written: writes go on (decided against what the index can
# still read) unless it cannot be read either, as with its PostgreSQL server away.
INDEX_FAILED_NOTE = (
    "what was acknowledged is in the journal, and the index catches up once it can be written; "
    "writes go on meanwhile while the index can be read, and are refused (503) while it cannot"
)
REFUSED_LOG_SECONDS = 10.0
RENEWING = (
    "the index file was deleted, replaced or damaged; it is being made anew from the JSONL files, try again in a moment"
)
TABLES_GONE = (
    "the index database has lost its tables (dropped or replaced while the service ran): restart the "
    "service, which makes them again from the JSONL files (nothing acknowledged is lost), or run "
    "`learning-svc reindex`"
)


def index_error_message(error: DBAPIError) -> str:
    """What a client is told when the index database fails a statement: away for a moment, or
    without its tables (PostgreSQL's "relation … does not exist", SQLite's "no such table")."""
    text = str(error.orig if error.orig is not None else error)
    if ("does not exist" in text and "relation" in text) or "no such table" in text:
        return TABLES_GONE
    return "the index database cannot be reached right now; try again"


class IndexBehind(Unavailable):
    """The index has not caught up with the journal within a read's wait (it is still indexing,
    or cannot be written); `indexed`: how far it had come (a journal offset)."""

    def __init__(self, message: str, indexed: int):
        super().__init__(message)
        self.indexed = indexed


class LostIndex(Unavailable):
    """A server database this service indexed into became another data folder's index."""


@dataclass
class _Op:
    kind: str  # "job" | "amend" | "rating" | "together" (payload: the ops to commit as one)
    payload: dict | list
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: Exception | None = None
    offset: int | None = None  # where its line was appended, and its length
    length: int = 0
    appended: object = None  # the result its appended line gave
    claimed: bool = False  # taken by the committer for writing: its caller waits for the answer
    given_id: bool = False  # a rating whose rating_id the caller gave (an importer's): maybe known already
    # An undo's condition (reviews.expected): written only while the job still holds these
    # values, checked in the commit (under the journals' locks: no write comes between).
    expect: dict | None = None
    # Made beforehand by a batch's validation worker (batches.py): a job's line as it is appended,
    # its summary and its index rows; the payload then holds only the job id and input hash.
    data: bytes | None = None
    summary: dict | None = None
    rows: JobRows | None = None
    # A job's input as posted (its JobIn, or the batch line's bytes): for a stored hash that is
    # not this version's, whether it is the one an earlier version stored (records.same_input).
    source: records.JobIn | bytes | None = None

    def give_up(self, error: Exception) -> bool:
        """The caller stops waiting: the op fails with `error`, unless the committer has already
        taken it for writing (then its answer follows the fsync). True when it gave up."""
        with _CLAIMS:
            if self.claimed:
                return False
            self.finish(error=error)
            return True

    def finish(self, result=None, error: Exception | None = None) -> None:
        if self.result is None and self.error is None:
            self.result, self.error = result, error

    def to_index(self) -> dict | Prepared:
        """What the index takes for the line this op appended (at self.offset)."""
        if self.rows is None:
            return self.payload
        return Prepared(rows=placed(self.rows, self.offset, self.length - 1))


_CLAIMS = threading.Lock()  # between a caller giving up on an op and the committer taking it


def claim(ops: list[_Op]) -> list[_Op]:
    """The ops whose callers still wait, marked as taken: a write answered 503 is never written."""
    with _CLAIMS:
        live = [op for op in ops if op.result is None and op.error is None]
        for op in live:
            op.claimed = True
    return live


def job_op(job: records.JobIn) -> _Op:
    """Record a job: result (created, summary)."""
    return _Op("job", records.stored_job(job), source=job)


def stored_op(
    line: dict,
    data: bytes | None = None,
    summary: dict | None = None,
    rows: JobRows | None = None,
    source: bytes | None = None,
) -> _Op:
    """Record a line as another learning_svc stored it (its input hash and times kept), or as a
    batch's validation made it (its job id and input hash; its journal bytes, summary and index
    rows; `source`, the line as posted): result (created, summary)."""
    return _Op("job", line, data=data, summary=summary, rows=rows, source=source)


def rating_op(
    job_id: str, rating: int | None, source: str, timestamp: float | None = None, rating_id: str | None = None
) -> _Op:
    """Rate a job: result (written, {job_id, rating, rated_at}). With a `rating_id` already in
    the ratings file, or the job's current rating, nothing is written."""
    return _Op(
        "rating", records.rating_event(job_id, rating, source, timestamp, rating_id), given_id=rating_id is not None
    )


def review_op(job_id: str, changes: dict, source: str, output: int | None = None) -> _Op:
    """Review a job (or one of its images): result (written, {job_id, output, changed, previous,
    review}). `changes` is a ReviewSet's fields; what is already so writes nothing."""
    return _Op("review", {"job_id": job_id, "output": output, "given": changes, "source": source})


def amend_op(job_id: str, patch: dict, replace: bool = False) -> _Op:
    """Amend a job: result (fields changed, summary)."""
    return _Op("amend", {"job_id": job_id, "patch": patch, "replace": replace})


def _rated_images_beyond(review: dict | None, outputs: int) -> list[int]:
    """The rated images of a review state at or past `outputs`, in order."""
    return sorted(n for n in map(int, ((review or {}).get("images") or {})) if n >= outputs)


def _orphaned_message(job_id: str, orphaned: list[int], outputs: int) -> str:
    shown = f"output {orphaned[0]}" if len(orphaned) == 1 else f"outputs {', '.join(map(str, orphaned))}"
    return (
        f"job {job_id!r} has ratings of {shown}, which this amendment would leave without their images "
        f"({outputs} output{'s' if outputs != 1 else ''} left): clear {'it' if len(orphaned) == 1 else 'them'} first "
        f"(DELETE /api/jobs/{job_id}/outputs/{orphaned[0]}/rating)"
    )


class Backlog:
    """Values that journal lines past the index's checkpoint set (appended, not indexed yet), by key.

    The committer decides against a snapshot of the index plus these; what lines before the
    snapshot's checkpoint said is forgotten (`prune`): the index has it, or something newer."""

    def __init__(self):
        self._values: dict = {}  # key -> (offset of the line, value)
        self._order: deque = deque()  # (offset, key) in journal order

    def set(self, key, value, offset: int) -> None:
        self._values[key] = (offset, value)
        self._order.append((offset, key))

    def get(self, key, default=None):
        found = self._values.get(key)
        return default if found is None else found[1]

    def __contains__(self, key) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        self._values.clear()
        self._order.clear()

    def prune(self, indexed_to: int) -> None:
        while self._order and self._order[0][0] < indexed_to:
            offset, key = self._order.popleft()
            if self._values.get(key, (None,))[0] == offset:
                del self._values[key]


class Throttled:
    """A trouble that comes again and again (each request while the index database is away) said
    in one log line at most every `seconds`, with how many times since the last line."""

    def __init__(self, seconds: float):
        self.seconds, self.unsaid, self.next_line = seconds, 0, 0.0
        self.lock = threading.Lock()

    def count(self, times: int) -> int | None:
        """Count `times` more; how many to say now, or None when the last line is too recent."""
        with self.lock:
            self.unsaid += times
            now = time.monotonic()
            if now < self.next_line:
                return None
            said, self.unsaid, self.next_line = self.unsaid, 0, now + self.seconds
            return said


class Service:
    def __init__(self, settings: Settings, match_sets: MatchSets | None = None):
        self.settings = settings.check()  # SettingsError before anything is opened: not a 500 per request
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.jobs_journal = Journal(settings.log_path)
        self.ratings_journal = Journal(settings.ratings_path)
        self.read_engine = db.make_engine(settings.db_url, writer=False)
        self.write_engine = db.make_engine(settings.db_url, writer=True, checkpoints_apart=True)
        self.indexer = Indexer(self.write_engine, self.jobs_journal, self.ratings_journal)
        self.thresholds = Thresholds(settings.probe_above, settings.facet_sample)
        # Common words' matches held in memory for this process's readers (index/text_search.py).
        self.match_sets = match_sets or MatchSets(
            settings.text_cache_bytes, settings.text_background, settings.text_fetch_up_to, settings.text_set_max
        )
        self.startup: SyncReport | None = None
        self.torn_files: list[str] = []
        self._queue: queue.Queue[_Op | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._commits = 0  # since the last WAL checkpoint
        self.watcher = None  # a FolderWatcher (watch.py) when serving with --watch; stopped on close
        processes = settings.batch_processes
        self.validator = Validator(default_processes() if processes is None else processes)
        self._index_hold: int | None = None  # SQLite: the shared lock that keeps a reindex out
        # What the journals hold past the index's checkpoints, as the committer's decisions need
        # it: while the follower catches up, and while the index cannot be written (a full disk).
        self.index_trouble: dict | None = None
        self._folder_id: str | None = None  # a server database's claim (claim_index): checked as it is used
        self.lost_index: str | None = None  # why it is no longer this folder's index: reads and writes are 503
        # Each journal's last append that failed (a full disk, a folder made read-only): /api/health
        # says degraded until an append to that file succeeds. It said ok while every write was a 503.
        self._journal_troubles: dict[str, dict] = {}
        self.pending_jobs = Backlog()  # job id -> (input hash, summary)
        self.pending_ratings = Backlog()  # job id -> (rating, rated_at)
        self.pending_reviews = Backlog()  # job id -> review state
        self.pending_rating_ids = Backlog()  # rating id -> True
        # The follower: indexes the journals behind the acknowledgements.
        self._follower: threading.Thread | None = None
        self._follow_wake = threading.Event()  # lines to index
        self._follow_now = threading.Event()  # a read waits for them, or the service stops
        self._follower_stop = False
        self._jobs_since: float | None = None  # when the first job line since the follower's last turn was handed
        self._index_lock = threading.Lock()  # one index writer in this process: the follower or an indexed commit
        self._indexed = threading.Condition()
        self._synced = (0, 0)  # journal sizes (taken under their locks) the index holds every line of
        self._ends = (0, 0)  # journal sizes after this process's last commit: beyond is another writer's
        self._handed: dict[str, deque] = {LOG: deque(), RATINGS: deque()}  # (offset, line, length) to index
        # bytes handed (the committer adds) and taken (the follower adds): each written by one thread
        self._handed_in, self._handed_out = {LOG: 0, RATINGS: 0}, {LOG: 0, RATINGS: 0}
        # SQLite: the index file as opened (device, inode). Deleted or replaced while serving (SPEC
        # §1: it "may be deleted at any time"), it is made anew (_renew_index); reads wait meanwhile.
        self._index_file_id: tuple[int, int] | None = None
        self._index_file_fd: int | None = None  # held open: a new file can never take the old inode's number
        self._renew_after = 0.0  # monotonic: after a failed attempt (a full disk), tried again from then
        # SQLite: why the index file is damaged ("file is not a database": its header overwritten,
        # "malformed": a page), as a statement found it; made anew like a deleted one. Every write
        # was a 503 and every read a 500 until someone deleted the file (an outside run).
        self._index_damaged: str | None = None
        if self.write_engine.dialect.name == "sqlite":
            for engine in (self.read_engine, self.write_engine):
                event.listen(engine, "handle_error", self._note_damage)
        self._index_ready = threading.Event()
        self._index_ready.set()
        # While the index is made anew: when it was noticed, and how much of the JSONL is indexed
        # (bytes, of how many), for /api/health: at a million jobs it takes minutes.
        self._renewal: dict | None = None
        self._renew_noticed: float | None = None  # when /api/health first saw the file gone, before the renewal began
        self._renewal_lock = threading.Lock()
        self.refused_writes = Throttled(REFUSED_LOG_SECONDS)  # said by _log_refused
        self.refused_reads = Throttled(REFUSED_LOG_SECONDS)  # said by log_unread

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Service:
        if self.write_engine.dialect.name == "sqlite":  # a reindex must not replace it under us
            self._index_hold = hold_index_file(self.settings.index_path, exclusive=False)
            # A killed reindex's scratch files (a reindex runs alone: its process is gone): they
            # stayed until the next reindex, each as large as the index.
            remove_abandoned_scratch(Path(self._index_file_path() or self.settings.index_path))
        try:
            try:
                self._open_index()
            except DBAPIError as error:
                if self._index_file_path() is None or not db.damaged_index(error):
                    raise
                # A damaged SQLite file (its header overwritten, a page broken): `serve` stopped with
                # "file is not a database" until someone deleted it. It is derived: made anew.
                reason = " ".join(str(error.orig).split())
                log.warning(
                    "the index file %s is damaged (%s): making it anew from the JSONL files",
                    self._index_file_path(),
                    reason,
                )
                self.read_engine.dispose()
                self.write_engine.dispose()
                # Under the journals' locks, as a renewal while serving is, and only if the file in
                # place is still damaged: another process (a `serve --workers` sibling) may have
                # made it anew since this one's statement met the damage; that one was removed.
                with self.jobs_journal.locked(), self.ratings_journal.locked():
                    if _file_damaged(Path(self._index_file_path())):
                        db.remove_index_file(Path(self._index_file_path()))
                self._open_index()
        except BaseException:
            if self._index_hold is not None:
                os.close(self._index_hold)
                self._index_hold = None
            raise
        self.torn_files += [p.name for p in self.startup.torn]
        with self.write_engine.begin() as conn:
            self._ends = self._synced = tuple(cp.offset for cp in read_checkpoints(conn, LOG, RATINGS))
        if self.index_trouble is not None:  # started without room for the catch-up
            self._take_in_backlog()
        self._hold_index_file()
        for engine in (self.read_engine, self.write_engine):  # PostgreSQL: once the start-up's long statements are done
            db.answer_within(engine, db.PG_ANSWER_SECONDS)
        self._follower = threading.Thread(target=self._follow, name="learning-svc-follower", daemon=True)
        self._follower.start()
        self._thread = threading.Thread(target=self._run, name="learning-svc-committer", daemon=True)
        self._thread.start()
        if self.write_engine.dialect.name == "sqlite":
            self._checkpointer = threading.Thread(
                target=self._checkpoints, name="learning-svc-checkpoints", daemon=True
            )
            self._checkpointer.start()
        return self

    def _open_index(self) -> None:
        db.upgrade(self.write_engine)
        if self.write_engine.dialect.name != "sqlite":  # one database, several data folders' services
            with self.write_engine.begin() as conn:
                folder = data_folder_id(self.settings.data_dir)
                claim_index(conn, folder, self.settings.shown_db_url, self.settings.data_dir)
                self._folder_id = folder
        report = SyncReport()
        try:
            self.startup = self.indexer.catch_up(report=report)
        except DBAPIError as error:
            # The disk has no room for what the journal holds past the index (`serve` exited
            # "database or disk is full" while a running service in that state acknowledged
            # every write): serve as that one does, journal first, and catch up once there is
            # room. Not an index to be made anew first (another version's, or of a replaced
            # journal, whose wipe failed): its rows would be served as current.
            if not db.out_of_room(error) or self._index_outdated():
                raise
            self.startup = report
            self._index_failed(error, [])

    def _index_outdated(self) -> bool:
        """Whether the index holds rows that must be made anew before it is served: made by another
        projection, or of journal files since replaced (sync's reasons; an empty index is not)."""
        with self.read_engine.connect() as conn:
            log_cp, ratings_cp = read_checkpoints(conn, LOG, RATINGS)
            if not log_cp.offset and not ratings_cp.offset:
                return False
            made = conn.execute(select(index_meta.c.value).where(index_meta.c.key == "projection")).scalar()
            return made != PROJECTION or any(
                stale_reason(conn, journal, name) is not None
                for journal, name in ((self.jobs_journal, LOG), (self.ratings_journal, RATINGS))
            )

    def _take_in_backlog(self) -> None:
        """After a start whose catch-up could not be written: the lines past the index into the
        backlog, as a commit takes in another writer's (reviews and image ratings of those jobs
        were 404 until some write had taken them in). Held in memory until indexed."""
        with self.jobs_journal.locked(), self.ratings_journal.locked(), self.read_engine.connect() as conn:
            self._take_in_foreign_lines(conn, True, tuple(cp.offset for cp in read_checkpoints(conn, LOG, RATINGS)))
            self._ends = (self.jobs_journal.size(), self.ratings_journal.size())

    def close(self, index_everything: bool = False) -> None:
        """Stop. `index_everything` (an import): the follower indexes what was acknowledged however
        long that takes, instead of STOP_SECONDS (a 200,000-job import left most of its jobs for
        the next start, which took 90 s in silence: an outside run)."""
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        self.validator.close()
        # Each thread gets STOP_SECONDS to finish: one stuck on a database that stopped answering
        # (a server suspended, a host gone) held a Ctrl-C for 100 s and more, past a service
        # manager's stop timeout. What it did not finish is safe: a write not answered was
        # appended whole or is cut at the next start, and the index catches up from the journal.
        if self._thread:
            self._queue.put(None)
            self._thread.join(timeout=STOP_SECONDS)
            self._thread = None
        if self._follower:  # indexes what is left first
            self._follower_stop = True
            self._follow_wake.set()
            self._follow_now.set()
            self._follower.join(timeout=None if index_everything else STOP_SECONDS)
            self._follower = None
        self._stopping.set()
        if self._checkpointer:
            self._checkpointer.join(timeout=STOP_SECONDS)
            self._checkpointer = None
        self.read_engine.dispose()
        self.write_engine.dispose()
        if self._index_file_fd is not None:
            os.close(self._index_file_fd)
            self._index_file_fd = None
        if self._index_hold is not None:
            os.close(self._index_hold)
            self._index_hold = None

    # ------------------------------------------------------------ writes
    def record_job(self, job: records.JobIn) -> tuple[bool, dict]:
        """Returns (created, summary). Raises Conflict, Unavailable."""
        return self._submit(job_op(job))

    def rate_job(self, job_id: str, rating: int | None, source: str) -> dict:
        """Append a rating event (None clears); the job's current rating again writes nothing.
        Returns {job_id, rating, rated_at}. Raises NotFound, Unavailable."""
        return self._submit(rating_op(job_id, rating, source))[1]

    def review_job(self, job_id: str, changes: dict, source: str, output: int | None = None) -> dict:
        """Append a review event (flag, tags, note, scores; or an image's rating with `output`).
        Returns {job_id, output, changed, previous, review}. Raises NotFound, BadReview, Unavailable."""
        with self.reader() as conn:
            self._check_targets(conn, [(job_id, output, changes)])
        return self._submit(review_op(job_id, changes, source, output))[1]

    def review_many(
        self, items: list[tuple[str, int | None, dict]], source: str, expects: list[dict | None] | None = None
    ) -> dict:
        """Many changes in one commit (one append, one fsync): (job_id, output, set) each, where
        `set.rating` without an output is the job's rating. Checked whole before anything is
        written. `expects` (an undo): per item, the values it may only be applied over; an item
        whose job holds others now is left out and named in `conflicted`. Returns {changed,
        unchanged, previous, conflicted}: `previous` puts back what changed (undo), with the
        `expect` of each."""
        with self.reader() as conn:
            self._check_targets(conn, items)
            before = queries.job_rows(conn, sorted({job_id for job_id, _, _ in items}))
        conflicted = []
        expects = expects or [None] * len(items)
        kept = []
        for (job_id, output, changes), expect in zip(items, expects):
            row = before.get(job_id)  # None: not indexed yet, nothing to hold it against
            state = row.review and orjson.loads(row.review) if row is not None else None
            if expect and row is not None and not reviews.still(row.rating, state, output, expect):
                conflicted.append({"job_id": job_id, "output": output})  # the whole item: none of it
            else:
                kept.append(((job_id, output, changes), expect))
        ops, undo_ratings = [], {}
        for (job_id, output, changes), expect in kept:
            rest = dict(changes)
            if output is None and "rating" in rest:
                rating = rest.pop("rating")
                row = before.get(job_id)  # None: its line not indexed yet (a read that stopped waiting)
                current = row.rating if row is not None else self.pending_ratings.get(job_id, (None, None))[0]
                undo_ratings.setdefault(job_id, current)
                op = rating_op(job_id, rating, source)
                op.expect = {"rating": expect["rating"]} if expect and "rating" in expect else None
                ops.append(op)
            if rest:
                op = review_op(job_id, rest, source, output)
                # the job's rating is the rating op's to check: this one checks the rest
                own = {k: v for k, v in (expect or {}).items() if output is not None or k != "rating"}
                op.expect = own or None
                ops.append(op)
        self.submit_many(ops, together=True)
        changed, unchanged, previous = 0, 0, []
        for op in ops:
            if op.error:
                raise op.error
            written, result = op.result
            if result.get("conflicted"):  # changed between the check above and the commit
                target = {"job_id": op.payload["job_id"], "output": result.get("output")}
                if target not in conflicted:
                    conflicted.append(target)
                continue
            changed += written
            unchanged += not written
            if not written:
                continue
            job_id = op.payload["job_id"]
            if op.kind == "rating":
                back = {"rating": undo_ratings[job_id]}
                previous.append({"job_id": job_id, "output": None, "set": back, "expect": {"rating": result["rating"]}})
            else:
                previous.append(
                    {
                        "job_id": job_id,
                        "output": result["output"],
                        "set": result["previous"],
                        "expect": result["expect"],
                    }
                )
        return {"changed": changed, "unchanged": unchanged, "previous": previous[::-1], "conflicted": conflicted}

    def matching_job_ids(self, filters: Filters, limit: int) -> list[str]:
        """The ids of the jobs matching filters (newest first), up to limit + 1 (to tell "too many")."""
        with self.reader() as conn:
            plan = make_plan(conn, Page(filters, "-completed_at", 500), self.match_sets, self.thresholds)
            found = []
            for row in queries.iter_jobs(conn, plan):
                found.append(row.job_id)
                if len(found) > limit:
                    break
            return found

    def _check_targets(self, conn: Connection, items: list[tuple[str, int | None, dict]]) -> None:
        """Every job exists (and every image), and every change is one a review can make."""
        rows = queries.job_rows(conn, sorted({job_id for job_id, _, _ in items}))
        for job_id, output, changes in items:
            row = rows.get(job_id)
            if row is None and job_id not in self.pending_jobs:
                raise NotFound(f"no job {job_id!r}")
            if output is not None:
                outputs = queries.summary_of(conn, row, self.jobs_journal)["num_outputs"] if row is not None else None
                # A rating of an image the job no longer has (an amendment of an older version
                # took it away) can still be cleared.
                clearing = (
                    row is not None
                    and changes == {"rating": None}
                    and output in _rated_images_beyond(row.review and orjson.loads(row.review), 0)
                )
                if outputs is not None and output >= outputs and not clearing:
                    raise NotFound(
                        f"job {job_id!r} has {outputs} output{'s' if outputs != 1 else ''}; no output {output}"
                    )
            try:
                rest = {k: v for k, v in changes.items() if not (output is None and k == "rating")}
                if rest:
                    reviews.resolve(None, rest, output)
            except ValueError as error:
                raise BadReview(str(error)) from None

    def amend_job(self, job_id: str, patch: dict, replace: bool = False) -> tuple[list[str], dict]:
        """Append an amendment setting some fields of a recorded job (PATCH). Returns (the fields
        changed, empty when the job already had these values; the summary). Raises NotFound,
        Conflict (a field already set to something else, unless `replace`), InvalidRecord."""
        # Its commit indexes what the follower has not (an amendment sees the current record),
        # holding both journals' locks: wait for the follower first, as a read does.
        self._wait_for_index()
        return self._submit(amend_op(job_id, patch, replace))

    def submit_many(self, ops: list[_Op], together: bool = False) -> list[_Op]:
        """Queue many writes at once and wait for all; each op then holds its own result or error.

        They share group commits (one fsync per commit); `together` makes them one commit,
        whatever else is queued: one append and one fsync for all (a batch POST)."""
        if self._thread is None:
            raise Unavailable("the service is not running")
        if together and ops:
            self._queue.put(_Op("together", ops))
            deadline = time.monotonic() + WAIT_SECONDS * 4
            if not all(op.done.wait(max(0.0, deadline - time.monotonic())) for op in ops):
                late = [op for op in ops if not op.give_up(Unavailable("the write did not complete in time"))]
                for op in late:  # taken for writing meanwhile: the answer follows the fsync
                    op.done.wait()
            return ops
        for op in ops:
            self._queue.put(op)
        for op in ops:
            if not op.done.wait(WAIT_SECONDS) and not op.give_up(Unavailable("the write did not complete in time")):
                op.done.wait()  # taken for writing meanwhile: the answer follows the fsync
        return ops

    def _submit(self, op: _Op):
        self.submit_many([op])
        if op.error:
            raise op.error
        return op.result

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            queued = [first]
            while sum(len(op.payload) if op.kind == "together" else 1 for op in queued) < MAX_BATCH:
                try:
                    op = self._queue.get_nowait()
                except queue.Empty:
                    break
                if op is None:
                    self._queue.put(None)
                    break
                queued.append(op)
            # Writes submitted together (a batch POST) are one group: one append, one fsync.
            ops = [child for op in queued for child in (op.payload if op.kind == "together" else [op])]
            try:
                self._commit(ops)
            except DBAPIError as error:  # the index database went away: no SQL in the answer
                self._log_refused(error, len(ops))
                for op in ops:
                    op.finish(error=Unavailable(index_error_message(error)))
            except Exception as error:  # never let the committer die
                log.exception("commit failed")
                for op in ops:  # its text could hold SQL and other clients' values: only the kind
                    op.finish(error=Unavailable(f"internal error while writing ({type(error).__name__}); see the log"))
            finally:
                for op in ops:
                    op.done.set()
                for op in queued:
                    op.done.set()

    def _log_refused(self, error: DBAPIError, count: int) -> None:
        """One line for writes refused because the index database cannot be reached, at most
        every REFUSED_LOG_SECONDS with how many were refused since (a PostgreSQL stopped for 10 s
        under 8 clients wrote 342 lines, one a request)."""
        if (said := self.refused_writes.count(count)) is None:
            return
        message = (str(error.orig).strip().splitlines() or [repr(error.orig)])[0]
        log.warning("%d write(s) refused (503, nothing written): the index database: %s", said, message[:300])

    def log_unread(self, error: DBAPIError) -> None:
        """One line for requests answered 503 because the index database could not be read, at
        most every REFUSED_LOG_SECONDS with how many since (a 60 s PostgreSQL outage under a few
        readers and an open page wrote ~900 lines, one a request: an outside run)."""
        if (said := self.refused_reads.count(1)) is None:
            return
        log.warning(
            "%d request(s) answered 503: the index database could not be read: %s",
            said,
            " ".join(str(error.orig or error).split())[:300],
        )

    def _checkpoints(self) -> None:
        """SQLite: the WAL is copied back into the index file here, every CHECKPOINT_SECONDS
        after commits, not inside a commit (where it held up every write queued behind it)."""
        while not self._stopping.wait(CHECKPOINT_SECONDS):
            if self._commits == 0 or not self._index_ready.is_set():
                continue
            self._commits = 0
            try:
                db.checkpoint(self.read_engine)
            except Exception:
                log.exception("checkpointing the index's WAL failed; retrying later")

    def _commit(self, ops: list[_Op]) -> None:
        # A batch of jobs only needs the log's lock; ratings, reviews and amendments (which answer
        # the job's current review) take both, always in the same order.
        renew = self._should_renew()  # both journals' locks: the index is made from both
        with_ratings = renew or any(op.kind in ("rating", "review", "amend") for op in ops)
        try:
            with ExitStack() as locks:
                locks.enter_context(self.jobs_journal.locked())
                if with_ratings:
                    locks.enter_context(self.ratings_journal.locked())
                ops = claim(ops)  # after the locks: a caller that stopped waiting meanwhile is not written
                if renew and self._should_renew():  # not if the follower made it anew while this waited
                    self._renew_index()
                if self._folder_id is not None:  # a reindex of this folder swaps under these locks
                    with self.read_engine.connect() as conn:
                        self._check_owner(conn)
                trouble = self.index_trouble
                sizes = (self.jobs_journal.size(), self.ratings_journal.size() if with_ratings else self._ends[1])
                shrunk = sizes[0] < self._ends[0] or sizes[1] < self._ends[1]  # cut or replaced: start over
                if shrunk:  # what the old file's lines said is gone with them
                    for backlog in (self.pending_jobs, self.pending_ratings, self.pending_reviews):
                        backlog.clear()
                    self.pending_rating_ids.clear()
                if trouble is None and (shrunk or any(op.kind == "amend" for op in ops)):
                    self._commit_indexed(ops, with_ratings)
                    self._ends = (
                        self.jobs_journal.size(),
                        self.ratings_journal.size() if with_ratings else self._ends[1],
                    )
                else:
                    foreign = sizes != self._ends and not shrunk
                    self._commit_unindexed(ops, trouble, with_ratings, foreign)
        except Timeout:
            for op in ops:
                op.finish(error=Unavailable("the journal is locked by another process; try again"))
        except LostIndex as error:
            for op in ops:
                op.finish(error=error)
            return
        self._follow_wake.set()

    def _commit_indexed(self, ops: list[_Op], with_ratings: bool) -> None:
        """Index the journals up to their end (other writers' lines too), then decide, append and
        index in one transaction. For amendments (each sees the current record) and after another
        process appended. Hold the journals' locks."""
        with self._index_lock, self.write_engine.connect() as conn:
            trans = conn.begin()
            try:
                log_cp, ratings_cp, report = self.indexer.catch_up_locked(conn, with_ratings)
                self.torn_files += [p.name for p in report.torn]
                self._forget_indexed(log_cp.offset, ratings_cp.offset if ratings_cp else None)
                self._write_jobs(conn, log_cp, [op for op in ops if op.kind == "job"])
                self._write_amendments(conn, log_cp, [op for op in ops if op.kind == "amend"])
                self._write_ratings(conn, ratings_cp, [op for op in ops if op.kind in ("rating", "review")])
                trans.commit()
                self._commits += 1
            except DamagedJournal as error:
                trans.rollback()
                log.error("%s", error)
                for op in ops:
                    op.finish(error=Unavailable(f"{error}; run `learning-svc verify` and repair the file"))
                return
            except Exception as error:
                trans.rollback()
                self._index_failed(error, ops)
                # What other processes appended was not indexed either (rolled back): take it in.
                self._commit_unindexed(
                    [op for op in ops if op.result is None and op.error is None],
                    self.index_trouble,
                    with_ratings,
                    foreign=True,
                )
                return
        self._index_recovered()
        self._mark_synced(self.jobs_journal.size(), self.ratings_journal.size() if with_ratings else None)

    def _commit_unindexed(self, ops: list[_Op], trouble: dict | None, with_ratings: bool, foreign: bool) -> None:
        """Decide against a snapshot of the index plus the backlog past its checkpoints, and append;
        the follower indexes the lines. `foreign`: another process appended since this one's last
        commit; its lines join the backlog first (the ratings' too `with_ratings`). Each write is
        answered once it is durable, not when the database lets go of the snapshot (a suspended
        PostgreSQL holds that); a read then waits for the follower, which waits for these locks.
        Hold the journals' locks."""
        for op in ops:
            if op.kind == "amend":  # only while the index cannot be written (see _commit)
                problem = trouble["problem"] if trouble else "it is catching up"
                op.finish(
                    error=Unavailable(
                        f"the index is behind the journal ({problem}); amend the job once it has caught up"
                    )
                )
        with self.read_engine.connect() as conn:
            # The snapshot's own checkpoints first: what lines before them said is in the rows read next.
            indexed = tuple(cp.offset for cp in read_checkpoints(conn, LOG, RATINGS))
            self._forget_indexed(*indexed)
            if foreign:
                self._take_in_foreign_lines(conn, with_ratings, indexed)
            jobs = [op for op in ops if op.kind == "job"]
            self._write_jobs(conn, None, jobs)
            self._remember_appended(jobs)  # a rating in this same commit finds its job
            # Where this process's appends left a journal, before its callers are answered: what
            # is written there after that is another writer's.
            self._ends = (self.jobs_journal.size(), self._ends[1])
            _answered(jobs)
            events = [op for op in ops if op.kind in ("rating", "review")]
            self._write_ratings(conn, None, events)
            self._remember_appended(events)
            if with_ratings:
                self._ends = (self._ends[0], self.ratings_journal.size())
            _answered(ops)

    def _remember_appended(self, ops: list[_Op]) -> None:
        """Into the backlog, and handed to the follower: what these ops appended."""
        for op in ops:
            if op.appended is not None and op.appended[0]:
                self._remember_unindexed(op)
                name = LOG if op.kind == "job" else RATINGS
                if self._handed_in[name] - self._handed_out[name] + op.length <= HANDED_MAX_BYTES:
                    self._handed[name].append((op.offset, op.to_index(), op.length))
                    self._handed_in[name] += op.length
                if op.kind == "job" and self._jobs_since is None:  # gathered for JOB_GATHER_SECONDS from now
                    self._jobs_since = time.monotonic()

    def _take_in_foreign_lines(self, conn: Connection, with_ratings: bool, indexed: tuple[int, int]) -> None:
        """Lines another process appended since this one's last commit (a `serve --workers`
        sibling, the client's offline fallback, an import), into the backlog as if decided here,
        so that this commit's decisions see them before any follower has indexed them. A torn
        tail such a writer left is moved aside first. Hold the journals' locks (`with_ratings`:
        the ratings' too). Lines before the snapshot's checkpoints (`indexed`) are in its rows:
        only the ones after both are read."""
        report = SyncReport()
        journals = [(self.jobs_journal, self._ends[0], indexed[0])]
        if with_ratings:
            journals.append((self.ratings_journal, self._ends[1], indexed[1]))
        repair_tails([journal for journal, end, _ in journals if journal.size() != end], report)
        self.torn_files += [p.name for p in report.torn]
        for journal, end, checkpoint in journals:
            for offset, raw in journal.scan(max(end, checkpoint)):
                try:
                    line = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue  # damage: the follower reports it with its line number
                if isinstance(line, dict):
                    self._take_in(conn, line, offset)

    def _take_in(self, conn: Connection, line: dict, offset: int) -> None:
        schema, job_id = line.get("schema"), line.get("job_id")
        if not isinstance(job_id, str):
            return
        if schema == records.LOG_SCHEMA and job_id not in self.pending_jobs:
            self.pending_jobs.set(job_id, (line.get("input_hash"), _summary(line)), offset)
        elif schema == records.RATING_SCHEMA:
            try:
                event = project_rating(line, offset)
            except UnprojectableLine:
                return
            if event is not None:
                rated_at = event["timestamp"] if event["rating"] is not None else None
                self.pending_ratings.set(job_id, (event["rating"], rated_at), offset)
                self.pending_rating_ids.set(event["rating_id"], True, offset)
        elif schema == reviews.REVIEW_SCHEMA and (event := reviews.valid_event(line)) is not None:
            _, output, changes = event
            if job_id in self.pending_reviews:
                state = self.pending_reviews.get(job_id)
            else:
                row = queries.job_rows(conn, [job_id]).get(job_id)
                if row is not None:
                    state = row.review and orjson.loads(row.review)
                else:  # its job not indexed yet: the review events that are
                    state = queries.review_before_job(conn, [job_id]).get(job_id)
            # Events set whole values, so one the snapshot already holds changes nothing when taken again.
            self.pending_reviews.set(job_id, reviews.apply(state, output, changes), offset)

    def _forget_indexed(self, log_offset: int, ratings_offset: int | None) -> None:
        self.pending_jobs.prune(log_offset)
        if ratings_offset is not None:
            for backlog in (self.pending_ratings, self.pending_reviews, self.pending_rating_ids):
                backlog.prune(ratings_offset)

    def _remember_unindexed(self, op: _Op) -> None:
        if op.kind == "job":
            self.pending_jobs.set(op.payload["job_id"], (op.payload["input_hash"], op.appended[1]), op.offset)
        elif op.kind == "rating":
            self.pending_ratings.set(
                op.payload["job_id"], (op.appended[1]["rating"], op.appended[1]["rated_at"]), op.offset
            )
            self.pending_rating_ids.set(op.payload["rating_id"], True, op.offset)
        elif op.kind == "review":
            self.pending_reviews.set(op.payload["job_id"], op.appended[1]["review"], op.offset)

    # -- the follower: the index behind the acknowledgements
    def _follow(self) -> None:
        while True:
            self._follow_wake.wait(IDLE_CHECK_SECONDS)  # also picks up other writers' lines when idle
            self._gather()
            self._follow_wake.clear()
            self._follow_now.clear()
            stopping = self._follower_stop
            trouble = self.index_trouble
            # a deleted index file made writes fail (trouble, retried later): made anew at once
            if trouble is None or time.monotonic() >= trouble["next_try"] or stopping or self._should_renew():
                self._index_backlog()
            if stopping:
                return

    def _gather(self) -> None:
        """Gather a batch (many changes, each index page written once) unless a read waits: for
        FOLLOW_GATHER_SECONDS, JOB_GATHER_SECONDS once a job line is handed (also one handed
        while ratings are gathered)."""
        until = time.monotonic() + FOLLOW_GATHER_SECONDS
        while not self._follow_now.is_set():
            if self._jobs_since is not None:
                until = min(until, self._jobs_since + JOB_GATHER_SECONDS)
            left = until - time.monotonic()
            if left <= 0:
                break
            self._follow_now.wait(min(left, JOB_GATHER_SECONDS))
        self._jobs_since = None

    def _index_backlog(self) -> None:
        """Index the journals up to where they end now, FOLLOW_BATCH lines a transaction."""
        try:
            if self._should_renew():  # no write came since: the follower notices (IDLE_CHECK_SECONDS)
                with self.jobs_journal.locked(), self.ratings_journal.locked():
                    if self._should_renew():
                        self._renew_index()
            while True:
                # Where this process's committer left them: only its complete lines, no lock needed
                # (taking it here made the committer wait at every turn of the follower).
                ends = (self.jobs_journal.size(), self.ratings_journal.size())
                foreign = ends != self._ends
                if foreign:  # an append under way, or another writer's lines
                    with self.jobs_journal.locked(), self.ratings_journal.locked():  # no append half done
                        ends = (self.jobs_journal.size(), self.ratings_journal.size())
                        foreign = ends != self._ends
                        if foreign:  # another writer's lines: a torn tail it left is moved aside
                            report = SyncReport()
                            repair_tails((self.jobs_journal, self.ratings_journal), report)
                            self.torn_files += [p.name for p in report.torn]
                            ends = (self.jobs_journal.size(), self.ratings_journal.size())
                if ends == self._synced:
                    if self._folder_id is not None:  # idle: is the database still this folder's index?
                        with self.read_engine.connect() as conn:
                            self._check_owner(conn)
                    return
                with self._index_lock:
                    reached = self._index_to(ends, thorough=foreign)
                self._commits += 1
                self._index_recovered()
                # Each transaction lets go the reads it covers (a read waits for the journal's
                # size when it began, not for the follower to finish everything queued since).
                self._mark_synced(*reached)
                if reached[0] >= ends[0] and reached[1] >= ends[1]:
                    return
        except Timeout:
            log.warning("the follower waits for a journal locked by another process")
        except LostIndex:
            pass  # said once (_check_owner); nothing is indexed into another folder's index
        except DamagedJournal as error:
            log.error("%s", error)
            self._index_failed(error, [])
        except DBAPIError as error:
            message = (str(error.orig).strip().splitlines() or [repr(error.orig)])[0]
            log.warning("indexing failed: the index database: %s", message[:300])
            self._index_failed(error, [])
        except Exception as error:
            self._index_failed(error, [])

    def _index_to(self, ends: tuple[int, int], thorough: bool = True) -> tuple[int, int]:
        """One transaction of the follower (FOLLOW_BATCH lines of each file at most, towards
        `ends`); returns how far the index then holds each journal. `thorough` when another
        process may have written (sync.stale_reason)."""
        with self.write_engine.connect() as conn, conn.begin():
            self._check_owner(conn)
            log_cp, ratings_cp, report = self.indexer.catch_up_to(
                conn, ends, self._handed_lines, FOLLOW_BATCH, thorough
            )
            self.torn_files += [p.name for p in report.torn]
        return log_cp.offset, ratings_cp.offset

    def _handed_lines(self, name: str, start: int, stop: int):
        """(offset, line, length) from `start` to `stop`: the committer's own lines as it handed
        them over, the rest (another writer's, or past HANDED_MAX_BYTES) read from the journal."""
        handed, journal = self._handed[name], self.jobs_journal if name == LOG else self.ratings_journal
        while handed and handed[0][0] < start:  # indexed already (by an indexed commit, another process)
            self._handed_out[name] += handed.popleft()[2]
        pos = start
        while pos < stop:
            if handed and handed[0][0] == pos:
                item = handed.popleft()
                self._handed_out[name] += item[2]
                yield item
                pos += item[2]
                continue
            until = handed[0][0] if handed and pos < handed[0][0] < stop else stop
            for offset, line in journal.scan(pos, until):
                yield offset, line, len(line) + 1
            pos = until

    def _mark_synced(self, log_end: int, ratings_end: int | None) -> None:
        with self._indexed:
            self._synced = (log_end, self._synced[1] if ratings_end is None else ratings_end)
            self._indexed.notify_all()

    @contextmanager
    def reader(self):
        """A read connection that sees every write acknowledged before the call, by this process
        or another: wait (at most READ_WAIT_SECONDS) until the index holds the journals as far as
        they reach now. Not while the index cannot be written: that read answers from what it has."""
        self._wait_for_index_file()
        self._wait_for_index()  # at once while the index is lost
        with self.read_engine.connect() as conn:
            self._check_owner(conn)  # in the read's transaction: a swap waits until it ends
            self._database_answers()
            yield conn

    def _database_answers(self) -> None:
        """A read reached the database server: index writes that failed because it could not be
        reached are tried again now, not at the end of their backoff (up to a minute after a long
        outage). Once: when that try fails too, the server answers reads but not writes, and the
        backoff goes on."""
        trouble = self.index_trouble
        if trouble is None or not trouble["unreachable"] or trouble["nudged"]:
            return
        with self._indexed:
            if self.index_trouble is not trouble:
                return
            soon = trouble["tried"] + INDEX_RETRY_REACHED_SECONDS
            self.index_trouble = {**trouble, "next_try": min(trouble["next_try"], soon), "nudged": True}
        self._follow_wake.set()

    def _check_owner(self, conn: Connection) -> None:
        """A server database: LostIndex once it is another data folder's index (a `reindex` of
        that folder took it over). Its rows would be read at this folder's journal offsets, and
        this folder's lines indexed into it."""
        if self._folder_id is None:
            return
        owner = index_owner(conn)
        if owner in (self._folder_id, None):  # None: claimed at start
            if self.lost_index is not None:  # this folder's `reindex` took it back: complete to the journal's end
                log.warning("the index database is this data folder's index again: serving from it")
                self.lost_index = None
            return
        if self.lost_index is None:
            self.lost_index = (
                f"the index database {self.settings.shown_db_url} became the index of another data folder "
                f"(a `learning-svc reindex` of that folder took it over); this service of {self.settings.data_dir} "
                "stopped using it, and its JSONL files keep every acknowledged write: restart it with a database "
                f"of its own, or run `learning-svc reindex --data-dir {self.settings.data_dir}` to take it back"
            )
            log.error("%s", self.lost_index)
            with self._indexed:
                self._indexed.notify_all()  # reads waiting for the follower: it will not index any more
        if self.lost_index is not None:
            raise LostIndex(self.lost_index)

    def _wait_for_index(self) -> None:
        """Until the index holds the journals as far as they reach now (READ_WAIT_SECONDS at most)."""
        target = (self.jobs_journal.size(), self.ratings_journal.size())
        synced = self._synced
        follower = self._follower
        if (synced[0] < target[0] or synced[1] < target[1]) and follower is not None and follower.is_alive():
            self._follow_wake.set()
            self._follow_now.set()
            with self._indexed:
                self._indexed.wait_for(
                    lambda: (
                        self.index_trouble is not None
                        or self.lost_index is not None
                        or (self._synced[0] >= target[0] and self._synced[1] >= target[1])
                    ),
                    READ_WAIT_SECONDS,
                )

    # -- the index file deleted or replaced while serving (SQLite)
    def _index_file(self) -> tuple[int, int] | None:
        """SQLite: (device, inode) of the index file at its path; None when it is gone, or on a server."""
        if self._index_file_path() is None:
            return None
        try:
            st = os.stat(self._index_file_path())
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def _hold_index_file(self) -> None:
        """Take the index file's identity, and keep it open: once every connection to a deleted
        file had closed, a new empty file could get its inode number and pass for it."""
        if self._index_file_path() is None:
            return
        if self._index_file_fd is not None:
            os.close(self._index_file_fd)
            self._index_file_fd = None
        if os.name == "nt":  # there a file open in SQLite cannot be deleted at all; an open one cannot be replaced
            st = os.stat(self._index_file_path())
        else:
            self._index_file_fd = os.open(self._index_file_path(), os.O_RDONLY)
            st = os.fstat(self._index_file_fd)
        self._index_file_id = (st.st_dev, st.st_ino)

    def _index_file_path(self) -> str | None:
        """SQLite's index file; None on a server or for a database in memory."""
        database = self.write_engine.url.database
        if self.write_engine.dialect.name != "sqlite" or not database or database == ":memory:":
            return None
        return database

    def _index_file_changed(self) -> bool:
        """The index file deleted, replaced, or found damaged: it is made anew."""
        if self._index_damaged is not None:
            return True
        return self._index_file_id is not None and self._index_file() != self._index_file_id

    def _note_damage(self, context) -> None:
        """SQLAlchemy's handle_error: a statement found the index file damaged. Not while it is
        made anew (an old connection's error then is about the file being replaced)."""
        if self._index_damaged is not None or not self._index_ready.is_set():
            return
        if db.damaged_index(context.original_exception) and self._index_file_id is not None:
            self._index_damaged = " ".join(str(context.original_exception).split())[:200]
            log.error("the index file is damaged (%s): making it anew from the JSONL files", self._index_damaged)
            self._follow_wake.set()
            self._follow_now.set()

    def _should_renew(self) -> bool:
        return self._index_file_changed() and time.monotonic() >= self._renew_after

    def _wait_for_index_file(self) -> None:
        """A read while the index file is gone (before the follower noticed, or while it is made
        anew) waits for the new one: a new connection made an empty file, and the read was a 503
        saying "lost its tables ... restart the service"."""
        deadline = time.monotonic() + READ_WAIT_SECONDS
        while self._index_file_changed() or not self._index_ready.is_set():
            self._follow_wake.set()
            self._follow_now.set()
            if time.monotonic() >= deadline:
                raise Unavailable(RENEWING)
            self._index_ready.wait(0.02)

    def _renew_index(self) -> None:
        """The index file was deleted (or another put in its place): the pools' connections went on
        with the old one, new ones made an empty file, and reads and writes failed by turns with
        "no such table" until a restart, while /api/health said ok. Close every connection, wait
        for those in use (a connection closing last on the old file deletes the WAL by its name,
        which is the new file's WAL then), and make the index anew from the journals. Hold both
        journals' locks."""
        path = Path(self.write_engine.url.database)
        damaged = self._index_damaged
        if damaged and self._index_file() == self._index_file_id and not _file_damaged(path):
            # A connection made before the file was made anew (a long export held it past the
            # renewal's wait) met the old file's damage: the file in place is whole. It was
            # deleted and made anew again (a code review): minutes of 503s at a million jobs.
            self._index_damaged = None
            self.read_engine.dispose()
            log.warning("the index file %s is whole (a connection to the file it replaced saw that damage)", path)
            return
        log.warning(
            "the index file %s was %s while serving: making it anew from the JSONL files",
            path,
            f"found damaged ({damaged})" if damaged else "deleted or replaced",
        )
        with self._index_lock:
            self._index_ready.clear()
            with self._renewal_lock:
                renewal = {
                    "since": self._renewal["since"] if self._renewal else self._renew_noticed or time.time(),
                    "bytes_indexed": 0,
                    "bytes": self.jobs_journal.size() + self.ratings_journal.size(),
                }
                self._renewal = renewal
            try:
                pools = [self.read_engine.pool, self.write_engine.pool]
                self.read_engine.dispose()
                self.write_engine.dispose()
                # and a read that passed the gate just before it closed may have a connection of the new pool
                pools.append(self.read_engine.pool)
                deadline = time.monotonic() + READ_WAIT_SECONDS
                while any(pool.checkedout() for pool in pools) and time.monotonic() < deadline:
                    time.sleep(0.01)
                self.read_engine.dispose()
                if damaged and self._index_file() == self._index_file_id:  # the damaged file itself
                    db.remove_index_file(path)
                elif not _made_anew_elsewhere(path):  # another `serve --workers` process's: taken as it is
                    db.remove_index_file(path)  # what a connection made meanwhile: an empty index
                db.upgrade(self.write_engine)
                for backlog in (self.pending_jobs, self.pending_ratings, self.pending_reviews, self.pending_rating_ids):
                    backlog.clear()  # all indexed below
                # As at a start: parse workers for a long history, the version's projection recorded
                # (without it, every later start rebuilt the whole index "for other fields").
                report = self.indexer.catch_up(
                    progress=lambda done: renewal.update(bytes_indexed=renewal["bytes_indexed"] + done)
                )
                with self.write_engine.begin() as conn:
                    log_cp, ratings_cp = read_checkpoints(conn, LOG, RATINGS)
                self.read_engine.dispose()  # one a checkpoint opened meanwhile may hold a stray's inode
                self.torn_files += [p.name for p in report.torn]
                self._hold_index_file()
                self._ends = (log_cp.offset, ratings_cp.offset)
                with self._indexed:
                    self._synced = self._ends
                    self._indexed.notify_all()
                self._index_recovered()  # a write that failed on the deleted file: every line is indexed now
                with self._renewal_lock:  # the file is the new one now: a health check cannot note it again
                    self._renewal = self._renew_noticed = None
                self._index_damaged = None
            except BaseException:
                self._renew_after = time.monotonic() + INDEX_RETRY_SECONDS  # not again at every read's nudge
                renewal.update(bytes_indexed=0, bytes=None)  # the next attempt starts over (and "since" stays)
                raise
            finally:
                self._index_ready.set()
        log.warning("the index file %s is made anew: %d jobs", path, log_cp.line_count)

    # -- when the index cannot be written (a full disk): the journal goes on, the index catches up later
    def _index_failed(self, error: Exception, ops: list[_Op]) -> None:
        """Lines already appended are durable and acknowledged: remember them until the index has them."""
        trouble = self.index_trouble
        wait = INDEX_RETRY_SECONDS if trouble is None else min(trouble["wait"] * 2, INDEX_RETRY_MAX_SECONDS)
        if trouble is None and isinstance(error, DBAPIError):  # the database away: said in one line, no traceback
            reason = (str(error.orig).strip().splitlines() or [repr(error.orig)])[0]
            log.error("the index could not be updated (%s); %s", reason[:300], INDEX_FAILED_NOTE)
        elif trouble is None:
            log.error(
                "the index could not be updated; %s",
                INDEX_FAILED_NOTE,
                exc_info=(type(error), error, error.__traceback__),
            )
        # A server database that could not be reached is tried again as soon as a read reaches it
        # (_database_answers), unless that was tried already: then it answers reads, not writes.
        unreachable = isinstance(error, DBAPIError) and self.write_engine.dialect.name != "sqlite"
        tried = time.monotonic()
        with self._indexed:
            self.index_trouble = {
                "problem": f"{type(error).__name__}: {error}"[:500],
                "since": trouble["since"] if trouble else time.time(),
                "wait": wait,
                "tried": tried,
                "next_try": tried + wait,
                "unreachable": unreachable and (trouble is None or (trouble["unreachable"] and not trouble["nudged"])),
                "nudged": False,
            }
            self._indexed.notify_all()  # readers stop waiting for it
        for op in ops:
            if op.error is None and op.result is not None and op.result[0]:
                self._remember_unindexed(op)

    def _index_recovered(self) -> None:
        if self.index_trouble is not None:
            log.warning("the index has caught up with the journal again")
            self.index_trouble = None

    def _write_jobs(self, conn: Connection, cp: Checkpoint, ops: list[_Op]) -> None:
        if not ops:
            return
        known = {
            job_id: (row.input_hash, row)
            for job_id, row in queries.job_rows(conn, [op.payload["job_id"] for op in ops]).items()
        }
        for op in ops:  # appended, not indexed yet
            if op.payload["job_id"] in self.pending_jobs and op.payload["job_id"] not in known:
                known[op.payload["job_id"]] = self.pending_jobs.get(op.payload["job_id"])
        fresh: list[tuple[_Op, bytes]] = []
        twins: list[tuple[_Op, _Op]] = []
        for op in ops:
            line = op.payload
            hash_, row = known.get(line["job_id"], (None, None))
            if hash_ is None:
                known[line["job_id"]] = (line["input_hash"], op)
                fresh.append((op, op.data or records.dumps(line)))
            elif hash_ != line["input_hash"] and not self._posted_as(op, hash_):
                op.finish(error=Conflict(f"job {line['job_id']!r} was already recorded with different content"))
            elif isinstance(row, _Op):  # the same retry twice in one batch: answered as its first copy is
                twins.append((op, row))
            elif isinstance(row, dict):  # appended while the index was failing: its summary as it was answered
                op.finish(result=(False, row))
            else:
                op.finish(result=(False, queries.summary_of(conn, row, self.jobs_journal)))
        lines = self._append(self.jobs_journal, fresh, lambda op: (True, op.summary or _summary(op.payload)))
        _answer_twins(twins, lambda first: (False, first.summary or _summary(first.payload)))
        if lines and cp is not None:  # no checkpoint: the index is behind, and catches up later
            self.indexer.apply_log(conn, cp, lines, known_new=True)

    def _posted_as(self, op: _Op, stored_hash: str) -> bool:
        """Whether the job was stored from this op's input by an earlier version (its hash of
        `num_outputs` as given): asked only when the hashes differ, so rarely parsed again."""
        job = op.source
        if isinstance(job, (bytes, bytearray)):
            try:
                job = records.parse_json(records.JobIn, bytes(job), self.settings.naive_timezone)
            except (records.InvalidRecord, ValueError):
                return False
        return job is not None and records.same_input(stored_hash, job)

    def _write_amendments(self, conn: Connection, cp: Checkpoint, ops: list[_Op]) -> None:
        """One at a time (they are rare): each sees the ones before it, also of the same job."""
        for op in ops:
            job_id, patch, replace = op.payload["job_id"], op.payload["patch"], op.payload["replace"]
            row = queries.job_row(conn, job_id)
            if row is None:
                op.finish(error=NotFound(f"no job {job_id!r}"))
                continue
            base, earlier = self._lines_of(conn, row)
            try:
                current = records.effective_line(base, earlier)
            except records.InvalidRecord as error:  # a line an older version accepted
                op.finish(
                    error=records.InvalidRecord(f"the stored record of job {job_id!r} cannot be amended: {error}")
                )
                continue
            changes, refused = records.amendment_changes(current, patch, replace)
            if not changes:
                op.finish(result=([], queries.summary_of(conn, row, self.jobs_journal)))
                continue
            line = records.amend_line(job_id, changes)
            try:  # a bad value is a 400 whether or not the field is set
                after = records.effective_line(base, [*earlier, line])
            except records.InvalidRecord as error:
                op.finish(error=error)
                continue
            review = row.review and orjson.loads(row.review)
            if refused:
                op.finish(
                    error=Conflict(
                        f"job {job_id!r} already has {', '.join(refused)} set to other values; "
                        "amend with replace=true to change them"
                    )
                )
                continue
            if orphaned := _rated_images_beyond(review, after["num_outputs"]):
                op.finish(error=Conflict(_orphaned_message(job_id, orphaned, after["num_outputs"])))
                continue
            summary = records.job_summary(records.line_summary(after), row.rating, row.rated_at, review)
            op.payload = line
            result = (sorted(changes), summary)
            lines = self._append(self.jobs_journal, [(op, records.dumps(line))], lambda _, result=result: result)
            if lines:
                self.indexer.apply_log(conn, cp, lines)

    def _lines_of(self, conn: Connection, row) -> tuple[dict, list[dict]]:
        """A job's stored line and its amendment lines, from the journal."""
        base = orjson.loads(self.jobs_journal.read_at(row.id, row.line_length))
        if not row.amendments:
            return base, []
        return base, [
            orjson.loads(self.jobs_journal.read_at(offset, length))
            for offset, length in queries.amendment_positions(conn, row.job_id)
        ]

    def _write_ratings(self, conn: Connection, cp: Checkpoint, ops: list[_Op]) -> None:
        """Rating and review events, in the order submitted, in one append."""
        if not ops:
            return
        job_ids = sorted({op.payload["job_id"] for op in ops})
        rows = queries.job_rows(conn, job_ids)
        current = {job_id: (row.rating, row.rated_at) for job_id, row in rows.items()}
        states = {job_id: row.review and orjson.loads(row.review) for job_id, row in rows.items()}
        # A job not indexed yet may have rating and review events that are (the follower and a
        # start-up index the ratings file apart from the log): its state starts from them.
        early = [job_id for job_id in job_ids if job_id not in rows and job_id in self.pending_jobs]
        current.update(queries.rating_before_job(conn, early))
        states.update(queries.review_before_job(conn, early))
        for job_id in job_ids:  # ratings and reviews appended, not indexed yet
            if job_id in self.pending_ratings:
                current[job_id] = self.pending_ratings.get(job_id)
            if job_id in self.pending_reviews:
                states[job_id] = self.pending_reviews.get(job_id)
        # Only a rating id the caller gave (an importer's) can be in the file already: ours are new uuids.
        given = [op.payload["rating_id"] for op in ops if op.kind == "rating" and op.given_id]
        seen = queries.known_rating_ids(conn, job_ids, given) if given else set()
        seen.update(rating_id for rating_id in given if rating_id in self.pending_rating_ids)
        fresh, outcomes, twins = [], {}, []
        rated_here: dict[str, _Op] = {}  # job id -> the rating of this commit that set its current rating
        for op in ops:
            if op.kind == "review":
                self._review(op, current, states, fresh, outcomes)
                continue
            event = op.payload
            job_id, rating = event["job_id"], event["rating"]
            if job_id not in current:
                op.finish(error=NotFound(f"no job {job_id!r}"))
            elif op.expect is not None and not reviews.still(current[job_id][0], states.get(job_id), None, op.expect):
                op.finish(result=(False, {"job_id": job_id, "output": None, "conflicted": True}))
            elif job_id in rated_here and current[job_id][0] == rating:  # as this commit's rating, once written
                twins.append((op, rated_here[job_id]))
            elif event["rating_id"] in seen or current[job_id][0] == rating:  # nothing changes
                op.finish(
                    result=(False, {"job_id": job_id, "rating": current[job_id][0], "rated_at": current[job_id][1]})
                )
            else:
                rated_at = event["timestamp"] if rating is not None else None
                current[job_id] = (rating, rated_at)
                seen.add(event["rating_id"])
                rated_here[job_id] = op
                outcomes[event["rating_id"]] = (True, {"job_id": job_id, "rating": rating, "rated_at": rated_at})
                fresh.append((op, records.dumps(event)))
        lines = self._append(
            self.ratings_journal, fresh, lambda op: outcomes[op.payload.get("rating_id") or op.payload.get("review_id")]
        )
        _answer_twins(twins, lambda first: (False, first.result[1]))
        if lines and cp is not None:
            self.indexer.apply_ratings(conn, cp, lines)

    @staticmethod
    def _review(op: _Op, current: dict, states: dict, fresh: list, outcomes: dict) -> None:
        job_id, output = op.payload["job_id"], op.payload["output"]
        if job_id not in current:
            op.finish(error=NotFound(f"no job {job_id!r}"))
            return
        state = states.get(job_id)
        if op.expect is not None and not reviews.still(current[job_id][0], state, output, op.expect):
            op.finish(result=(False, {"job_id": job_id, "output": output, "conflicted": True}))
            return
        try:
            changes = reviews.resolve(state, op.payload["given"], output)
        except ValueError as error:
            op.finish(error=BadReview(str(error)))
            return
        if not changes:
            op.finish(
                result=(
                    False,
                    {"job_id": job_id, "output": output, "changed": [], "previous": {}, "expect": {}, "review": state},
                )
            )
            return
        event = reviews.review_event(job_id, changes, op.payload["source"], output)
        after = reviews.apply(state, output, changes)
        outcomes[event["review_id"]] = (
            True,
            {
                "job_id": job_id,
                "output": output,
                "changed": sorted(changes),
                "previous": reviews.previous(state, changes, output),
                "expect": reviews.expected(after, changes, output),
                "review": after,
            },
        )
        states[job_id] = after
        op.payload = event
        fresh.append((op, records.dumps(event)))

    def _append(self, journal: Journal, fresh: list[tuple[_Op, bytes]], result_of) -> list | None:
        """One write and one fsync for all fresh lines, then answer each op; returns the
        (offset, line, length) triples to index, or None when nothing was written."""
        if not fresh:
            return None
        try:
            start = journal.append(b"".join(data for _, data in fresh))
        except JournalWriteError as error:
            for op, _ in fresh:
                op.finish(error=Unavailable(str(error)))
            if journal.path.name not in self._journal_troubles:
                self._journal_troubles[journal.path.name] = {"message": f"{error}"[:300], "since": time.time()}
            return None
        self._journal_troubles.pop(journal.path.name, None)
        lines, offset = [], start
        for op, data in fresh:
            op.appended = result_of(op)
            op.finish(result=op.appended)  # durable now, whatever the index does (or a timeout said)
            op.offset, op.length = offset, len(data)
            lines.append((offset, op.to_index(), len(data)))
            offset += len(data)
        return lines

    # ------------------------------------------------------------ reads
    def list_jobs(self, page: Page) -> tuple[list[dict], str | None]:
        with self.reader() as conn:
            return queries.list_jobs(conn, make_plan(conn, page, self.match_sets, self.thresholds), self.jobs_journal)

    def changes(self, filters: Filters, after: tuple[int, int] | None) -> dict:
        with self.reader() as conn:
            plan = make_plan(conn, Page(filters, "-completed_at", 1), self.match_sets, self.thresholds)
            return queries.changes(conn, plan, after, self.jobs_journal)

    def count(self, filters: Filters, limit: int = COUNT_UP_TO) -> dict:
        """How many jobs match, and how many of those are unrated (each counted up to `limit`)."""
        with self.reader() as conn:

            def counted(f: Filters) -> tuple[int, bool]:
                return queries.count(
                    conn, make_plan(conn, Page(f, "-completed_at", 1), self.match_sets, self.thresholds), limit
                )

            jobs, exact = counted(filters)
            if filters.rated or filters.rating_min is not None or filters.rating_max is not None:
                unrated, unrated_exact = 0, True
            else:
                unrated, unrated_exact = counted(replace(filters, rated=False))
        return {"jobs": jobs, "exact": exact, "unrated": unrated, "unrated_exact": unrated_exact}

    def facet_displays(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(field, key) -> the value as the facets list it (index/facets.displays)."""
        if not keys:  # an unfiltered facets request (the page's most frequent): no second read
            return {}
        with self.reader() as conn:
            return facets.displays(conn, keys)

    def facets(self, filters: Filters, size: int) -> tuple[dict, dict | None]:
        with self.reader() as conn:
            if filters.empty:
                return facets.unfiltered(conn, size), None
            sample = Page(filters, "-completed_at", self.thresholds.facet_sample)
            return facets.filtered(conn, make_plan(conn, sample, self.match_sets, self.thresholds), size)

    def get_job(self, job_id: str) -> dict:
        """The job's record (with its amendments applied), its amendment lines, rating and history."""
        with self.reader() as conn:
            row = queries.job_row(conn, job_id)
            if row is None:
                raise NotFound(f"no job {job_id!r}")
            history = queries.rating_history(conn, job_id)
            review_history = queries.review_history(conn, job_id)
            base, amendments = self._lines_of(conn, row)
        record = records.effective_line(base, amendments) if amendments else base
        review = row.review and orjson.loads(row.review)
        return {
            "record": record,
            "summary": records.job_summary(records.line_summary(record), row.rating, row.rated_at, review),
            "amendments": amendments,
            "rating": row.rating,
            "rated_at": row.rated_at,
            "rating_history": history,
            "review": review,
            "review_history": review_history,
        }

    @property
    def watched_folders(self) -> tuple[Path, ...]:
        """`serve --watch` folders: where an output not where its path says is looked for after
        the output root (a pipeline's Windows path, its image found by the watcher)."""
        return tuple(folder.expanduser() for folder in self.settings.watch)

    def output_owners(self, paths: list[str], claimed: dict[tuple[str, str], str]) -> dict[str, str]:
        """Which of these image files a recorded job names as its output: path -> that job's id
        (see owners_among). The candidates come from job_outputs: a hash of the output's folder
        and file name (project.output_key), checked against the job's current record."""
        keys = {path: output_keys(path, self.settings.output_root) for path in paths}
        wanted = {output_hash(k) for ks in keys.values() for k in ks}
        outputs: dict[str, list[tuple[str, str]]] = {}
        journal_end = self.jobs_journal.size()
        try:
            with self.reader() as conn:
                # Unavailable rather than an answer from an index behind the journal (it cannot be
                # written, or is still catching up): a job acknowledged but not indexed yet names
                # its outputs too, and its image taken for a job of its own would be one for good.
                if self._synced[0] < journal_end:
                    raise IndexBehind(
                        "the index is behind the journal: the outputs of recent jobs are not in it yet", self._synced[0]
                    )
                for row in {row.id: row for row in queries.jobs_naming_outputs(conn, wanted)}.values():
                    base, amendments = self._lines_of(conn, row)
                    record = records.effective_line(base, amendments) if amendments else base
                    keep_outputs(outputs, row.job_id, record)
        except DBAPIError as error:  # the database away (PostgreSQL restarting, SQLite locked): ask again later
            raise Unavailable(index_error_message(error)) from error
        return owners_among(paths, outputs, self.settings.output_root, claimed, self.watched_folders)

    def open_output(self, job_id: str, n: int) -> images.Output | None:
        """Output `n` of a job opened for serving if it is a readable image, else None (a placeholder).
        NotFound for an unknown job or an output it does not have; images.Unreadable for a file
        that is there but no image. The caller closes it."""
        summary = self.get_summary(job_id)
        outputs = summary["outputs"]
        if not 0 <= n < len(outputs):
            raise NotFound(f"job {job_id!r} has {len(outputs)} output{'' if len(outputs) == 1 else 's'}, not {n + 1}")
        output = images.open_output(
            outputs[n], self.settings.output_root or Path.cwd(), self.watched_folders, self.settings.outputs_confined
        )
        if output is not None and images.replaced(job_id, output):
            output.close()  # the job's viewer showed an image its parameters did not make
            raise images.Replaced(outputs[n])
        return output

    def follow_moved_image(self, job_id: str, found_at: str) -> bool:
        """An image's job (its id from the image's content) found again at `found_at`: if its
        recorded file is gone from where the job says (the user moved or renamed it), the job's
        output becomes the new path (an amendment), so its thumbnail, viewer and ratings go on.
        A copy (both there) changes nothing. True when the job was amended."""
        if not self.image_moved(job_id, found_at):
            return False
        changed, _ = self.amend_job(job_id, {"outputs": [found_at]}, replace=True)
        if changed:
            log.info("the image of job %s moved to %s", job_id, found_at)
        return bool(changed)

    def image_moved(self, job_id: str, found_at: str) -> bool:
        """Whether an image's job found at `found_at` has left the path it records: nothing is
        there, or another image (by content: files swapped by name keep their times)."""
        outputs = self.get_summary(job_id)["outputs"]
        if len(outputs) != 1 or outputs[0] == found_at:
            return False
        try:
            output = images.open_output(
                outputs[0],
                self.settings.output_root or Path.cwd(),
                self.watched_folders,
                self.settings.outputs_confined,
            )
        except images.Unreadable:  # a file is there, one Pillow will not serve (a damaged text chunk):
            return False  # still in place, so the one found here is a copy (it moved the job to the copy)
        if output is None:
            return True
        with output.file:
            return images.holds_another_image(job_id, output)  # not: still there, found here as a copy

    def output_thumbnail(self, job_id: str, n: int) -> tuple[bytes | None, images.Output] | None:
        """None: no such output (or its file is missing); (None, output): an image Pillow could
        not make a thumbnail of. Raises images.Unreadable, images.TooLarge, images.Busy (another
        large image's thumbnail is being made in this process)."""
        output = self.open_output(job_id, n)
        if output is None:
            return None
        try:
            data = images.thumbnail(output, self.settings.data_dir / "thumbnails")
        finally:
            output.close()
        return data, output

    def get_summary(self, job_id: str) -> dict:
        with self.reader() as conn:
            row = queries.job_row(conn, job_id)
            if row is None:
                raise NotFound(f"no job {job_id!r}")
            return queries.summary_of(conn, row, self.jobs_journal)

    def rating_state(self, job_ids: list[str], rating_ids: list[str]) -> tuple[set[str], dict[str, int | None]]:
        """(those of rating_ids already recorded, each job's current rating): what decides, as a
        rating op would, whether a rating an importer brings changes anything (a dry run)."""
        with self.reader() as conn:
            known = queries.known_rating_ids(conn, job_ids, rating_ids) if rating_ids else set()
            current = {job_id: row.rating for job_id, row in queries.job_rows(conn, job_ids).items()}
        known.update(rating_id for rating_id in rating_ids if rating_id in self.pending_rating_ids)
        return known, current

    def latest_rating_times(self, job_ids: list[str]) -> dict[str, float]:
        """The time of each job's newest rating event, for the jobs that have one."""
        with self.reader() as conn:
            return queries.latest_rating_times(conn, job_ids)

    def ratings_dict(self) -> dict[str, int]:
        with self.reader() as conn:
            return queries.ratings_dict(conn)

    def export(self, filters: Filters, sort: str) -> Iterator[tuple[dict, Callable[[], tuple[dict, list[dict]]]]]:
        """(summary, a function giving (the stored line, its amendment lines)) for every matching job, streamed."""
        with self.reader() as conn, self.jobs_journal.reading() as read:
            plan = make_plan(conn, Page(filters, sort, 500), self.match_sets, self.thresholds)
            for row in queries.iter_jobs(conn, plan):
                yield queries.summary_from(conn, row, read), (lambda r=row: self._lines_of(conn, r))

    def health(self) -> dict:
        if self._index_file_changed() or not self._index_ready.is_set():
            return self._renewing_health()
        with self.reader() as conn:  # a write acknowledged before is counted
            counts = queries.counts(conn)  # from the facet counts: the jobs table answers too (it said
            conn.execute(select(jobs_table.c.id).limit(1)).all()  # "ok" with the table dropped)
            log_cp = read_checkpoint(conn, LOG)
            ratings_cp = read_checkpoint(conn, RATINGS)
        log_bytes, ratings_bytes = self.jobs_journal.size(), self.ratings_journal.size()
        lag = max(0, log_bytes - log_cp.offset) + max(0, ratings_bytes - ratings_cp.offset)
        # An index that holds every line is not in trouble, whatever the flag says: the follower
        # commits the backlog first and clears the flag after, and reads see the commit at once.
        trouble = self.index_trouble if lag else None
        lines_not_indexed = self.jobs_journal.count_lines(log_cp.offset, log_bytes)
        problem = (
            None
            if trouble is None
            else {
                "message": trouble["problem"],
                "since": trouble["since"],
                # past the index's checkpoint (this process's writes, and another's or an earlier
                # run's: a service started with a full disk had taken none in yet)
                "jobs_not_indexed": lines_not_indexed,
                "note": "every acknowledged write is in the JSONL; the index catches up by itself once it can be written",
            }
        )
        journal_trouble = self.journal_trouble()
        return {
            "status": ("degraded" if trouble or journal_trouble else "ok") if self._thread else "stopped",
            "jsonl": {  # the lines the index has read, and those past it (the files' own count)
                "jobs_lines": log_cp.line_count + lines_not_indexed,
                "rating_lines": ratings_cp.line_count
                + self.ratings_journal.count_lines(ratings_cp.offset, ratings_bytes),
                "log_bytes": log_bytes,
                "ratings_bytes": ratings_bytes,
                "problem": journal_trouble
                and {
                    **journal_trouble,
                    "note": "writes are answered 503 with nothing written; an append that succeeds clears this",
                },
            },
            "index": {
                "jobs": counts["jobs"],
                "rating_events": counts["rating_events"],
                "lag_bytes": lag,
                "skipped_lines": log_cp.skipped + ratings_cp.skipped,
                "behind": lag > 0,
                "problem": problem,
            },
            "damaged": {"torn_tails_moved": self.torn_files},
            "data_dir": str(self.settings.data_dir.resolve()),  # the page's empty state names it
            **self._watch_health(),
        }

    def journal_trouble(self) -> dict | None:
        """The journals' append failures not cured since, for /api/health (None: none): the first
        one's message and time, and every file that has one."""
        troubles = dict(self._journal_troubles)
        if not troubles:
            return None
        first = min(troubles.values(), key=lambda trouble: trouble["since"])
        return {"message": first["message"], "since": first["since"], "files": sorted(troubles)}

    def _renewing_health(self) -> dict:
        """/api/health while the index file is made anew: at once, from the journals' sizes, with
        how far the new index has come (the page's banner says it)."""
        self._follow_wake.set()
        self._follow_now.set()
        with self._renewal_lock:
            renewal = self._renewal
            if renewal is None:  # not begun yet: its start counts from the first time it was seen
                if self._renew_noticed is None and self._index_file_changed():
                    self._renew_noticed = time.time()
                renewal = {"since": self._renew_noticed or time.time(), "bytes_indexed": 0, "bytes": None}
        done, total = renewal["bytes_indexed"], renewal["bytes"]
        message = "the index file was deleted, replaced or damaged and is being made anew from the JSONL files"
        if total:
            message += f": {min(99, done * 100 // total)}% done"
        return {
            "status": "degraded" if self._thread else "stopped",
            "jsonl": {
                "jobs_lines": None,
                "rating_lines": None,
                "log_bytes": self.jobs_journal.size(),
                "ratings_bytes": self.ratings_journal.size(),
                "problem": self.journal_trouble(),
            },
            "index": {
                "jobs": None,
                "rating_events": None,
                "lag_bytes": None,
                "skipped_lines": None,
                "behind": True,
                "problem": {
                    "message": message,
                    "since": renewal["since"],
                    "jobs_not_indexed": None,
                    "bytes_indexed": done,
                    "bytes_to_index": total,
                    "note": "every acknowledged write is in the JSONL; the index is made from it",
                },
            },
            "damaged": {"torn_tails_moved": self.torn_files},
            "data_dir": str(self.settings.data_dir.resolve()),  # the page's empty state names it
            **self._watch_health(),
        }

    def _watch_health(self) -> dict:
        if self.watcher is not None:
            return {"watch": self.watcher.describe()}
        if self.settings.watch_state is not None:  # serve --workers: worker 0 runs the watchers
            from .watch import published_state

            return {"watch": published_state(self.settings.watch_state)}
        return {}


def _file_damaged(path: Path) -> bool:
    """Whether the SQLite file at `path` is damaged: it cannot be opened as a database, or
    SQLite's quick_check finds a broken page (a read of every page: only when a statement
    said so, to tell a stale connection's news of a file replaced since from the file's own)."""
    import sqlite3

    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)) as conn:
            return conn.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok"
    except sqlite3.DatabaseError as error:
        return db.damaged_index(error)


def _made_anew_elsewhere(path: Path) -> bool:
    """Whether the SQLite file at `path` is an index (its checkpoints table there): another
    process serving the folder made it anew first. Not an empty file a connection left, which
    is removed (a process taking another's new index for a stray removed it, and so on)."""
    import sqlite3

    if not path.exists():
        return False
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)) as conn:
            return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'checkpoints'").fetchone() is not None
    except sqlite3.Error:
        return False


def _summary(line: dict) -> dict:
    return records.new_job_summary(line)


def _answered(ops: list[_Op]) -> None:
    """Let the callers of the ops that have their answer have it."""
    for op in ops:
        if op.result is not None or op.error is not None:
            op.done.set()


def _answer_twins(twins: list[tuple[_Op, _Op]], unchanged) -> None:
    """Ops that repeat an earlier op of the same commit: answered as it was, once its append
    is done (`unchanged(first)` when it was written; its error when the append failed)."""
    for op, first in twins:
        if first.error is not None:
            op.finish(error=first.error)
        else:
            op.finish(result=unchanged(first))


def keep_outputs(outputs: dict[str, list[tuple[str, str]]], job_id: str, record: dict) -> None:
    """Note a job's outputs by output_key, for owners_among."""
    for output in record.get("outputs") or ():
        if isinstance(output, str):
            outputs.setdefault(output_key(output), []).append((job_id, output))


def output_keys(path: str, output_root: Path | None) -> set[str]:
    """The output_keys a job may name an image file by: its folder and file name, and its bare
    name when it is directly under the output root."""
    from .importers.images import recorded_path

    keys = {output_key(path)}
    relative = recorded_path(Path(path), output_root)
    if "/" not in relative and "\\" not in relative:
        keys.add(output_key(relative))
    return keys


def owners_among(
    paths: list[str],
    outputs: dict[str, list[tuple[str, str]]],
    output_root: Path | None,
    claimed: dict[tuple[str, str], str],
    also_under: tuple[Path, ...] = (),
) -> dict[str, str]:
    """path -> the job naming that image file among `outputs` (output_key -> [(job, output)]). An
    output that is a file on this machine names that file alone; one that is not (a Windows path
    here, a folder since moved) names an image of the same folder and file name, the first one
    seen: `claimed` ((job, output) -> path), kept by the caller across calls, makes each output
    one image's."""
    root = output_root or Path.cwd()
    owners: dict[str, str] = {}
    for path in paths:
        for key in output_keys(path, output_root):
            for job_id, output in outputs.get(key, ()):
                if (
                    _names_file(output, (root, *also_under), path)
                    and claimed.setdefault((job_id, output), path) == path
                ):
                    owners[path] = job_id
                    break
            if path in owners:
                break
    return owners


def _names_file(output: str, roots: tuple[Path, ...], path: str) -> bool:
    """Does a job's output name the image at `path`, of the same folder and file name? A file
    that is there names itself alone. One that cannot be here (another system's path) or is not
    (moved since) names the file its thumbnail shows, found under the output root
    (images.open_output), and when there is none there, any such image (the first one seen)."""
    recorded = images.resolve(output, roots[0])
    same = None if recorded is None else _same_file(recorded, path)
    if same is not None:
        return same
    found = images.found_under(roots, output)
    return True if found is None else bool(_same_file(found[1], path))


def _same_file(recorded: Path, path: str) -> bool | None:
    """Whether `recorded` is the file at `path`; None when there is no file at `recorded` (or it
    cannot be looked at: a name too long, no permission)."""
    try:
        return os.path.samefile(recorded, path)
    except (OSError, ValueError):
        return None
