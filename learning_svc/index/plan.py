"""Which index walk answers a listing: decided from the filters and a few counts, before any SQL is built.

A page is chosen on (sort key, id) alone. It is either one range of a sort index
(`jobs`, or `job_tags` for the rarest single-valued tag filter: its rows carry copies of
every sort key) checked row by row against the other filters, or the matching jobs
fetched through an index and sorted. Which is cheaper depends on how many jobs a filter
matches, which the facet counts say without scanning.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sqlalchemy import Connection, and_, func, or_, select

from .tables import facet_values, jobs
from .text_search import MatchSets, TextPlan, fts_query
from .words import tsquery

SORTS = {  # name -> (jobs column, descending)
    "-completed_at": (jobs.c.completed_at, True),
    "completed_at": (jobs.c.completed_at, False),
    "-rating": (jobs.c.rating_hi, True),  # unrated = -1: last
    "rating": (jobs.c.rating_lo, False),  # unrated = 6: last
    "-duration_sec": (jobs.c.duration_key, True),  # unknown duration = -1
    "duration_sec": (jobs.c.duration_key, False),
}
DEFAULT_SORT = "-completed_at"
DEFAULT_LIMIT, MAX_LIMIT = 50, 500


@dataclass(frozen=True)
class Thresholds:
    """Where the planner switches plans (Settings: LEARNING_SVC_PROBE_ABOVE, ..._FACET_SAMPLE)."""

    # Above this many matches, walking the sort index and probing each job beats fetching
    # every match and sorting it (a page of 50 then costs a few thousand probes). Below it
    # the fetch-and-sort cost is bounded (~20k small keys), which also guards against a
    # value that sits at the far end of the sort order (cancelled jobs by duration).
    probe_above: int = 20_000
    facet_sample: int = 2_000  # filtered facets count at most this many of the newest matching jobs


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
            v is None for v in (self.rating_min, self.rating_max, self.rated, self.since, self.until)
        )


@dataclass
class Page:
    filters: Filters
    sort: str = DEFAULT_SORT
    limit: int = DEFAULT_LIMIT
    after: tuple | None = None  # (sort key, id) of the last row of the previous page


@dataclass(frozen=True)
class Plan:
    """A page and how to find it. Building SQL from a plan reads nothing from the database."""

    page: Page
    drive: str | None  # the tag field whose job_tags range is walked, or None for jobs' own sort index
    tags: dict[str, tuple[int, ...]]  # field -> the tag numbers of its wanted values (none: no job has one)
    probed: frozenset[str]  # tag fields checked job by job (EXISTS), the others fetched (IN)
    wide_window: bool  # since/until holds many jobs: checked per job while walking another sort's index
    text: TextPlan | None  # how q is searched (SQLite FTS5, PostgreSQL's held searches); None: in SQL
    dialect: str

    @property
    def held_alone(self) -> bool:
        """A held text search and nothing else: a page is a bisection of its sorted matches."""
        f = self.page.filters
        return self.text is not None and self.text.kind == "set" and f == Filters(q=f.q)

    def held_count(self) -> int | None:
        """How many jobs match, counted in memory: for a held text search alone, or with
        rated/unrated (the page's two counts); None otherwise."""
        f = self.page.filters
        if self.text is None or self.text.kind != "set" or f != Filters(q=f.q, rated=f.rated):
            return None
        return self.text.count(f.rated)

    def after(self, position: tuple) -> Plan:
        """The same plan for the next page."""
        return replace(self, page=replace(self.page, after=position))


def make_plan(conn: Connection, page: Page, match_sets: MatchSets, thresholds: Thresholds) -> Plan:
    """Count what the decisions need (one facet-count query, a bounded window count, the
    text search's own look-up in the reader's held searches) and decide the plan."""
    f = page.filters
    counts, numbers = tag_counts(conn, f.tags)
    single = [name for name, keys in f.tags.items() if len(keys) == 1]
    drive = min(single, key=lambda name: counts[name]) if single else None
    probed = frozenset(name for name in f.tags if name != drive and counts[name] > thresholds.probe_above)
    wide = (
        not page.sort.endswith("completed_at")
        and (f.since is not None or f.until is not None)
        and window_count(conn, f, thresholds.probe_above + 1) > thresholds.probe_above
    )
    text = None
    if f.q and conn.dialect.name == "sqlite":
        text = match_sets.plan(conn, fts_query(f.q))
    elif f.q and f == Filters(q=f.q, rated=f.rated) and (query := tsquery(f.q)) is not None:
        text = match_sets.plan(conn, query)  # PostgreSQL: held for a search alone (Plan.held_alone, held_count)
    return Plan(page, drive, numbers, probed, wide, text, conn.dialect.name)


def tag_counts(conn: Connection, tags: dict[str, list[str]]) -> tuple[dict[str, int], dict[str, tuple[int, ...]]]:
    """How many jobs carry one of the wanted values, per field (from the facet counts: no scan),
    and the tag numbers of those values (job_tags stores the numbers)."""
    if not tags:
        return {}, {}
    wanted = or_(*(and_(facet_values.c.field == name, facet_values.c.value.in_(keys)) for name, keys in tags.items()))
    counts = {name: 0 for name in tags}
    numbers: dict[str, list[int]] = {name: [] for name in tags}
    for name, tag, count in conn.execute(
        select(facet_values.c.field, facet_values.c.tag, facet_values.c.count).where(wanted)
    ):
        counts[name] += int(count)
        numbers[name].append(tag)
    return counts, {name: tuple(sorted(found)) for name, found in numbers.items()}


def window_count(conn: Connection, f: Filters, limit: int) -> int:
    """Jobs in the since/until window, counted up to `limit`."""
    window = select(jobs.c.id).where(
        *([jobs.c.completed_at >= f.since] if f.since is not None else []),
        *([jobs.c.completed_at <= f.until] if f.until is not None else []),
    )
    return conn.execute(select(func.count()).select_from(window.limit(limit).subquery())).scalar_one()
