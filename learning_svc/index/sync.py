"""Bringing the index up to the journal files: start-up catch-up, live batches, reindex."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import orjson
from sqlalchemy import Connection, Engine, delete, select, text, update
from sqlalchemy.exc import OperationalError

from ..journal import DamagedJournal, Journal
from ..osutil import FOLDER_ID_FILE, GC_THRESHOLDS, IndexInUse, fsync_file, hold_index_file, pid_alive
from ..records import AMEND_SCHEMA, LOG_SCHEMA, RATING_SCHEMA, is_sound
from ..reviews import REVIEW_SCHEMA
from . import db
from .project import (
    PROJECTION,
    JobRows,
    UnprojectableLine,
    apply_amendment,
    insert_jobs,
    insert_ratings,
    insert_reviews,
    project_job,
    project_rating,
    project_review,
)
from .tables import (
    checkpoints,
    facet_values,
    index_meta,
    job_amendments,
    job_outputs,
    job_tags,
    jobs,
    metadata,
    rating_events,
    review_events,
)

log = logging.getLogger(__name__)
SAID_BACKLOG_BYTES = 32 * 2**20  # a start that has more than this to index says so first (~6,000 jobs)
BATCH_LINES = 2000
PARALLEL_ABOVE_BYTES = 64 << 20  # backlogs worth starting worker processes for
INDEX_BUILD_CACHE_KIB = 8192  # a rebuild's page cache while it sorts its secondary indexes
RANGE_BYTES = 4 << 20  # what one worker task parses and projects (a few are held in memory)
# The checkpoint names of the two journal files.
LOG, RATINGS = "log", "ratings"


@dataclass
class Checkpoint:
    name: str
    offset: int = 0
    line_count: int = 0
    first_line_hash: str | None = None
    skipped: int = 0


@dataclass
class SyncReport:
    jobs: int = 0
    ratings: int = 0
    duplicates: int = 0
    amendments: int = 0  # of the job log's lines (`jobs`), those that amend a job
    rebuilt: str | None = None
    torn: list[Path] = field(default_factory=list)


def read_checkpoint(conn: Connection, name: str, for_update: bool = False) -> Checkpoint:
    """`for_update` (a writer about to index past it): on PostgreSQL the row stays locked until
    commit, so that two processes never index the same lines (SQLite's BEGIN IMMEDIATE does it)."""
    statement = 'SELECT name, "offset", line_count, first_line_hash, skipped FROM checkpoints WHERE name = ?'
    if for_update and conn.dialect.name == "postgresql":
        statement += " FOR UPDATE"
    row = db.sql(conn, statement, (name,)).first()
    return Checkpoint(*row) if row else Checkpoint(name)


def read_checkpoints(conn: Connection, *names: str) -> tuple[Checkpoint, ...]:
    """Several checkpoints in one statement (one round trip to a database server)."""
    statement = 'SELECT name, "offset", line_count, first_line_hash, skipped FROM checkpoints WHERE name IN ({})'
    found = {row[0]: Checkpoint(*row) for row in db.sql(conn, statement.format(", ".join("?" * len(names))), names)}
    return tuple(found.get(name) or Checkpoint(name) for name in names)


def write_checkpoint(conn: Connection, cp: Checkpoint) -> None:
    values = (cp.offset, cp.line_count, cp.first_line_hash, cp.skipped, cp.name)
    changed = 'UPDATE checkpoints SET "offset" = ?, line_count = ?, first_line_hash = ?, skipped = ? WHERE name = ?'
    if db.sql(conn, changed, values).rowcount == 0:
        added = 'INSERT INTO checkpoints ("offset", line_count, first_line_hash, skipped, name) VALUES (?, ?, ?, ?, ?)'
        db.sql(conn, added, values)


def stale_reason(conn: Connection, journal: Journal, name: str, thorough: bool = True) -> str | None:
    """Why the index no longer describes this journal file (truncated or replaced), if it does not.

    `thorough` also reads back the last indexed line that made a row (_last_row_reason); the
    follower leaves it out for the lines its own process appended."""
    cp = read_checkpoint(conn, name)
    if cp.offset == 0:
        return None
    if journal.size() < cp.offset:
        return f"{journal.path.name} is shorter than the indexed part ({journal.size()} < {cp.offset} bytes)"
    if journal.first_line_hash() != cp.first_line_hash:
        return f"{journal.path.name} was replaced (its first line changed)"
    if journal.read_at(cp.offset - 1, 1) != b"\n":  # cut and grown again: the checkpoint is mid-line
        return f"{journal.path.name} was rewritten (byte {cp.offset} no longer starts a line)"
    return _last_row_reason(conn, journal, name, cp.offset) if thorough else None


# The rows that remember which line made them: (statement, the line's key that names the row).
# A job log row knows its line's length; a ratings line is read up to its newline.
_LAST_ROWS = {
    LOG: (
        ("SELECT id, job_id, line_length FROM jobs WHERE id < ? ORDER BY id DESC LIMIT 1", "job_id"),
        ("SELECT id, job_id, line_length FROM job_amendments WHERE id < ? ORDER BY id DESC LIMIT 1", "job_id"),
    ),
    RATINGS: (
        ("SELECT id, rating_id, NULL FROM rating_events WHERE id < ? ORDER BY id DESC LIMIT 1", "rating_id"),
        ("SELECT id, review_id, NULL FROM review_events WHERE id < ? ORDER BY id DESC LIMIT 1", "review_id"),
    ),
}


def _last_row_reason(conn: Connection, journal: Journal, name: str, end: int) -> str | None:
    """Whether the last indexed line that made a row still says what the row says. A file put in
    the journal's place with the same first line and at least as long (two machines' journals
    that both began with the same imported history) passes the other checks, and its lines at
    the indexed offsets are other jobs: the listing would show them under the wrong ids."""
    found = [(row, key) for statement, key in _LAST_ROWS[name] if (row := db.sql(conn, statement, (end,)).first())]
    if not found:
        return None
    (offset, identity, length), key = max(found, key=lambda item: item[0][0])
    if length is None:
        line = next(journal.scan(offset, end), (offset, b""))[1]
    else:
        line = journal.read_at(offset, length + 1)
        line = line[:-1] if line.endswith(b"\n") else b""
    starts_a_line = offset == 0 or journal.read_at(offset - 1, 1) == b"\n"
    try:
        record = orjson.loads(line) if starts_a_line else None
    except orjson.JSONDecodeError:
        record = None
    if isinstance(record, dict) and record.get(key) == identity:
        return None
    return f"{journal.path.name} was replaced (byte {offset} no longer holds {key} {identity})"


def wipe(conn: Connection) -> None:
    tables = (job_tags, job_outputs, job_amendments, jobs, facet_values, rating_events, review_events)
    if conn.dialect.name == "postgresql":
        # At once, whatever the size: DELETE went row by row, and with millions of rows it outlasted
        # a running service's deadline for an answer (db.PG_ANSWER_SECONDS), so a rebuild while
        # serving was rolled back again and again. (The tables are locked until the commit.)
        conn.exec_driver_sql("TRUNCATE " + ", ".join(table.name for table in tables))
    else:
        for table in tables:
            conn.execute(delete(table))
    # The checkpoint rows stay (at 0): another writer waits on them (read_checkpoint for_update).
    conn.execute(update(checkpoints).values(offset=0, line_count=0, first_line_hash=None, skipped=0))
    if conn.dialect.name == "sqlite":
        conn.execute(text("INSERT INTO jobs_fts(jobs_fts) VALUES('delete-all')"))
    # Readers' cached text matches belong to the old contents (index/text_search.py).
    conn.execute(update(index_meta).where(index_meta.c.key == "generation").values(value=uuid.uuid4().hex))
    _set_meta(conn, "projection", PROJECTION)


def _set_meta(conn: Connection, key: str, value: str) -> None:
    if conn.execute(update(index_meta).where(index_meta.c.key == key).values(value=value)).rowcount == 0:
        conn.execute(index_meta.insert().values(key=key, value=value))


FOLDER_KEY = "data_folder"  # index_meta: the id of the data folder a server database indexes


class ForeignIndex(IndexInUse):
    """A server database whose index is another data folder's."""


def index_owner(conn: Connection) -> str | None:
    """The id of the data folder a server database indexes (claim_index), None if unclaimed."""
    return conn.execute(select(index_meta.c.value).where(index_meta.c.key == FOLDER_KEY)).scalar()


def claim_index(conn: Connection, folder_id: str, url: str, data_dir: Path) -> None:
    """Make sure a server database's index is this data folder's (or, unclaimed, make it so).

    Two folders on one database each took the other's index for a replaced journal and rebuilt
    it from their own files: the first service then listed the second folder's jobs, and its
    listing failed reading lines at the other file's offsets. A reindex takes the index over
    (rebuild's `folder_id`)."""
    db.sql(
        conn, "INSERT INTO index_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (FOLDER_KEY, folder_id)
    )
    if index_owner(conn) != folder_id:
        raise ForeignIndex(
            f"the index database {url} indexes another data folder than {data_dir} (a copy of a folder "
            f"is another folder; or this folder's id file {FOLDER_ID_FILE} was deleted or replaced, e.g. by a "
            f"restore): serve that folder "
            f"(--data-dir, LEARNING_SVC_DATA_DIR), give this one a database of its own, or make the "
            f"database this folder's index with `learning-svc reindex --data-dir {data_dir}`"
        )


def projection_reason(conn: Connection) -> str | None:
    """Why the rows were made by another projection than this version's (fields added), if they were."""
    stored = conn.execute(select(index_meta.c.value).where(index_meta.c.key == "projection")).scalar()
    if stored == PROJECTION:
        return None
    if read_checkpoint(conn, LOG).offset == 0 and read_checkpoint(conn, RATINGS).offset == 0:
        _set_meta(conn, "projection", PROJECTION)  # an empty index: nothing to redo
        return None
    return "this version indexes other fields than the one that built the index"


def start_over_if_stale(conn: Connection, reasons, report: SyncReport) -> bool:
    """Wipe the index if any reason (a callable giving a reason or None) applies; say why."""
    reason = next((r for check in reasons if (r := check()) is not None), None)
    if reason is None:
        return False
    log.warning("rebuilding the index: %s", reason)
    wipe(conn)
    report.rebuilt = reason
    return True


def repair_tails(journals, report: SyncReport) -> None:
    """Move torn tails aside (hold the journals' locks), noting each side file."""
    for journal in journals:
        side = journal.repair_tail(is_sound)
        if side:
            log.warning("moved a torn tail of %s to %s", journal.path.name, side.name)
            report.torn.append(side)


class Indexer:
    """Applies journal lines to the index, in file order, with their checkpoint."""

    def __init__(
        self,
        engine: Engine,
        log_journal: Journal,
        ratings_journal: Journal,
        parallel_above: int = PARALLEL_ABOVE_BYTES,
        range_bytes: int = RANGE_BYTES,
    ):
        self.engine = engine
        self.log = log_journal
        self.ratings = ratings_journal
        self.parallel_above, self.range_bytes = parallel_above, range_bytes

    # -- the one path every line takes into the index
    def apply_log(
        self,
        conn: Connection,
        cp: Checkpoint,
        lines: Iterable[tuple[int, bytes | dict, int]],
        known_new: bool = False,
        report: SyncReport | None = None,
    ) -> int:
        """Project (offset, line, length) triples that follow `cp`; returns the duplicates skipped.

        `known_new`: the caller already made sure no job id is in the index (live writes).
        """
        batch, duplicates = [], 0
        for offset, line, length in lines:
            prepared = line if isinstance(line, Prepared) else prepare_log_line(offset, line, length)
            cp.line_count += 1
            cp.offset = offset + length
            if cp.first_line_hash is None:
                cp.first_line_hash = self.log.first_line_hash()
            if prepared.damage:
                raise DamagedJournal(self.log.path, cp.line_count, offset, prepared.damage)
            if prepared.amendment is not None:  # after the jobs before it, which it may amend
                duplicates += len(insert_jobs(conn, batch, known_new))
                batch = []
                if not apply_amendment(conn, prepared.amendment, offset, length - 1, self.read_log_line):
                    cp.skipped += 1
                elif report is not None:
                    report.amendments += 1
            elif prepared.rows is None:
                cp.skipped += 1
            else:
                batch.append(prepared.rows)
        duplicates += len(insert_jobs(conn, batch, known_new))
        write_checkpoint(conn, cp)
        return duplicates

    def read_log_line(self, offset: int, length: int) -> dict:
        return orjson.loads(self.log.read_at(offset, length))

    def apply_ratings(self, conn: Connection, cp: Checkpoint, lines: Iterable[tuple[int, bytes | dict, int]]) -> None:
        """Rating and review events. The two kinds move independent state (a job's rating; its
        review), so all ratings of a batch go in before all its reviews, each in file order."""
        events, reviewed = [], []
        for offset, line, length in lines:
            record = self._decode(self.ratings, cp, offset, line)
            cp.line_count += 1
            cp.offset = offset + length
            if cp.first_line_hash is None:
                cp.first_line_hash = self.ratings.first_line_hash()
            schema = record.get("schema") if record is not None else None
            if schema == REVIEW_SCHEMA and (review := project_review(record, offset)) is not None:
                reviewed.append(review)
                continue
            if schema != RATING_SCHEMA:
                cp.skipped += 1
                continue
            try:
                event = project_rating(record, offset)
            except UnprojectableLine as error:
                raise DamagedJournal(self.ratings.path, cp.line_count, offset, str(error)) from None
            if event is None:
                cp.skipped += 1
            else:
                events.append(event)
        insert_ratings(conn, events)
        insert_reviews(conn, reviewed)
        write_checkpoint(conn, cp)

    @staticmethod
    def _decode(journal: Journal, cp: Checkpoint, offset: int, line: bytes | dict) -> dict | None:
        if isinstance(line, dict):
            return line
        if not line.strip():
            return None
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise DamagedJournal(journal.path, cp.line_count + 1, offset, f"not JSON ({error})") from None
        if not isinstance(record, dict):
            raise DamagedJournal(journal.path, cp.line_count + 1, offset, "not a JSON object")
        return record

    # -- catching up with what is in the files but not in the index
    def pending_lines(self, journal: Journal, start: int, stop: int | None = None):
        for offset, line in journal.scan(start, stop):
            yield offset, line, len(line) + 1

    def prepared_log_lines(self, start: int, stop: int):
        """(offset, Prepared, length) in file order, parsed and projected by worker processes
        while this process writes to the index; a few ranges in flight keep memory flat."""
        workers = min(3, (os.cpu_count() or 2) - 1)
        ranges = list(self.log.split(start, stop, self.range_bytes))
        # the workers' garbage collector as the commands' (osutil.GC_THRESHOLDS): 5-10% of a rebuild
        with multiprocessing.get_context("spawn").Pool(workers, gc.set_threshold, GC_THRESHOLDS) as pool:
            in_flight: deque = deque()
            for begin, end in ranges:
                in_flight.append(pool.apply_async(prepare_range, (str(self.log.path), begin, end)))
                if len(in_flight) > workers + 1:
                    yield from in_flight.popleft().get()
            while in_flight:
                yield from in_flight.popleft().get()

    def catch_up_locked(
        self, conn: Connection, with_ratings: bool = True
    ) -> tuple[Checkpoint, Checkpoint | None, SyncReport]:
        """Before a live batch: index what other processes appended, in this transaction.

        Hold the log's lock, and the ratings' lock too when `with_ratings`. When no other
        process wrote, each file ends exactly at its checkpoint and this costs a stat()
        per file: nothing past a checkpoint means nothing torn either.
        """
        report = SyncReport()
        files = {LOG: self.log, **({RATINGS: self.ratings} if with_ratings else {})}
        cps = {name: read_checkpoint(conn, name, for_update=True) for name in files}
        foreign = {name: journal for name, journal in files.items() if journal.size() != cps[name].offset}
        if foreign:
            repair_tails(foreign.values(), report)
            start_over_if_stale(
                conn, [lambda n=name, j=journal: stale_reason(conn, j, n) for name, journal in foreign.items()], report
            )
            cps = {name: read_checkpoint(conn, name) for name in files}
            if self.log.size() > cps[LOG].offset:
                before = cps[LOG].line_count
                report.duplicates += self.apply_log(
                    conn, cps[LOG], self.pending_lines(self.log, cps[LOG].offset), report=report
                )
                report.jobs += cps[LOG].line_count - before
            if with_ratings and self.ratings.size() > cps[RATINGS].offset:
                before = cps[RATINGS].line_count
                self.apply_ratings(conn, cps[RATINGS], self.pending_lines(self.ratings, cps[RATINGS].offset))
                report.ratings += cps[RATINGS].line_count - before
        return cps[LOG], cps.get(RATINGS), report

    def catch_up_to(
        self, conn: Connection, ends: tuple[int, int], lines_of: Callable, limit: int, thorough: bool = True
    ) -> tuple[Checkpoint, Checkpoint, SyncReport]:
        """The follower's step, in the caller's transaction: index each journal from its checkpoint
        towards `ends` (their sizes taken under their locks, so no append was half done), at most
        `limit` lines of each. `lines_of(name, start, stop)` gives the (offset, line, length) triples.
        `thorough`: see stale_reason (False when only the caller's own process appended)."""
        report = SyncReport()
        files = {LOG: self.log, RATINGS: self.ratings}
        cps = {name: read_checkpoint(conn, name, for_update=True) for name in files}
        reasons = [lambda n=name, j=journal: stale_reason(conn, j, n, thorough) for name, journal in files.items()]
        if start_over_if_stale(conn, reasons, report):
            cps = {name: read_checkpoint(conn, name) for name in files}
        log_cp, ratings_cp = cps[LOG], cps[RATINGS]
        if log_cp.offset < ends[0]:
            before = log_cp.line_count
            lines = islice(lines_of(LOG, log_cp.offset, ends[0]), limit)
            report.duplicates += self.apply_log(conn, log_cp, lines, report=report)
            report.jobs += log_cp.line_count - before
        if ratings_cp.offset < ends[1]:
            before = ratings_cp.line_count
            self.apply_ratings(conn, ratings_cp, islice(lines_of(RATINGS, ratings_cp.offset, ends[1]), limit))
            report.ratings += ratings_cp.line_count - before
        return log_cp, ratings_cp, report

    def catch_up(
        self, progress: Callable[[int], None] | None = None, repair: bool = True, report: SyncReport | None = None
    ) -> SyncReport:
        """Start-up: repair torn tails, rebuild if a file was replaced, then index from the checkpoints.

        Large backlogs are committed batch by batch (each with its checkpoint) without
        holding the journal locks. With repair=False (verify) the files are only read,
        and an unsound last line is left out. `report`: filled as it goes (what was done
        before a failure: torn tails moved aside).
        """
        report = SyncReport() if report is None else report
        if repair:
            with self.log.locked(), self.ratings.locked():
                repair_tails((self.log, self.ratings), report)
                ends = {LOG: self.log.complete_end(), RATINGS: self.ratings.complete_end()}
        else:
            ends = {LOG: self.log.sound_end(is_sound), RATINGS: self.ratings.sound_end(is_sound)}
        with self.engine.begin() as conn:
            start_over_if_stale(
                conn,
                [
                    lambda: stale_reason(conn, self.log, LOG),
                    lambda: stale_reason(conn, self.ratings, RATINGS),
                    lambda: projection_reason(conn),
                ],
                report,
            )
        # Ratings first: jobs indexed afterwards are inserted already rated, which is much
        # cheaper than moving each job's rating (and its facet counts) afterwards.
        for name, journal, apply in ((RATINGS, self.ratings, self.apply_ratings), (LOG, self.log, self.apply_log)):
            with self.engine.begin() as conn:
                start = read_checkpoint(conn, name).offset
            if ends[name] - start > SAID_BACKLOG_BYTES:  # minutes at a million jobs: not in silence
                log.info(
                    "indexing %.0f MB of %s that the index does not hold yet (a rebuild, or writes it was behind)",
                    (ends[name] - start) / 2**20,
                    journal.path.name,
                )
            parallel = name == LOG and ends[name] - start > self.parallel_above and (os.cpu_count() or 1) > 1
            items = (
                self.prepared_log_lines(start, ends[name])
                if parallel
                else self.pending_lines(journal, start, ends[name])
            )
            batch = []
            for item in items:
                batch.append(item)
                if len(batch) >= BATCH_LINES:
                    self._commit(name, apply, batch, report, progress)
                    batch = []
            if batch:
                self._commit(name, apply, batch, report, progress)
        return report

    def _commit(self, name, apply, batch, report: SyncReport, progress) -> None:
        with self.engine.begin() as conn:
            cp = read_checkpoint(conn, name, for_update=True)
            batch = [item for item in batch if item[0] >= cp.offset]  # another process got there first
            duplicates = apply(conn, cp, batch, report=report) if name == LOG else apply(conn, cp, batch)
        if name == LOG:
            report.jobs += len(batch)
            report.duplicates += duplicates or 0
        else:
            report.ratings += len(batch)
        if progress:
            progress(sum(item[2] for item in batch))


@dataclass
class Prepared:
    """A log line decoded and projected (possibly in another process): rows, or why it is damaged.

    Neither: a line to skip (blank, or another schema).
    """

    rows: JobRows | None = None
    damage: str | None = None
    amendment: dict | None = None  # an amendment line, applied in file order (project.apply_amendment)


def prepare_log_line(offset: int, line: bytes | dict, length: int) -> Prepared:
    if isinstance(line, dict):
        record = line
    elif not line.strip():
        return Prepared()
    else:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            return Prepared(damage=f"not JSON ({error})")
        if not isinstance(record, dict):
            return Prepared(damage="not a JSON object")
    if record.get("schema") == AMEND_SCHEMA:
        return Prepared(amendment=record)
    if record.get("schema") != LOG_SCHEMA:
        return Prepared()
    try:
        return Prepared(rows=project_job(record, offset, length - 1))
    except UnprojectableLine as error:
        return Prepared(damage=str(error))


def prepare_range(path: str, start: int, stop: int) -> list[tuple[int, Prepared, int]]:
    """Worker process: the prepared lines of one byte range of the log."""
    return [
        (offset, prepare_log_line(offset, line, len(line) + 1), len(line) + 1)
        for offset, line in Journal(path).scan(start, stop)
    ]


# Secondary indexes that no step of a rebuild reads (the job_id and rating-event indexes are
# read while loading, to skip duplicates and find each job's latest rating).
DEFERRED_INDEXES = [index for table in (jobs, job_tags, facet_values) for index in table.indexes]


def rebuild(
    url: str,
    log_journal: Journal,
    ratings_journal: Journal,
    index_path: Path | None,
    progress: Callable[[int], None] | None = None,
    folder_id: str | None = None,
    **indexer_options,
) -> SyncReport:
    """Reindex from scratch, beside the old index, and swap it in only when complete: for SQLite
    a new file, for a server database (`index_path` None) a scratch schema in the same database,
    which becomes the index of the data folder `folder_id` (claim_index).

    `indexer_options` go to the Indexer (parallel_above, range_bytes)."""
    if index_path is None:
        return _rebuild_in_schema(url, log_journal, ratings_journal, progress, folder_id, **indexer_options)
    hold = hold_index_file(index_path, exclusive=True)  # IndexInUse while a service has it open
    try:
        return _rebuild_file(log_journal, ratings_journal, index_path, progress, indexer_options)
    finally:
        if hold is not None:
            os.close(hold)


def _rebuild_file(log_journal, ratings_journal, index_path: Path, progress, indexer_options) -> SyncReport:
    building = index_path.with_name(index_path.name + f".rebuild-{os.getpid()}")
    remove_abandoned_scratch(index_path)
    # No syncs while building: a crash leaves only this scratch file, never a half-new index.
    engine = db.make_engine(f"sqlite:///{building.resolve().as_posix()}", writer=True, scratch=True)
    try:
        db.upgrade(engine)
        with engine.begin() as conn:  # filled in one sort each at the end: faster than row by row
            for index in DEFERRED_INDEXES:
                index.drop(conn)
        report = Indexer(engine, log_journal, ratings_journal, **indexer_options).catch_up(progress)
        with engine.begin() as conn:
            # Each of CREATE INDEX's sorting threads holds up to the page cache's size: 8 MB instead
            # of 32 is ~100 MB less at 1,000,000 jobs, and no slower (33 s instead of 37).
            conn.exec_driver_sql(f"PRAGMA cache_size=-{INDEX_BUILD_CACHE_KIB}")
            for index in DEFERRED_INDEXES:
                index.create(conn)
        db.run_outside_transaction(engine, "ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)")
    except BaseException:
        engine.dispose()
        for leftover in _sqlite_files(building):
            leftover.unlink(missing_ok=True)
        raise
    engine.dispose()
    fsync_file(building)
    for stale in _sqlite_files(index_path)[1:]:  # the old -wal/-shm must not meet the new file
        stale.unlink(missing_ok=True)
    os.replace(building, index_path)
    for leftover in _sqlite_files(building)[1:]:
        leftover.unlink(missing_ok=True)
    return report


SCRATCH_SCHEMA = "learning_svc_rebuild"
PG_TEXT_INDEX = ("ix_jobs_search_tsv", "CREATE INDEX ix_jobs_search_tsv ON jobs USING gin (search_tsv)")  # 0008
REBUILD_LOCK = 7_406_515  # pg_advisory_lock key: one rebuild of a database at a time


class RebuildRunning(RuntimeError):
    pass


class EmptyTakeover(RuntimeError):
    """A reindex of a folder without history would replace another folder's index with nothing."""


def _holds_a_line(journal: Journal) -> bool:
    """Anything but blank lines and a cut tail (a file of newlines got past a size check)."""
    return any(line.strip() for _, line in journal.scan())


def _refuse_empty_takeover(live: Engine, log_journal: Journal, ratings_journal: Journal, folder_id: str) -> None:
    """A reindex takes a server database over for its data folder (the restore path). From a
    folder with no history (a wrong --data-dir, the default folder of another working
    directory) that wiped another folder's index, and its running service then counted 0."""
    if _holds_a_line(log_journal) or _holds_a_line(ratings_journal):
        return
    with live.connect() as conn:
        owner, held = index_owner(conn), read_checkpoint(conn, LOG).line_count
    if owner not in (None, folder_id) and held:
        raise EmptyTakeover(
            f"the index database holds another data folder's index ({held:,} job line{'s' if held != 1 else ''}), and "
            f"{log_journal.path.parent} has no history to index: reindexing would replace that index with "
            "an empty one. Give the data folder whose JSONL files it should index (--data-dir, LEARNING_SVC_DATA_DIR)"
        )


def _rebuild_in_schema(url, log_journal, ratings_journal, progress, folder_id, **indexer_options) -> SyncReport:
    """PostgreSQL: build every table in SCRATCH_SCHEMA (rows by COPY, secondary indexes made
    after the load), then move them into the live schema in one transaction. Readers and a
    running service see the old index until that commit and the new one after it; a failure
    or a kill before it leaves the old index as it was (the next rebuild drops the scratch)."""
    live = db.make_engine(url, writer=True)
    try:
        db.upgrade(live)
        with live.connect() as guard:  # the advisory lock lasts as long as this session
            if not guard.execute(text(f"SELECT pg_try_advisory_lock({REBUILD_LOCK})")).scalar_one():
                raise RebuildRunning("another reindex of this database is running")
            home = guard.execute(text("SELECT current_schema()")).scalar_one()
            guard.commit()
            if folder_id is not None:
                _refuse_empty_takeover(live, log_journal, ratings_journal, folder_id)
            try:
                report = _build_scratch(url, log_journal, ratings_journal, progress, folder_id, indexer_options)
                _finish_scratch_and_swap(url, live, home, log_journal, ratings_journal, report, indexer_options)
            except BaseException:
                try:
                    with live.begin() as conn:
                        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCRATCH_SCHEMA} CASCADE"))
                except Exception:  # the server is gone: the next rebuild drops it
                    log.warning("could not drop the scratch schema %s", SCRATCH_SCHEMA)
                raise
        return report
    finally:
        live.dispose()


SWAP_TRIES = 20


def _finish_scratch_and_swap(url, live, home, log_journal, ratings_journal, report, indexer_options) -> None:
    """Index into the scratch tables what a running service appended while they were built,
    and swap them in holding the journals' locks, with nothing appended since the last line
    indexed: the new index then holds every line the service acknowledged. (Swapped in
    behind the journal, the service's jobs of those minutes were not listed, and a job of
    theirs posted again with other content was taken: the service believed them indexed.)
    Most of the lines are indexed before the locks are taken; under them only the last few,
    so that the service's writes wait a moment at most."""
    engine = db.make_engine(url, writer=True, schema=SCRATCH_SCHEMA)
    try:
        indexer = Indexer(engine, log_journal, ratings_journal, **indexer_options)
        _add_counts(report, indexer.catch_up())
        with log_journal.locked(), ratings_journal.locked():
            with engine.begin() as conn:
                _add_counts(report, indexer.catch_up_locked(conn, with_ratings=True)[2])
            _swap(live, home)
    finally:
        engine.dispose()


def _add_counts(report: SyncReport, more: SyncReport) -> None:
    report.jobs += more.jobs
    report.ratings += more.ratings
    report.duplicates += more.duplicates
    report.amendments += more.amendments
    report.torn += more.torn


def _swap(live: Engine, home: str) -> None:
    """Move the scratch tables into the live schema in one transaction. All live tables are
    locked first, with a lock timeout: a reader mid-request holds some of them and may ask
    for another, and taking them one by one deadlocked with it. A try that cannot get the
    locks (or is chosen as a deadlock's victim) is rolled back and made again."""
    tables = [table.name for table in reversed(metadata.sorted_tables)]
    for attempt in range(SWAP_TRIES):
        try:
            with live.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '2s'"))
                conn.execute(text(f"LOCK TABLE {', '.join(f'{home}.{t}' for t in tables)} IN ACCESS EXCLUSIVE MODE"))
                for table in tables:
                    conn.execute(text(f'DROP TABLE "{home}".{table}'))
                    conn.execute(text(f'ALTER TABLE {SCRATCH_SCHEMA}.{table} SET SCHEMA "{home}"'))
                conn.execute(text(f"DROP SCHEMA {SCRATCH_SCHEMA} CASCADE"))  # and its alembic_version
            return
        except OperationalError as error:
            if attempt == SWAP_TRIES - 1:
                raise
            log.warning("swapping the rebuilt index in waits for readers: %s", str(error.orig).splitlines()[0])
            time.sleep(0.2)


def _build_scratch(url, log_journal, ratings_journal, progress, folder_id, indexer_options) -> SyncReport:
    engine = db.make_engine(url, writer=True, schema=SCRATCH_SCHEMA)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {SCRATCH_SCHEMA} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {SCRATCH_SCHEMA}"))
        db.upgrade(engine)
        with engine.begin() as conn:  # made in one pass each after the load: faster than row by row
            for index in DEFERRED_INDEXES:
                index.drop(conn)
            conn.execute(text(f"DROP INDEX {PG_TEXT_INDEX[0]}"))
        report = Indexer(engine, log_journal, ratings_journal, **indexer_options).catch_up(progress)
        with engine.begin() as conn:
            for index in DEFERRED_INDEXES:
                index.create(conn)
            conn.execute(text(PG_TEXT_INDEX[1]))
            if folder_id is not None:
                _set_meta(conn, FOLDER_KEY, folder_id)
        # VACUUM, not only ANALYZE: tables filled by COPY have no visibility map until vacuumed,
        # and every index-only scan (each listing walk) then reads the table for each entry
        # (1,000,000 jobs: a listing page took 55 ms right after a reindex, 2.4 ms vacuumed).
        tables = ", ".join(f"{SCRATCH_SCHEMA}.{table.name}" for table in metadata.sorted_tables)
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text(f"VACUUM (ANALYZE) {tables}"))
        return report
    finally:
        engine.dispose()


def remove_abandoned_scratch(index_path: Path) -> None:
    """Scratch files of rebuilds whose process is gone (killed with SIGKILL, power loss)."""
    for scratch in index_path.parent.glob(index_path.name + ".rebuild-*"):
        pid = re.match(r"\d+", scratch.name[len(index_path.name + ".rebuild-") :])
        if pid and (int(pid[0]) == os.getpid() or not pid_alive(int(pid[0]))):
            scratch.unlink(missing_ok=True)


def _sqlite_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
