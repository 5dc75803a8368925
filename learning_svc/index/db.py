"""Engines and schema upgrades. SQLite gets WAL, a busy timeout and IMMEDIATE write transactions."""

from __future__ import annotations

import importlib.util
import logging
import weakref
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    Connection,
    CursorResult,
    Engine,
    Text,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    literal,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlalchemy.sql.expression import ColumnElement

from . import text_search

log = logging.getLogger(__name__)


def migrations_dir() -> Path:
    """The Alembic folder: `learning_svc/migrations` in an installed wheel, `migrations/` in a checkout.

    Both are the same files: the wheel packages the top-level folder (pyproject.toml).
    """
    spec = importlib.util.find_spec("learning_svc.migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent.parent / "migrations"


# A PostgreSQL server that is up but stopped answering (SIGSTOP, a hung storage, a VM paused
# with its TCP still acked) held every request and the committer for as long as it stayed so:
# a running service's connections give up on an answer after this, as a lost connection (503).
PG_ANSWER_SECONDS = 30.0


class _Deadline:
    """Seconds a connection of one engine waits for the server's answer (None: as long as it takes)."""

    seconds: float | None = None


_DEADLINES: weakref.WeakKeyDictionary[Engine, _Deadline] = weakref.WeakKeyDictionary()


def answer_within(engine: Engine, seconds: float | None) -> None:
    """From now on, the engine's PostgreSQL connections wait at most `seconds` for each answer
    (a service once started: its start-up may run long statements, a rebuild's among them)."""
    if engine in _DEADLINES:
        _DEADLINES[engine].seconds = seconds


@lru_cache(maxsize=1)
def _answering_connection_class():
    import psycopg

    class AnsweringConnection(psycopg.Connection):
        """psycopg's connection, giving up on an answer after its engine's deadline: it is then
        closed (its state is unknown), so the pool throws it away."""

        deadline = _Deadline()

        def wait(self, gen, *args, **kwargs):
            seconds = self.deadline.seconds
            if seconds is None or len(args) > 1 or kwargs.get("timeout") is not None:
                return super().wait(gen, *args, **kwargs)
            try:
                return super().wait(gen, *args, **{**kwargs, "timeout": seconds})
            except psycopg.errors._WaitTimeout:  # psycopg's own, for its Ctrl-C cancel
                self.pgconn.finish()
                raise psycopg.OperationalError(f"the database server did not answer within {seconds:g} s") from None

    return AnsweringConnection


PG_CONNECT_ARGS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def make_engine(
    url: str, *, writer: bool, scratch: bool = False, checkpoints_apart: bool = False, schema: str | None = None
) -> Engine:
    """An engine for readers (deferred transactions; on PostgreSQL REPEATABLE READ) or the writer
    (BEGIN IMMEDIATE; on PostgreSQL READ COMMITTED).

    `scratch` is for a file being rebuilt that is thrown away if anything fails:
    no syncs and a bigger page cache. `checkpoints_apart`: the writer's commits never copy
    the WAL back into the database file (SQLite's automatic checkpoint, which made one
    commit in ten take 6 ms and more); the caller runs checkpoint() off the write path.
    `schema` (PostgreSQL): the tables live in that schema, not the URL's default (a rebuild's).
    """
    if not url.startswith("sqlite"):
        # Readers: one snapshot per connection (a request), not per statement as READ COMMITTED
        # gives, so a listing and its count or cursor agree while the writer commits. Their
        # transactions only read, so REPEATABLE READ never fails them with a serialization error.
        isolation = "READ COMMITTED" if writer else "REPEATABLE READ"
        # No JIT: our statements are index walks of milliseconds, and a filtered facet's count,
        # which the planner overestimates, spent 10 ms of its 130 compiling itself (1,000,000 jobs).
        options = "-c jit=off" + (f" -c search_path={schema}" if schema else "")
        given = make_url(url).query  # what the URL sets itself wins (`?connect_timeout=30`)
        # A host that takes the connection and never answers (a firewall, a wrong address) is an
        # error after CONNECT_TIMEOUT, not a silent wait (psycopg's own: none); keepalives find a
        # connection whose host went away (a cable, a VM paused) within ~a minute, not hours.
        extra = {key: value for key, value in PG_CONNECT_ARGS.items() if key not in given}
        engine = create_engine(
            url, pool_pre_ping=True, isolation_level=isolation, connect_args={"options": options, **extra}
        )
        deadline = _DEADLINES[engine] = _Deadline()
        connection_class = _answering_connection_class()

        @event.listens_for(engine, "do_connect")
        def _connect(_dialect, _record, cargs, cparams):
            connection = connection_class.connect(*cargs, **cparams)
            connection.deadline = deadline
            return connection

        return engine
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=2 if writer else 8, max_overflow=8
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see below)
        cur = dbapi_conn.cursor()
        # Page cache per connection (KiB): readers are many and lean on the OS cache. No mmap:
        # at 100k jobs it put 413 MB of the index file into the server's RSS (8 readers' maps)
        # and bought no measurable listing speed (bench: worst p95 15.9 ms with, 16.4 without).
        cache_kib = 65536 if writer else 16384
        # temp_store stays FILE: big sorts spill to disk instead of growing the process.
        pragmas = [
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "busy_timeout=30000",
            f"cache_size=-{cache_kib}",
            "mmap_size=0",
        ]
        if checkpoints_apart:
            pragmas.append("wal_autocheckpoint=0")
        if scratch:  # flat memory while rebuilding, whatever the size of the index; sort indexes on 2 threads
            pragmas += ["synchronous=OFF", "cache_size=-32768", "threads=2"]
        for pragma in pragmas:
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_conn, _record):
        if dbapi_conn is not None:  # None when the connection was invalidated
            text_search.unbind(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _begin(conn):
        # IMMEDIATE takes the write lock up front, so two writers wait for each other
        # (busy_timeout) instead of failing with SQLITE_BUSY on lock upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


# SQLite's result codes for a file that is not a database any more (its header overwritten) or
# whose pages are damaged: the index is derived (SPEC §1), so such a file is made anew.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_SQLITE_IOERR, _SQLITE_FULL = 10, 13  # "disk I/O error", "database or disk is full"
_PG_DISK_FULL = "53100"  # PostgreSQL's disk_full


def out_of_room(error: BaseException | None) -> bool:
    """Whether `error` (a DB-API error, or SQLAlchemy's wrapping one) says the index could not be
    written to its disk: SQLite's SQLITE_FULL, or its "disk I/O error" (what a full file system
    gave a WAL write when a few KB were left: an outside run), PostgreSQL's disk_full."""
    error = getattr(error, "orig", None) or error
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_FULL, _SQLITE_IOERR)
    return getattr(error, "sqlstate", None) == _PG_DISK_FULL


def damaged_index(error: BaseException | None) -> bool:
    """Whether `error` (a DB-API error, or SQLAlchemy's wrapping one) says the SQLite index file
    is damaged: "file is not a database", "database disk image is malformed"."""
    import sqlite3

    error = getattr(error, "orig", None) or error
    code = getattr(error, "sqlite_errorcode", None)
    return (
        isinstance(error, sqlite3.DatabaseError)
        and code is not None
        and code & 0xFF
        in (
            _SQLITE_CORRUPT,
            _SQLITE_NOTADB,
        )
    )


def remove_index_file(path: Path) -> None:
    """The SQLite index file and its WAL and shared-memory files, gone (made anew from the JSONL)."""
    for stray in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stray.unlink(missing_ok=True)


def run_outside_transaction(engine: Engine, *statements: str) -> None:
    """Statements SQLite refuses inside a transaction (checkpoints, ANALYZE on a quiet file)."""
    raw = engine.raw_connection()
    try:
        for statement in statements:
            raw.driver_connection.execute(statement)
    finally:
        raw.close()


def checkpoint(engine: Engine) -> tuple[int, int] | None:
    """Copy what the WAL holds back into the database file as far as no reader needs it, without
    waiting for readers or the writer (PASSIVE). Returns (WAL frames, frames copied); None when
    not SQLite."""
    if engine.dialect.name != "sqlite":
        return None
    raw = engine.raw_connection()
    try:
        _busy, frames, copied = raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        raw.close()
    return frames, copied


def upgrade(engine: Engine) -> None:
    """Apply Alembic migrations up to head (idempotent, quick when current). An index that
    lacks some of its tables (one dropped by hand under a current schema version, which the
    migrations then never make again: a restart and a reindex both failed on it) is made anew:
    the catch-up that follows rebuilds it from the JSONL files."""
    _migrate(engine)
    from .tables import metadata

    with engine.connect() as conn:
        present = set(inspect(conn).get_table_names())
    missing = [table.name for table in metadata.sorted_tables if table.name not in present]
    if not missing:
        return
    log.warning("the index database lacks %s: making the index anew from the JSONL files", ", ".join(missing))
    cascade = " CASCADE" if engine.dialect.name == "postgresql" else ""
    with engine.begin() as conn:
        for name in [*reversed([t.name for t in metadata.sorted_tables]), "jobs_fts", "alembic_version"]:
            if name in present:
                conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}"{cascade}')
    _migrate(engine)


def _migrate(engine: Engine) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def sql(conn: Connection, statement: str, params: tuple | list | None = None) -> CursorResult:
    """Driver-level SQL written with `?` marks (swapped for psycopg's `%s`): a list of tuples is
    an executemany. For the write path's hot statements, where SQLAlchemy's per-statement work
    (building, cache keys, parameter processing) costs more than the database's own."""
    statement = _in_paramstyle(statement, conn.dialect.paramstyle)
    return conn.exec_driver_sql(statement, params) if params is not None else conn.exec_driver_sql(statement)


def rows_in(conn: Connection, statement: str, values, size: int = 500):
    """The rows of `statement` (driver SQL whose `IN ({})` takes the values), asked for `size`
    values at a time."""
    values = list(values)
    for i in range(0, len(values), size):
        chunk = tuple(values[i : i + size])
        yield from sql(conn, statement.format(", ".join("?" * len(chunk))), chunk)


@lru_cache(maxsize=512)
def _in_paramstyle(statement: str, paramstyle: str) -> str:
    return statement if paramstyle == "qmark" else statement.replace("?", "%s")


def among(conn: Connection, column, ids) -> ColumnElement:
    """`column IN (ids)` for a list of up to thousands of integer ids: on PostgreSQL one bigint[]
    parameter (`= ANY(...)`), where 2,000 bound values cost ~20 ms to render, send and parse. A
    parameter the planner sees as a value: sent as text and cast in the statement, it was an
    expression it could neither hash nor count (100 ids guessed), and a sequential scan compared
    every row with each id (a filtered facet: 3-12 s; 2,000,000 rows, 2,000 ids: 98 s vs 0.1 s).
    On SQLite bound values up to 30,000 (its default build takes at most
    32,766; LEARNING_SVC_FACET_SAMPLE may ask for more), one JSON array beyond. Plain
    expressions: the statement stays cached, and SQLite's plan walks the primary key."""
    ids = [int(i) for i in ids]
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, ids, type_=ARRAY(BigInteger)))
    if len(ids) <= 30_000:
        return column.in_(ids)
    array = literal("[" + ",".join(map(str, ids)) + "]", Text)
    return column.in_(select(literal_column("value")).select_from(func.json_each(array)))
