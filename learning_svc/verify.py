"""`learning-svc verify`: rebuild the index from the JSONL into a scratch file and compare every row."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from sqlalchemy import Select, String, select

from .config import Settings
from .index import db
from .index.project import PROJECTION
from .index.sync import LOG, RATINGS, Indexer, claim_index
from .index.tables import (
    checkpoints,
    facet_values,
    index_meta,
    job_amendments,
    job_outputs,
    job_tags,
    jobs,
    rating_events,
    review_events,
)
from .journal import DamagedJournal, Journal
from .osutil import data_folder_id
from .records import is_sound

TABLES = (jobs, job_tags, job_outputs, job_amendments, facet_values, rating_events, review_events, checkpoints)
MAX_EXAMPLES = 5


def comparable(table) -> tuple[Select, int]:
    """(the statement, how many leading columns are the key) that gives a table's rows as the
    journal determines them: tag numbers depend on the order values were first indexed, so
    facet_values is keyed by (field, value) and job_tags rows carry those instead of the number."""
    if table is facet_values:
        columns = [c for c in table.columns if c.name != "tag"]
        return select(*columns).where(facet_values.c.count > 0), 2
    if table is job_tags:
        t = job_tags
        values = (facet_values.c.field, facet_values.c.value)
        rest = (t.c.completed_at, t.c.duration_key, t.c.rating_hi)
        return select(t.c.job, *values, *rest).join(facet_values, facet_values.c.tag == t.c.tag), 3
    return select(table), len(table.primary_key.columns)


def _rows(conn, table):
    """A table's rows in key order, strings by code point on every backend (the merge below
    compares keys as Python does; a PostgreSQL database's own collation may not)."""
    postgresql = conn.dialect.name == "postgresql"
    stmt, key_len = comparable(table)
    keys = [
        col.collate("C") if postgresql and isinstance(col.type, String) else col
        for col in list(stmt.selected_columns)[:key_len]
    ]
    return conn.execute(stmt.order_by(*keys))


def compare_table(table, actual_conn, expected_conn) -> list[str]:
    """Differences between the index's rows and the rows rebuilt from the journal."""
    key_len = comparable(table)[1]
    missing, extra, changed = [], [], []
    actual, expected = iter(_rows(actual_conn, table)), iter(_rows(expected_conn, table))
    a, e = next(actual, None), next(expected, None)
    while a is not None or e is not None:
        a_key = tuple(a[:key_len]) if a is not None else None
        e_key = tuple(e[:key_len]) if e is not None else None
        if e_key is not None and (a_key is None or e_key < a_key):
            missing.append(e_key)
            e = next(expected, None)
        elif a_key is not None and (e_key is None or a_key < e_key):
            extra.append(a_key)
            a = next(actual, None)
        else:
            if tuple(a) != tuple(e):
                diffs = [f"{col}: index={x!r} journal={y!r}" for col, x, y in zip(a._fields, a, e) if x != y]
                changed.append(f"{a_key}: {', '.join(diffs)[:300]}")
            a, e = next(actual, None), next(expected, None)
    problems = []
    for label, items in (
        ("missing from the index", missing),
        ("in the index but not in the journal", extra),
        ("different in the index", changed),
    ):
        if items:
            examples = "; ".join(str(i) for i in itertools.islice(items, MAX_EXAMPLES))
            problems.append(f"{table.name}: {len(items)} rows {label}, e.g. {examples}")
    return problems


def _tail_problems(journal: Journal) -> list[str]:
    end, size = journal.complete_end(), journal.size()
    problems = []
    if size > end:
        problems.append(
            f"{journal.path}: {size - end} bytes after the last complete line (a torn tail; "
            "the service moves it aside at its next start)"
        )
    return problems


def verify_index(settings: Settings) -> list[str]:
    log_journal, ratings_journal = Journal(settings.log_path), Journal(settings.ratings_path)
    sizes = (log_journal.size(), ratings_journal.size())
    problems = _differences(settings, log_journal, ratings_journal)
    grown = [j.path.name for j, size in zip((log_journal, ratings_journal), sizes) if j.size() != size]
    if problems and grown:  # the rebuild stops where the files ended; the live index went on
        problems.append(
            f"{' and '.join(grown)} grew while verifying (a running service is writing): the differences above "
            "may be only those writes; run `learning-svc verify` again while no writes come in"
        )
    return problems


DAMAGED = (
    "the index file is damaged ({}): `learning-svc reindex` makes it anew from the JSONL files "
    "(a running service makes it anew by itself once it meets the damage)"
)


def _damage(engine) -> str | None:
    """SQLite: what SQLite's quick_check says of a damaged index file (pages broken, its header
    overwritten), as one problem; None when it is whole or on a server. verify stopped with a
    traceback ("database disk image is malformed") on such a file."""
    from sqlalchemy.exc import DBAPIError

    if engine.dialect.name != "sqlite":
        return None
    try:
        with engine.connect() as conn:
            found = [row[0] for row in conn.exec_driver_sql("PRAGMA quick_check(5)")]
    except DBAPIError as error:
        if not db.damaged_index(error):
            raise
        return DAMAGED.format(" ".join(str(error.orig).split()))
    return None if found == ["ok"] else DAMAGED.format("SQLite's quick_check: " + "; ".join(found)[:300])


def _differences(settings: Settings, log_journal: Journal, ratings_journal: Journal) -> list[str]:
    problems = _tail_problems(log_journal) + _tail_problems(ratings_journal)
    with tempfile.TemporaryDirectory(prefix="learning-svc-verify-") as scratch:
        expected_engine = db.make_engine(f"sqlite:///{(Path(scratch) / 'expected.sqlite3').as_posix()}", writer=True)
        actual_engine = db.make_engine(settings.db_url, writer=True)
        if actual_engine.dialect.name != "sqlite":  # its text search is jobs.search_text: rebuild that too
            expected_engine = expected_engine.execution_options(search_text=True)
        try:
            if damaged := _damage(actual_engine):
                return problems + [damaged]
            db.upgrade(actual_engine)  # compare like with like: the index as this version reads it
            db.upgrade(expected_engine)
            if actual_engine.dialect.name != "sqlite":
                with actual_engine.begin() as conn:  # another folder's index differs in every row
                    claim_index(conn, data_folder_id(settings.data_dir), settings.shown_db_url, settings.data_dir)
            indexer = Indexer(expected_engine, log_journal, ratings_journal)
            try:
                indexer.catch_up(repair=False)
            except DamagedJournal as error:
                return problems + [str(error)]
            last = _last_line_problem(log_journal) + _last_line_problem(ratings_journal)
            with actual_engine.connect() as actual, expected_engine.connect() as expected:
                problems += _projection_problem(actual) + _behind_problem(actual, log_journal, ratings_journal)
                for table in TABLES:
                    problems += compare_table(table, actual, expected)
                if actual.dialect.name == "sqlite":  # PostgreSQL's text search is jobs.search_text, compared above
                    problems += _text_search_problems(actual, expected)
            return problems + last
        finally:
            expected_engine.dispose()
            actual_engine.dispose()


def _behind_problem(conn, log_journal: Journal, ratings_journal: Journal) -> list[str]:
    """An index that has not read the journals to their end (another process wrote them while
    this folder was served from another index, or the service was stopped before it caught up):
    said first, as the rows it lacks are listed as missing below."""
    held = {row.name: row.offset for row in conn.execute(select(checkpoints.c.name, checkpoints.c.offset))}
    behind = [
        f"{journal.path.name} to byte {held.get(name, 0):,} of {end:,}"
        for name, journal in ((LOG, log_journal), (RATINGS, ratings_journal))
        if held.get(name, 0) < (end := journal.complete_end())
    ]
    if not behind:
        return []
    return [
        f"the index is behind the JSONL files (it holds {' and '.join(behind)}): `serve` or `import` "
        "catch it up at their next start, `learning-svc reindex` rebuilds it now; what it lacks is listed below"
    ]


def _projection_problem(conn) -> list[str]:
    """An index made by a version that projected lines otherwise (index/project.py PROJECTION)."""
    made = conn.execute(select(index_meta.c.value).where(index_meta.c.key == "projection")).scalar()
    if made is None or made == PROJECTION:
        return []
    return [
        f"the index was made by another version (projection {made}, this one {PROJECTION}): "
        "`serve` or `import` rebuilds it at their next start, `learning-svc reindex` now"
    ]


def _text_search_problems(actual, expected) -> list[str]:
    """SQLite's FTS5 table holds no rows to compare (contentless): its terms and how many jobs
    have each are compared instead (fts5vocab, made in the connection's temp schema)."""

    def terms(conn):
        conn.exec_driver_sql(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.verify_terms USING fts5vocab(main, jobs_fts, 'row')"
        )
        return {term: doc for term, doc in conn.exec_driver_sql("SELECT term, doc FROM temp.verify_terms")}

    a_terms, e_terms = terms(actual), terms(expected)
    wrong = sorted(t for t in a_terms.keys() | e_terms.keys() if a_terms.get(t) != e_terms.get(t))
    if not wrong:
        return []
    examples = "; ".join(
        f"{t!r}: index={a_terms.get(t, 0)} journal={e_terms.get(t, 0)} jobs" for t in wrong[:MAX_EXAMPLES]
    )
    return [f"jobs_fts (text search): {len(wrong)} words found in other jobs than the journal says, e.g. {examples}"]


def _last_line_problem(journal: Journal) -> list[str]:
    sound = journal.sound_end(is_sound)
    if sound == journal.complete_end():
        return []
    return [f"{journal.path}: the last line (byte {sound}) is damaged; the service moves it aside at its next start"]
