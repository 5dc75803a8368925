"""Read side of the index: filters, keyset cursors, listing, facets, details, counts."""
from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from sqlalchemy import Boolean, CompoundSelect, Connection, Select, and_, column, exists, func, select, table, text, union_all

from ..prompts import facet_key
from ..records import to_epoch
from . import text_search
from .tables import FACET_FIELDS, facet_values, job_tags, jobs, rating_events

SORTS = {  # name -> (column, descending)
    "-completed_at": (jobs.c.completed_at, True),
    "completed_at": (jobs.c.completed_at, False),
    "-rating": (jobs.c.rating_hi, True),  # unrated = -1: last
    "rating": (jobs.c.rating_lo, False),  # unrated = 6: last
    "-duration_sec": (jobs.c.duration_key, True),  # unknown duration = -1
    "duration_sec": (jobs.c.duration_key, False),
}
TAG_PARAMS = {"pack": "pack", "model": "model", "sampler": "sampler", "scheduler": "scheduler",
              "lora": "lora", "embedding": "embedding", "status": "status"}
FILTER_PARAMS = set(TAG_PARAMS) | {"rating_min", "rating_max", "rated", "since", "until", "q"}
LIST_PARAMS = FILTER_PARAMS | {"limit", "cursor", "sort"}
DEFAULT_LIMIT, MAX_LIMIT = 50, 500
STATUSES = ("completed", "failed", "cancelled")
PREFIX_MIN = 3
DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


class BadQuery(ValueError):
    def __init__(self, param: str, msg: str):
        super().__init__(f"{param}: {msg}")
        self.param, self.msg = param, msg


@dataclass
class Filters:
    tags: dict[str, list[str]] = field(default_factory=dict)  # field -> facet keys (OR)
    rating_min: int | None = None
    rating_max: int | None = None
    rated: bool | None = None
    since: float | None = None
    until: float | None = None
    q: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.tags or self.q) and all(
            v is None for v in (self.rating_min, self.rating_max, self.rated, self.since, self.until))


@dataclass
class Page:
    filters: Filters
    sort: str = "-completed_at"
    limit: int = DEFAULT_LIMIT
    after: tuple | None = None  # (sort key, id) of the last row of the previous page


def one_param(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name) or []
    if len(values) > 1:
        raise BadQuery(name, "give this parameter at most once")
    return values[0] if values else None


def int_param(params, name: str, lo: int, hi: int) -> int | None:
    raw = one_param(params, name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadQuery(name, f"must be an integer from {lo} to {hi}, got {raw[:40]!r}") from None
    if not lo <= value <= hi:
        raise BadQuery(name, f"must be an integer from {lo} to {hi}, got {value}")
    return value


def _time(params, name: str) -> float | None:
    """since / until as epoch seconds. A date alone is a whole UTC day: `until=2025-11-24`
    runs to the end of the 24th (inclusive, to the millisecond), not to its first instant."""
    raw = one_param(params, name)
    if raw is None:
        return None
    try:
        value = to_epoch(float(raw) if _is_number(raw) else raw)
    except ValueError as error:
        raise BadQuery(name, f"must be epoch seconds or an ISO-8601 time ({error})") from None
    return value + 86_400 - 0.001 if name == "until" and DATE_ONLY.fullmatch(raw.strip()) else value


def _is_number(raw: str) -> bool:
    try:
        float(raw)
        return True
    except ValueError:
        return False


def parse_filters(params: Mapping[str, Sequence[str]], allowed: set[str] = FILTER_PARAMS) -> Filters:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise BadQuery(unknown[0], f"unknown parameter (known: {', '.join(sorted(allowed))})")
    f = Filters()
    for name, field_name in TAG_PARAMS.items():
        values = [v for v in params.get(name) or [] if v.strip()]
        if name == "status":
            for v in values:
                if v.strip().casefold() not in STATUSES:  # case-insensitive like every other tag
                    raise BadQuery(name, f"must be one of {', '.join(STATUSES)}, got {v[:40]!r}")
        if values:
            f.tags[field_name] = sorted({facet_key(field_name, v) for v in values})
    f.rating_min = int_param(params, "rating_min", 0, 5)
    f.rating_max = int_param(params, "rating_max", 0, 5)
    rated = one_param(params, "rated")
    if rated is not None:
        if rated not in ("true", "false"):
            raise BadQuery("rated", f"must be true or false, got {rated[:40]!r}")
        f.rated = rated == "true"
    f.since, f.until = _time(params, "since"), _time(params, "until")
    q = one_param(params, "q") or ""
    if len(q.strip()) > 500:
        raise BadQuery("q", "must be at most 500 characters")
    # Text search sees only letters and digits: a word without any (`-`, `🌊`) is left out
    # rather than matching nothing, so that `q=-` behaves like `q=` and `castle -` like `castle`.
    f.q = " ".join(w for w in q.split() if any(ch.isalnum() for ch in w)) or None
    for word in (f.q or "").split():
        # A short prefix expands into thousands of FTS5 terms: `a*` takes ~25 s at 1M jobs.
        if word.endswith("*") and sum(ch.isalnum() for ch in word) < PREFIX_MIN:
            raise BadQuery("q", f"a prefix needs at least {PREFIX_MIN} letters or digits before the *, got {word[:40]!r}")
    return f


def parse_page(params: Mapping[str, Sequence[str]]) -> Page:
    page = Page(parse_filters(params, LIST_PARAMS))
    page.sort = one_param(params, "sort") or "-completed_at"
    if page.sort not in SORTS:
        raise BadQuery("sort", f"must be one of {', '.join(SORTS)}, got {page.sort[:40]!r}")
    limit = int_param(params, "limit", 1, MAX_LIMIT)
    page.limit = DEFAULT_LIMIT if limit is None else limit
    cursor = one_param(params, "cursor")
    if cursor:
        page.after = decode_cursor(cursor, page.sort)
    return page


def encode_cursor(sort: str, key, row_id: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([sort, key, row_id])).decode().rstrip("=")


def _sql_number(value, integral: bool = False) -> bool:
    """A JSON number the database can bind: SQLite integers are 64-bit (a bigger one is an OverflowError)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -2**63 <= value < 2**63
    return isinstance(value, float) and not integral


def decode_cursor(token: str, sort: str) -> tuple:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        name, key, row_id = orjson.loads(raw)
        valid = _sql_number(key) and _sql_number(row_id, integral=True)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        valid, name = False, None
    if not valid:
        raise BadQuery("cursor", "is not a cursor this service issued")
    if name != sort:
        raise BadQuery("cursor", f"belongs to sort {name!r}, not {sort!r}: start again without a cursor")
    return key, row_id


# ---------------------------------------------------------------- SQL

def fts_query(q: str) -> str:
    """User words -> an FTS5 query: every word must occur; a word ending in `*` as a prefix.

    Whole words by default: a prefix must be expanded into every matching term for each
    job it is checked against, which makes a common prefix ~10x slower to search.
    Quotes neutralise FTS5 syntax.
    """
    parts = []
    for word in q.split():
        star = "*" if word.endswith("*") else ""
        parts.append('"' + word.rstrip("*").replace('"', '""') + '"' + star)
    return " ".join(parts)


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


# Above this many matches, walking the sort index and probing each job beats fetching
# every match and sorting it (a page of 50 then costs a few thousand probes). Below it the
# fetch-and-sort cost is bounded (~20k small keys), which also guards against a value
# that sits at the far end of the sort order (cancelled jobs by duration).
PROBE_ABOVE = 20_000
FACET_SAMPLE = 2_000  # filtered facets count at most this many of the newest matching jobs
JOBS_FTS = table("jobs_fts", column("rowid"))  # the FTS5 table of migration 0001 (rowid = jobs.id)


def tag_matches(conn: Connection, field_name: str, keys: list[str]) -> int:
    """How many jobs carry one of these values (from the facet counts: no scan)."""
    stmt = select(func.coalesce(func.sum(facet_values.c.count), 0)).where(
        facet_values.c.field == field_name, facet_values.c.value.in_(keys))
    return int(conn.execute(stmt).scalar_one())


def _text_condition(conn: Connection, q: str, job_id, plan: text_search.TextPlan | None):
    """Every word of q in the job's text: FTS5 on SQLite (`plan`), substrings elsewhere (no plan)."""
    if plan is None:
        # Every word must match, as with FTS5 (AND, not OR).
        words = [jobs.c.search_text.contains(w.casefold(), autoescape=True) for w in q.split()]
        return job_id.in_(select(jobs.c.id).where(*words))
    if plan.kind == "set":  # walk the sort index, checking each job against the set in memory
        text_search.bind(conn, plan.held.ids)
        return func.text_match(job_id, type_=Boolean)
    match = text("jobs_fts MATCH :fts").bindparams(fts=fts_query(q))
    if plan.kind == "probe":  # in most prompts: few FTS5 checks per page
        return exists().select_from(JOBS_FTS).where(match, JOBS_FTS.c.rowid == job_id)
    return job_id.in_(select(JOBS_FTS.c.rowid).where(match))  # few matches: fetch and sort them


def window_matches_many(conn: Connection, f: Filters) -> bool:
    """Does the since/until window hold more than PROBE_ABOVE jobs? (counts at most that many)"""
    if f.since is None and f.until is None:
        return False
    window = select(jobs.c.id).where(*([jobs.c.completed_at >= f.since] if f.since is not None else []),
                                     *([jobs.c.completed_at <= f.until] if f.until is not None else []))
    counted = select(func.count()).select_from(window.limit(PROBE_ABOVE + 1).subquery())
    return conn.execute(counted).scalar_one() > PROBE_ABOVE


def conditions(f: Filters, conn: Connection, job_id, completed_at, skip_tag: str | None = None,
               sort: str | None = None, text_plan: text_search.TextPlan | None = None) -> list:
    """SQL conditions for the filters but rating (see _rating_conditions), on the job id and
    completed_at columns of the listing's source (jobs, or the driving job_tags); `sort` is its
    order, `text_plan` how q is searched (SQLite).

    A common value is a per-job probe (EXISTS on a primary key), so that the listing walks
    its sort index; a rare one is a set of job ids fetched through an index, then sorted.
    """
    conds = []
    for field_name, keys in f.tags.items():
        if field_name == skip_tag:
            continue
        if tag_matches(conn, field_name, keys) > PROBE_ABOVE:
            probe = job_tags.alias(f"has_{field_name}")  # apart from a driving job_tags in the outer query
            conds.append(exists().where(probe.c.job == job_id, probe.c.field == field_name,
                                        probe.c.value.in_(keys)).correlate(job_id.table))
        else:
            conds.append(job_id.in_(
                select(job_tags.c.job).where(job_tags.c.field == field_name, job_tags.c.value.in_(keys))))
    if sort and not sort.endswith("completed_at") and window_matches_many(conn, f):
        # `+ 0` hides the time index from the planner: for a wide window, walking the
        # sort's own index and checking the time is far cheaper than sorting the window.
        completed_at = completed_at + 0
    if f.since is not None:
        conds.append(completed_at >= f.since)
    if f.until is not None:
        conds.append(completed_at <= f.until)
    if f.q:
        conds.append(_text_condition(conn, f.q, job_id, text_plan))
    return conds


def _driving_tag(conn: Connection, f: Filters, sort: str) -> str | None:
    """The rarest single-valued tag filter: the listing is a range of job_tags' index for its sort."""
    single = [name for name, keys in f.tags.items() if len(keys) == 1]
    return min(single, key=lambda name: tag_matches(conn, name, f.tags[name])) if single else None


def page_keys(conn: Connection, page: Page) -> Select | CompoundSelect:
    """(sort_key, id) of the page's limit + 1 jobs in order, so that the caller sees if more follow.

    The page is chosen on these keys alone and its rows fetched afterwards (a deferred
    join): when a plan must sort the matching jobs, it sorts small keys, not summaries.
    """
    column, descending = SORTS[page.sort]
    f = page.filters
    text_plan = text_search.MATCH_SETS.plan(conn, fts_query(f.q)) if f.q and conn.dialect.name == "sqlite" else None
    if text_plan and text_plan.kind == "set" and f == Filters(q=f.q):  # a held search alone: a bisection
        held = text_plan.page(column.name, descending, page.after, page.limit + 1)
        order = (column.desc(), jobs.c.id.desc()) if descending else (column.asc(), jobs.c.id.asc())
        return select(column.label("sort_key"), jobs.c.id).where(jobs.c.id.in_(held)).order_by(*order)
    drive = _driving_tag(conn, page.filters, page.sort)
    if drive:  # a range of job_tags' index for the sort: it carries a copy of every sort key
        source = job_tags.alias("drive")
        key_col, id_col = source.c[column.name], source.c.job
        conds = [source.c.field == drive, source.c.value == page.filters.tags[drive][0]]
    else:
        source = jobs
        key_col, id_col = column, jobs.c.id
        conds = []
    conds += conditions(f, conn, id_col, source.c.completed_at, skip_tag=drive, sort=page.sort, text_plan=text_plan)
    rating = _rating_conditions(page.filters, page.sort, source)
    keys = select(key_col.label("sort_key"), id_col.label("id")).select_from(source).where(*conds)
    order = (key_col.desc(), id_col.desc()) if descending else (key_col.asc(), id_col.asc())
    if page.after is None:
        return keys.where(*rating).order_by(*order).limit(page.limit + 1)
    # After a cursor: the rest of its key's tie group, then the keys beyond it, merged in
    # order. Both are index seeks; `(key, id) < (k, i)` would seek on the key alone and
    # then step over the whole tie group (half a million unrated jobs in "-rating" order).
    # In the tie group a rating filter is written as for a time sort (`+ 0`): on the rating
    # sort's own column it would take the index from the (key, id) seek.
    key, row_id = page.after
    beyond = (key_col < key, id_col < row_id) if descending else (key_col > key, id_col > row_id)
    ties = keys.where(*_rating_conditions(page.filters, "completed_at", source), key_col == key, beyond[1])
    merged = union_all(ties, keys.where(*rating, beyond[0]))
    key_col, id_col = merged.selected_columns.sort_key, merged.selected_columns.id
    order = (key_col.desc(), id_col.desc()) if descending else (key_col.asc(), id_col.asc())
    return merged.order_by(*order).limit(page.limit + 1)


def listing_statement(conn: Connection, page: Page) -> Select:
    """The rows of the page chosen by page_keys (no ORDER BY: fetch_page orders them)."""
    chosen = page_keys(conn, page).subquery("page")
    return (select(chosen.c.sort_key, jobs.c.id, jobs.c.summary, jobs.c.rating, jobs.c.rated_at, jobs.c.line_length)
            .select_from(chosen.join(jobs, jobs.c.id == chosen.c.id)))


def fetch_page(conn: Connection, page: Page) -> list:
    """The rows of listing_statement in sort order."""
    rows = conn.execute(listing_statement(conn, page)).all()
    return sorted(rows, key=lambda row: (row.sort_key, row.id), reverse=SORTS[page.sort][1])


def list_jobs(conn: Connection, page: Page) -> tuple[list[dict], str | None]:
    rows = fetch_page(conn, page)
    more = len(rows) > page.limit
    rows = rows[:page.limit]
    next_cursor = encode_cursor(page.sort, rows[-1].sort_key, rows[-1].id) if more else None
    return [summary_of(row) for row in rows], next_cursor


def summary_of(row) -> dict:
    summary = orjson.loads(row.summary)
    summary["rating"] = row.rating
    summary["rated_at"] = row.rated_at
    return summary


def iter_jobs(conn: Connection, filters: Filters, sort: str = "-completed_at", batch: int = 500) -> Iterator:
    """Every matching job in order, fetched page by page with the listing's own statement (constant memory)."""
    page = Page(filters, sort, batch)
    while True:
        rows = fetch_page(conn, page)
        yield from rows[:batch]
        if len(rows) <= batch:
            return
        page.after = (rows[batch - 1].sort_key, rows[batch - 1].id)


def facets(conn: Connection, f: Filters, size: int = 50) -> tuple[dict[str, list[dict]], dict | None]:
    """(facets, sampled). Unfiltered: the counts kept by ingest. Filtered: counted over the
    matching jobs, or over the newest FACET_SAMPLE of them when more match (then `sampled`
    says so): a count over every tag of 300,000 jobs takes seconds, not milliseconds."""
    result: dict[str, list[dict]] = {name: [] for name in (*FACET_FIELDS, "rating")}
    if f.empty:
        for name in result:
            rows = conn.execute(
                select(facet_values).where(facet_values.c.field == name, facet_values.c.count > 0)
                .order_by(facet_values.c.count.desc(), facet_values.c.value).limit(size))
            result[name] = [_facet_entry(name, r.display, r.count, r.rated_count, r.rating_sum) for r in rows]
        return result, None
    keys = conn.execute(page_keys(conn, Page(f, "-completed_at", FACET_SAMPLE))).all()
    sampled = len(keys) > FACET_SAMPLE
    chosen = [row.id for row in keys[:FACET_SAMPLE]]
    # job_tags rows carry the job's rating: one pass counts every facet, and the status rows
    # (one per job) give the rating facet.
    t = job_tags
    counted = (select(t.c.field, t.c.value, t.c.rating_hi, func.count().label("n"))
               .where(t.c.job.in_(chosen)).group_by(t.c.field, t.c.value, t.c.rating_hi)).subquery()
    stmt = select(counted, facet_values.c.display).join(
        facet_values, and_(facet_values.c.field == counted.c.field, facet_values.c.value == counted.c.value))
    totals: dict[tuple[str, str], list] = {}  # (field, value) -> [display, count, rated, rating sum]
    ratings: Counter[int] = Counter()
    for row in conn.execute(stmt):
        entry = totals.setdefault((row.field, row.value), [row.display, 0, 0, 0])
        entry[1] += row.n
        if row.rating_hi >= 0:
            entry[2] += row.n
            entry[3] += row.rating_hi * row.n
        if row.field == "status":
            ratings[row.rating_hi] += row.n
    for (name, value), (display, count, rated, total) in sorted(totals.items(), key=lambda i: (-i[1][1], i[0][1])):
        if len(result[name]) < size:
            result[name].append(_facet_entry(name, display, count, rated, total))
    # Same order as the unfiltered facet: count, then the stored value ("0".."5", "none").
    entries = sorted(ratings.items(), key=lambda r: (-r[1], "none" if r[0] < 0 else str(r[0])))
    result["rating"] = [_facet_entry("rating", "none" if r < 0 else str(r), n, 0 if r < 0 else n, max(r, 0) * n)
                        for r, n in entries]
    return result, ({"jobs": FACET_SAMPLE, "order": "-completed_at"} if sampled else None)


def _facet_entry(name: str, display: str, count: int, rated: int, total: int) -> dict:
    value = (None if display == "none" else int(display)) if name == "rating" else display
    return {"value": value, "count": count, "mean_rating": round(total / rated, 4) if rated else None}


def job_row(conn: Connection, job_id: str):
    return conn.execute(select(jobs).where(jobs.c.job_id == job_id)).first()


def job_rows(conn: Connection, job_ids: Sequence[str]) -> dict[str, object]:
    rows = {}
    for i in range(0, len(job_ids), 500):
        for row in conn.execute(select(jobs.c.job_id, jobs.c.input_hash, jobs.c.summary, jobs.c.rating,
                                       jobs.c.rated_at).where(jobs.c.job_id.in_(job_ids[i:i + 500]))):
            rows[row.job_id] = row
    return rows


def rating_history(conn: Connection, job_id: str) -> list[dict]:
    rows = conn.execute(select(rating_events).where(rating_events.c.job_id == job_id).order_by(rating_events.c.id))
    return [{"schema": "learning_rating_v2", "rating_id": r.rating_id, "job_id": r.job_id, "rating": r.rating,
             "timestamp": r.timestamp, "source": r.source} for r in rows]


def ratings_dict(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(jobs.c.job_id, jobs.c.rating).where(jobs.c.rating_hi >= 0).order_by(jobs.c.id))
    return {job_id: rating for job_id, rating in rows}


def counts(conn: Connection) -> dict:
    total = conn.execute(select(func.coalesce(func.sum(facet_values.c.count), 0))
                         .where(facet_values.c.field == "status")).scalar_one()
    events = conn.execute(select(func.count()).select_from(rating_events)).scalar_one()
    return {"jobs": int(total), "rating_events": int(events)}
