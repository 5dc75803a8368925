"""Listings and keyset cursors from a plan (index/plan.py), and the single-job reads.

Building a statement reads nothing from the database: every count a decision needs was
taken by make_plan. `prepare(conn, plan)` binds what a plan's SQL calls (a held text
search's match set) on the connection that runs it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import replace

import orjson
from sqlalchemy import (
    Boolean,
    CompoundSelect,
    Connection,
    Select,
    SmallInteger,
    cast,
    column,
    exists,
    false,
    func,
    literal,
    select,
    table,
    text,
    union_all,
)

from ..journal import Journal
from ..records import RATING_SCHEMA, effective_line, job_summary, line_summary
from ..reviews import REVIEW_SCHEMA
from . import db, text_search
from .plan import SORTS, Filters, Plan
from .project import latest_ratings, replayed_reviews
from .tables import checkpoints, facet_values, job_amendments, job_tags, jobs, rating_events, review_events
from .words import tsquery
from .words import words as search_words

JOBS_FTS = table("jobs_fts", column("rowid"))  # the FTS5 table of migration 0001 (rowid = jobs.id)


class BadCursor(ValueError):
    pass


def encode_cursor(sort: str, key, row_id: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([sort, key, row_id])).decode().rstrip("=")


def _sql_number(value, integral: bool = False) -> bool:
    """A JSON number the database can bind: SQLite integers are 64-bit (a bigger one is an OverflowError)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, float) and not integral


def decode_cursor(token: str, sort: str) -> tuple:
    """(sort key, id) of a cursor issued for `sort`; BadCursor says why not."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        name, key, row_id = orjson.loads(raw)
        valid = _sql_number(key) and _sql_number(row_id, integral=True)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        valid, name = False, None
    if not valid:
        raise BadCursor("is not a cursor this service issued")
    if name != sort:
        raise BadCursor(f"belongs to sort {name!r}, not {sort!r}: start again without a cursor")
    if sort.lstrip("-") == "rating":  # a small integer column (PostgreSQL would not cast 2**40 to it)
        if not isinstance(key, int):
            raise BadCursor("is not a cursor this service issued")
        key = min(max(key, -2), 7)  # past every rating key (-1 and 6 are "unrated"): the same page
    return key, row_id


# ---------------------------------------------------------------- SQL


def _rating_conditions(f: Filters, sort: str, source) -> list:
    """Rating filters on `source` (jobs, or the driving job_tags, which copies the ratings),
    written so that the listing stays one ordered walk of its sort index.

    Sorted by rating, they are a range of that sort's own column (rating_hi / rating_lo).
    Sorted by time or duration, `+ 0` hides the rating indexes from the planner: it walks
    the sort index, which carries rating_hi, and checks it there, instead of fetching every
    (un)rated job and sorting them all.
    """
    if sort == "rating":
        col, unrated = source.c.rating_lo, 6
    elif sort == "-rating":
        col, unrated = source.c.rating_hi, -1
    else:
        col, unrated = source.c.rating_hi + 0, -1
    conds = []
    if f.rated is False:
        conds.append(col == unrated)
    if f.rated or f.rating_min is not None or f.rating_max is not None:
        low = 0 if f.rating_min is None else f.rating_min
        high = 5 if f.rating_max is None else f.rating_max
        conds.append(col.between(low, high))
    return conds


def _tie_rating_conditions(f: Filters, sort: str, key, source) -> list:
    """The rating filters on the tie group of a cursor's key, `key_col == key`.

    In a rating order the key is the rating column itself, so the filters hold for the whole
    group or for none of it: decided here, nothing is left to check per row. (Written as SQL,
    PostgreSQL guessed that almost no row of the group passes `rating_hi + 0 BETWEEN 0 AND 5`
    and fetched and sorted the whole group instead of seeking to the page.) In another order
    they are checked in the sort index's rows, as on the first page (`+ 0`): on the rating
    columns they would take the index from the (key, id) seek.
    """
    if sort.lstrip("-") != "rating":
        return _rating_conditions(f, "completed_at", source)
    unrated = 6 if sort == "rating" else -1
    holds = not (f.rated is False and key != unrated)
    if f.rated or f.rating_min is not None or f.rating_max is not None:
        low = 0 if f.rating_min is None else f.rating_min
        high = 5 if f.rating_max is None else f.rating_max
        holds = holds and low <= key <= high
    return [] if holds else [false()]


def _text_condition(plan: Plan, job_id):
    """Every word of q in the job's text: FTS5 on SQLite (the plan's text), a tsvector on
    PostgreSQL, substrings of the folded words elsewhere."""
    q, found = plan.page.filters.q, plan.text
    if plan.dialect == "postgresql":  # the FTS5 words in a tsvector with a GIN index (migration 0008)
        query = tsquery(q)
        if query is None:
            return None
        match = text("search_tsv @@ to_tsquery('simple', :tsq)").bindparams(tsq=query)
        return job_id.in_(select(jobs.c.id).where(match))
    if found is None:
        # Every word must match, as with FTS5 (AND, not OR).
        words = [jobs.c.search_text.contains(w, autoescape=True) for w in search_words(q)]
        return job_id.in_(select(jobs.c.id).where(*words))
    if found.kind == "set":  # walk the sort index, checking each job against the set in memory
        return func.text_match(job_id, type_=Boolean)
    match = text("jobs_fts MATCH :fts").bindparams(fts=text_search.fts_query(q))
    if found.kind == "probe":  # in most prompts: few FTS5 checks per page
        return exists().select_from(JOBS_FTS).where(match, JOBS_FTS.c.rowid == job_id)
    return job_id.in_(select(JOBS_FTS.c.rowid).where(match))  # few matches: fetch and sort them


def conditions(plan: Plan, job_id, completed_at) -> list:
    """SQL conditions for the filters but rating (see _rating_conditions) and the driving tag,
    on the job id and completed_at columns of the listing's source (jobs, or the driving job_tags).

    A common value is a per-job probe (EXISTS on a primary key), so that the listing walks
    its sort index; a rare one is a set of job ids fetched through an index, then sorted.
    """
    f, conds = plan.page.filters, []
    for field_name in f.tags:
        if field_name == plan.drive:
            continue
        numbers = plan.tags[field_name]
        if field_name in plan.probed:
            probe = job_tags.alias(f"has_{field_name}")  # apart from a driving job_tags in the outer query
            conds.append(exists().where(probe.c.job == job_id, probe.c.tag.in_(numbers)).correlate(job_id.table))
        else:
            conds.append(job_id.in_(select(job_tags.c.job).where(job_tags.c.tag.in_(numbers))))
    if plan.wide_window:
        # `+ 0` hides the time index from the planner: for a wide window, walking the
        # sort's own index and checking the time is far cheaper than sorting the window.
        completed_at = completed_at + 0
    if f.since is not None:
        conds.append(completed_at >= f.since)
    if f.until is not None:
        conds.append(completed_at <= f.until)
    if f.q and (condition := _text_condition(plan, job_id)) is not None:
        conds.append(condition)
    return conds


def page_keys(plan: Plan) -> Select | CompoundSelect:
    """(sort_key, id) of the page's limit + 1 jobs in order, so that the caller sees if more follow.

    The page is chosen on these keys alone and its rows fetched afterwards (a deferred
    join): when a plan must sort the matching jobs, it sorts small keys, not summaries.
    """
    page = plan.page
    column, descending = SORTS[page.sort]
    if plan.held_alone:  # a bisection of the held matches
        held = plan.text.page(column.name, descending, page.after, page.limit + 1)
        order = (column.desc(), jobs.c.id.desc()) if descending else (column.asc(), jobs.c.id.asc())
        return select(column.label("sort_key"), jobs.c.id).where(jobs.c.id.in_(held)).order_by(*order)
    if plan.drive:  # a range of job_tags' index for the sort: it carries a copy of every sort key
        source = job_tags.alias("drive")
        key_col, id_col = (None if page.sort == "rating" else source.c[column.name]), source.c.job
        numbers = plan.tags[plan.drive]  # one value (or none, when no job has it)
        conds = [source.c.tag == numbers[0]] if numbers else [false()]
    else:
        source = jobs
        key_col, id_col = column, jobs.c.id
        conds = []
    conds += conditions(plan, id_col, source.c.completed_at)
    if plan.drive and page.sort == "rating":
        return _tag_by_rating_ascending(plan, source, conds)
    rating = _rating_conditions(page.filters, page.sort, source)
    keys = select(key_col.label("sort_key"), id_col.label("id")).select_from(source).where(*conds)
    order = (key_col.desc(), id_col.desc()) if descending else (key_col.asc(), id_col.asc())
    if page.after is None:
        return keys.where(*rating).order_by(*order).limit(page.limit + 1)
    # After a cursor: the rest of its key's tie group, then the keys beyond it, merged in
    # order. Both are index seeks; `(key, id) < (k, i)` would seek on the key alone and
    # then step over the whole tie group (half a million unrated jobs in "-rating" order).
    key, row_id = page.after
    beyond = (key_col < key, id_col < row_id) if descending else (key_col > key, id_col > row_id)
    ties = keys.where(*_tie_rating_conditions(page.filters, page.sort, key, source), key_col == key, beyond[1])
    parts = [ties, keys.where(*rating, beyond[0])]
    if plan.dialect == "postgresql":  # each part an ordered walk that stops early: PostgreSQL
        parts = [part.order_by(*order).limit(page.limit + 1) for part in parts]  # (< 17) sorts a UNION's whole output
    merged = union_all(*parts)
    key_col, id_col = merged.selected_columns.sort_key, merged.selected_columns.id
    order = (key_col.desc(), id_col.desc()) if descending else (key_col.asc(), id_col.asc())
    return merged.order_by(*order).limit(page.limit + 1)


def _tag_by_rating_ascending(plan: Plan, source, conds: list) -> Select | CompoundSelect:
    """The "rating" order of one tag value's jobs from the tag's rating_hi index (job_tags has
    no rating_lo, which would cost another index of every tag row): the rated jobs by (rating,
    job), then the unrated ones (rating_hi -1) by job, with the sort key 6 that jobs.rating_lo
    gives them. Each part is an ordered index seek that stops at the page's size.

    On SQLite the parts are concatenated in order (the rated keys 0-5 all come before 6, and a
    UNION ALL without ORDER BY runs its parts one after the other): a merge would sort the
    unrated part, as SQLite 3.40 does not see that a constant key is in order. fetch_page
    orders the rows it gets in any case."""
    page, f = plan.page, plan.page.filters
    size = page.limit + 1
    hi, job = source.c.rating_hi, source.c.job
    low = 0 if f.rating_min is None else f.rating_min
    high = 5 if f.rating_max is None else f.rating_max
    rated = select(hi.label("sort_key"), job.label("id")).select_from(source).where(*conds)
    six = cast(literal(6), SmallInteger)  # rating_hi's type: PostgreSQL would cast the other parts' keys
    unrated = select(six.label("sort_key"), job.label("id")).select_from(source)
    unrated = unrated.where(*conds, hi == -1)
    key, row_id = page.after if page.after is not None else (-1, -1)
    parts = []  # (part, its index order), in the listing's order
    if f.rated is not False:
        if page.after is not None and low <= key <= high:  # the rest of the cursor's tie group
            parts.append((rated.where(hi == key, job > row_id), (job.asc(),)))
        parts.append((rated.where(hi.between(max(low, key + 1), high)), (hi.asc(), job.asc())))
    if not (f.rated or f.rating_min is not None or f.rating_max is not None) and key <= 6:
        parts.append((unrated.where(job > row_id) if key == 6 else unrated, (job.asc(),)))
    if not parts:
        return unrated.where(false())
    if len(parts) == 1:
        part, order = parts[0]
        return part.order_by(*order).limit(size)
    limited = [part.order_by(*order).limit(size) for part, order in parts]
    if plan.dialect == "postgresql":  # as in page_keys: each part stops early, the few rows merged
        merged = union_all(*limited)
        return merged.order_by(merged.selected_columns.sort_key, merged.selected_columns.id).limit(size)
    subqueries = [part.subquery(f"part{i}") for i, part in enumerate(limited)]
    return union_all(*(select(sub.c.sort_key, sub.c.id) for sub in subqueries)).limit(size)


def listing_statement(plan: Plan) -> Select:
    """The rows of the page chosen by page_keys (no ORDER BY: fetch_page orders them)."""
    chosen = page_keys(plan).subquery("page")
    return select(
        chosen.c.sort_key,
        jobs.c.id,
        jobs.c.job_id,
        jobs.c.rating,
        jobs.c.rated_at,
        jobs.c.review,
        jobs.c.line_length,
        jobs.c.amendments,
    ).select_from(chosen.join(jobs, jobs.c.id == chosen.c.id))


def prepare(conn: Connection, plan: Plan) -> None:
    """Bind what the plan's SQL calls on this connection: text_match() of a held search."""
    if plan.text is not None and plan.text.kind == "set" and plan.dialect == "sqlite":
        text_search.bind(conn, plan.text.held.ids)


def fetch_page(conn: Connection, plan: Plan) -> list:
    """The rows of listing_statement in sort order."""
    prepare(conn, plan)
    rows = conn.execute(listing_statement(plan)).all()
    return sorted(rows, key=lambda row: (row.sort_key, row.id), reverse=SORTS[plan.page.sort][1])


def list_jobs(conn: Connection, plan: Plan, log: Journal) -> tuple[list[dict], str | None]:
    rows = fetch_page(conn, plan)
    limit = plan.page.limit
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(plan.page.sort, rows[-1].sort_key, rows[-1].id) if more else None
    return summaries(conn, rows, log), next_cursor


def summaries(conn: Connection, rows, log: Journal) -> list[dict]:
    """The jobs as the listing shows them. The index keeps what finds and sorts jobs, not what
    shows them: a summary is made from the job's line in the journal (`row.id` is its offset)
    with its amendment lines applied, and the rating and review the index holds."""
    if not rows:
        return []
    with log.reading() as read:
        return [summary_from(conn, row, read) for row in rows]


def summary_of(conn: Connection, row, log: Journal) -> dict:
    return summaries(conn, [row], log)[0]


def summary_from(conn: Connection, row, read) -> dict:
    line = orjson.loads(read(row.id, row.line_length))
    if row.amendments:
        line = effective_line(line, [orjson.loads(read(*at)) for at in amendment_positions(conn, row.job_id)])
    return job_summary(line_summary(line), row.rating, row.rated_at, row.review and orjson.loads(row.review))


def iter_jobs(conn: Connection, plan: Plan) -> Iterator:
    """Every matching job in order, fetched page by page with the listing's own statement (constant memory)."""
    batch = plan.page.limit
    while True:
        rows = fetch_page(conn, plan)
        yield from rows[:batch]
        if len(rows) <= batch:
            return
        plan = plan.after((rows[batch - 1].sort_key, rows[batch - 1].id))


# ---------------------------------------------------------------- what changed: the change feed


def encode_position(log_offset: int, ratings_offset: int) -> str:
    return f"c1.{log_offset}.{ratings_offset}"


def decode_position(token: str) -> tuple[int, int]:
    try:
        version, log_offset, ratings_offset = token.split(".")
        if version != "c1":
            raise ValueError
        return int(log_offset), int(ratings_offset)
    except ValueError:
        raise BadCursor("is not a position this service gave (use the `next` of an earlier answer)") from None


def changes(conn: Connection, plan: Plan, after: tuple[int, int] | None, log: Journal, limit: int = 500) -> dict:
    """What the index took in after a position, in the order it arrived (the journal's order): new
    jobs matching the plan's filters, jobs amended since (each saying whether it now `matches`
    them), and ratings given since. Without a position: only the current one, to follow from."""
    log_now, ratings_now = _positions(conn)
    if after is None:
        return {"jobs": [], "amended": [], "rated": [], "next": encode_position(log_now, ratings_now), "more": False}
    after_log, after_ratings = after
    every_filter = replace(plan, drive=None, probed=frozenset(plan.page.filters.tags))  # no driving tag here
    prepare(conn, every_filter)
    conds = conditions(every_filter, jobs.c.id, jobs.c.completed_at)
    conds += _rating_conditions(plan.page.filters, "completed_at", jobs)
    rows = conn.execute(
        select(
            jobs.c.id,
            jobs.c.job_id,
            jobs.c.line_length,
            jobs.c.amendments,
            jobs.c.rating,
            jobs.c.rated_at,
            jobs.c.review,
        )
        .where(jobs.c.id >= after_log, jobs.c.id < log_now, *conds)
        .order_by(jobs.c.id)
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    log_next = rows[-1].id + 1 if more else log_now
    amended_ids = (
        conn.execute(
            select(job_amendments.c.job_id)
            .distinct()
            .where(job_amendments.c.id >= after_log, job_amendments.c.id < log_next)
        )
        .scalars()
        .all()
    )
    amended = summaries(conn, list(job_rows(conn, amended_ids).values()), log)
    if amended:  # whether each now matches the filters: an amendment can bring a job into them
        matching = set(
            conn.execute(select(jobs.c.job_id).where(jobs.c.job_id.in_(amended_ids), *conds)).scalars().all()
        )
        for summary in amended:
            summary["matches"] = summary["job_id"] in matching
    # ratings and reviews share the ratings file: one position for both
    events = sorted(
        conn.execute(
            union_all(
                *(
                    select(t.c.id, t.c.job_id).where(t.c.id >= after_ratings, t.c.id < ratings_now)
                    for t in (rating_events, review_events)
                )
            )
            .order_by(column("id"))
            .limit(limit + 1)
        ).all()
    )
    rated_more = len(events) > limit
    events = events[:limit]
    ratings_next = events[-1].id + 1 if rated_more else ratings_now
    current = job_rows(conn, sorted({event.job_id for event in events}))
    rated = summaries(conn, list(current.values()), log)
    return {
        "jobs": summaries(conn, rows, log),
        "amended": amended,
        "rated": rated,
        "next": encode_position(log_next, ratings_next),
        "more": more or rated_more,
    }


def _positions(conn: Connection) -> tuple[int, int]:
    found = dict(conn.execute(select(checkpoints.c.name, checkpoints.c.offset)).all())
    return int(found.get("log", 0)), int(found.get("ratings", 0))


def count(conn: Connection, plan: Plan, limit: int) -> tuple[int, bool]:
    """How many jobs match the plan's filters, counted up to `limit` (then False: "at least")."""
    if plan.page.filters.empty:
        return counts(conn)["jobs"], True
    if (found := plan.held_count()) is not None:
        return min(found, limit), found <= limit
    prepare(conn, plan)
    keys = page_keys(replace(plan, page=replace(plan.page, limit=limit, after=None))).subquery()
    found = conn.execute(select(func.count()).select_from(keys)).scalar_one()
    return min(found, limit), found <= limit


# ---------------------------------------------------------------- single jobs, counts


def job_row(conn: Connection, job_id: str):
    return conn.execute(select(jobs).where(jobs.c.job_id == job_id)).first()


def amendment_positions(conn: Connection, job_id: str) -> list[tuple[int, int]]:
    """(offset, length) of a job's amendment lines, in file order."""
    rows = conn.execute(
        select(job_amendments.c.id, job_amendments.c.line_length)
        .where(job_amendments.c.job_id == job_id)
        .order_by(job_amendments.c.id)
    )
    return [(offset, length) for offset, length in rows]


def known_rating_ids(conn: Connection, job_ids: Sequence[str], rating_ids: Sequence[str]) -> set[str]:
    """Which of these rating ids the jobs' rating events already have (a second import is one)."""
    wanted = set(rating_ids)
    rows = db.rows_in(conn, "SELECT rating_id FROM rating_events WHERE job_id IN ({})", job_ids)
    return {rating_id for (rating_id,) in rows if rating_id in wanted}


def latest_rating_times(conn: Connection, job_ids: Sequence[str]) -> dict[str, float]:
    found = {}
    for i in range(0, len(job_ids), 500):
        rows = conn.execute(
            select(rating_events.c.job_id, func.max(rating_events.c.timestamp))
            .where(rating_events.c.job_id.in_(job_ids[i : i + 500]))
            .group_by(rating_events.c.job_id)
        )
        found.update({job_id: latest for job_id, latest in rows})
    return found


def rating_before_job(conn: Connection, job_ids: Sequence[str]) -> dict[str, tuple]:
    """(rating, rated_at) of jobs whose lines are not indexed yet, from their indexed rating
    events ((None, None) without any)."""
    found = {job_id: (None, None) for job_id in job_ids}
    for job_id, (rating, timestamp) in latest_ratings(conn, list(job_ids)).items():
        found[job_id] = (rating, timestamp if rating is not None else None)
    return found


def review_before_job(conn: Connection, job_ids: Sequence[str]) -> dict[str, dict | None]:
    """The review state of jobs whose lines are not indexed yet, from their indexed review events."""
    found: dict[str, dict | None] = {job_id: None for job_id in job_ids}
    found.update(replayed_reviews(conn, list(job_ids)))
    return found


def jobs_naming_outputs(conn: Connection, hashes) -> list:
    """The jobs whose outputs include one of these output_hash values (the key with each row)."""
    statement = (
        "SELECT o.key, j.id, j.job_id, j.line_length, j.amendments FROM job_outputs o "
        "JOIN jobs j ON j.id = o.job WHERE o.key IN ({})"
    )
    return list(db.rows_in(conn, statement, hashes))


def job_rows(conn: Connection, job_ids: Sequence[str]) -> dict[str, object]:
    statement = "SELECT id, job_id, input_hash, line_length, amendments, rating, rated_at, review FROM jobs WHERE job_id IN ({})"
    return {row.job_id: row for row in db.rows_in(conn, statement, job_ids)}


def rating_history(conn: Connection, job_id: str) -> list[dict]:
    rows = conn.execute(select(rating_events).where(rating_events.c.job_id == job_id).order_by(rating_events.c.id))
    return [
        {
            "schema": RATING_SCHEMA,
            "rating_id": r.rating_id,
            "job_id": r.job_id,
            "rating": r.rating,
            "timestamp": r.timestamp,
            "source": r.source,
        }
        for r in rows
    ]


def review_history(conn: Connection, job_id: str) -> list[dict]:
    rows = conn.execute(select(review_events).where(review_events.c.job_id == job_id).order_by(review_events.c.id))
    return [
        {
            "schema": REVIEW_SCHEMA,
            "review_id": r.review_id,
            "job_id": r.job_id,
            "output": r.output,
            "set": orjson.loads(r.changes),
            "timestamp": r.timestamp,
            "source": r.source,
        }
        for r in rows
    ]


def ratings_dict(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(jobs.c.job_id, jobs.c.rating).where(jobs.c.rating_hi >= 0).order_by(jobs.c.id))
    return {job_id: rating for job_id, rating in rows}


def counts(conn: Connection) -> dict:
    total = conn.execute(
        select(func.coalesce(func.sum(facet_values.c.count), 0)).where(facet_values.c.field == "status")
    ).scalar_one()
    events = conn.execute(select(func.count()).select_from(rating_events)).scalar_one()
    return {"jobs": int(total), "rating_events": int(events)}
