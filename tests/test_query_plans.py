"""The SQLite plans of the listing: every sort, with no filter and with each single filter,
on the first page and after a cursor, reads through an index and never scans the jobs table.

The statement checked is the one `queries.list_jobs` runs (`queries.listing_statement`),
compiled with its values; the plans are read both as ingest leaves the index (no
statistics) and after ANALYZE (what `learning-svc reindex` leaves).
"""

from __future__ import annotations

import re
import sqlite3

import pytest
from sqlalchemy import create_engine, text

from learning_svc import create_app
from learning_svc import params as query_params
from learning_svc.config import Settings
from learning_svc.index import queries
from learning_svc.index.plan import SORTS as PLAN_SORTS
from learning_svc.index.plan import Page, Thresholds, make_plan
from learning_svc.index.text_search import MatchSets
from learning_svc.journal import Journal

from history_oracle import TIE_AT, dataset_records, post_all, rate_all, rating_events

SEED = 4242
SORTS = tuple(PLAN_SORTS)
SINGLE_FILTERS = {
    "none": {},
    "pack": {"pack": ["PORTRAIT_moody_01_juggernautXL_ragnarokBy"]},
    "model": {"model": ["juggernautXL_ragnarokBy"]},
    "sampler": {"sampler": ["DPM++ 2M"]},
    "scheduler": {"scheduler": ["Karras"]},
    "lora": {"lora": ["add-detail_xl"]},
    "embedding": {"embedding": ["easynegative"]},
    "status": {"status": ["failed"]},
    "rating_min": {"rating_min": ["4"]},
    "rating_max": {"rating_max": ["1"]},
    "rated_true": {"rated": ["true"]},
    "rated_false": {"rated": ["false"]},
    "since": {"since": [str(TIE_AT)]},
    "until": {"until": [str(TIE_AT)]},
    "q": {"q": ["castle"]},
}
MORE_FILTERS = {
    "pack_or": {"pack": ["PORTRAIT_moody_01_juggernautXL_ragnarokBy", "FANTASY_closeup_18_sd_xl_base_1.0"]},
    "model_and_rating": {"model": ["juggernautXL_ragnarokBy"], "rating_min": ["3"]},
    "lora_and_since": {"lora": ["add-detail_xl"], "since": [str(TIE_AT)]},
}
FULL_SCAN = re.compile(r"SCAN jobs\b(?! USING (COVERING )?INDEX)")  # "SCAN jobs_fts" is the text index
TAGS = ("pack", "model", "sampler", "scheduler", "lora", "embedding", "status")


def must_walk_in_order(filter_name: str, sort: str) -> bool:
    """Listings that must be one ordered index walk (no sorting of the matching jobs).

    Left out: several values of one tag, and text search. Their plans fetch the matching jobs through an index and sort
    them (USE TEMP B-TREE): fine for rare values, a cost that grows with the match count.
    """
    if filter_name in TAGS:
        return True  # driven by the job_tags index for the sort
    return filter_name in ("none", "rating_min", "rating_max", "rated_true", "rated_false", "since", "until")


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    """(label, engine) for the index as ingest leaves it and for a copy after ANALYZE."""
    tmp = tmp_path_factory.mktemp("plans")
    settings = Settings(data_dir=tmp / "learning", output_root=tmp / "outputs")
    app = create_app(settings)
    records = dataset_records(300, SEED)
    post_all(app.test_client, records)
    rate_all(app.test_client, rating_events(records, SEED))
    app.extensions["learning_svc"].close()
    analyzed = tmp / "analyzed.sqlite3"
    with sqlite3.connect(settings.index_path) as source, sqlite3.connect(analyzed) as copy:
        source.backup(copy)
        copy.execute("ANALYZE")
    engines = {
        "ingested": create_engine(f"sqlite:///{settings.index_path}"),
        "analyzed": create_engine(f"sqlite:///{analyzed}"),
    }
    yield {**engines, "log": settings.log_path}
    for engine in engines.values():
        engine.dispose()


def compiled_sql(conn, plan) -> str:
    queries.prepare(conn, plan)
    stmt = queries.listing_statement(plan)
    return str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))


def plan_of(conn, sql: str) -> list[str]:
    return [row[3] for row in conn.execute(text("EXPLAIN QUERY PLAN " + sql))]


def pages_to_check(conn, query: dict, sort: str, match_sets=None):
    """The plans of the first page, and of the page after a real cursor (or after a made-up position)."""
    filters = query_params.parse(query_params.ListParams, query).filters()
    match_sets = match_sets or MatchSets(background=False)
    first = make_plan(conn, Page(filters, sort, 7), match_sets, Thresholds())
    yield "page 1", first
    rows = queries.fetch_page(conn, first)
    cursor = queries.encode_cursor(sort, rows[6].sort_key, rows[6].id) if len(rows) > 7 else None
    after = queries.decode_cursor(cursor, sort) if cursor else (3 if "rating" in sort else TIE_AT, 10**6)
    yield "cursor", make_plan(conn, Page(filters, sort, 7, after), match_sets, Thresholds())


def check_plan(plan: list[str], ordered: bool) -> list[str]:
    """What is wrong with a listing plan (empty when it is fine)."""
    problems = []
    for step in plan:
        if FULL_SCAN.match(step):
            problems.append(f"full scan of jobs: {step}")
        if step.startswith("SCAN job_tags"):
            problems.append(f"scan of job_tags: {step}")
    if not any(("USING" in step and "INDEX" in step) or "PRIMARY KEY" in step for step in plan):
        problems.append("no index used")
    if ordered and any("TEMP B-TREE" in step for step in plan):
        problems.append("sorts the matching jobs instead of walking the sort index")
    return problems


@pytest.mark.parametrize("state", ("ingested", "analyzed"))
@pytest.mark.parametrize("sort", SORTS)
def test_listing_plans_use_indexes(indexes, state, sort):
    problems = {}
    with indexes[state].connect() as conn:
        for name, params in {**SINGLE_FILTERS, **MORE_FILTERS}.items():
            for label, plan in pages_to_check(conn, params, sort):
                sql = compiled_sql(conn, plan)
                plan = plan_of(conn, sql)
                found = check_plan(plan, must_walk_in_order(name, sort))
                if found:
                    problems[f"{name}, {label}"] = found + plan
    assert not problems, problems


@pytest.mark.parametrize("sort", SORTS)
def test_checked_statement_is_the_one_listing_runs(indexes, sort):
    """The compiled text, run as is, returns the rows list_jobs returns."""
    log = Journal(indexes["log"])
    with indexes["ingested"].connect() as conn:
        for params in (*SINGLE_FILTERS.values(), *MORE_FILTERS.values()):
            for _, plan in pages_to_check(conn, params, sort):
                listed, _ = queries.list_jobs(conn, plan, log)
                rows = conn.execute(text(compiled_sql(conn, plan))).all()[: plan.page.limit]
                assert [row.job_id for row in rows] == [job["job_id"] for job in listed]


@pytest.mark.parametrize("state", ("ingested", "analyzed"))
@pytest.mark.parametrize("sort", SORTS)
def test_common_words_walk_the_sort_index(indexes, state, sort):
    """A word held in memory (index/text_search.py) is checked while walking the sort index, alone or with a tag."""
    sets = MatchSets(background=False, fetch_up_to=-1)
    problems = {}
    with indexes[state].connect() as conn:
        for name, params in {
            "q": {"q": ["masterpiece"]},
            "q_and_lora": {"q": ["masterpiece"], **SINGLE_FILTERS["lora"]},
            "q_and_rating": {"q": ["masterpiece"], "rating_min": ["4"]},
        }.items():
            for label, listing in pages_to_check(conn, params, sort, sets):
                plan = plan_of(conn, compiled_sql(conn, listing))
                found = check_plan(plan, ordered=True)
                if found:
                    problems[f"{name}, {label}"] = found + plan
        assert sets.entries and all(entry.ids for entry in sets.entries.values())
    assert not problems, problems


def test_no_filter_plans_are_a_plain_index_walk(indexes):
    """The common view: newest first, page 1 one range of ix_jobs_completed; after a cursor, the
    rest of the cursor's tie group and the older jobs, two seeks merged; then the page's rows by id."""
    fetch = ("MATERIALIZE page", "SCAN page", "SEARCH jobs USING INTEGER PRIMARY KEY (rowid=?)")
    merged = [
        "MERGE (UNION ALL)",
        "LEFT",
        "SEARCH jobs USING COVERING INDEX ix_jobs_completed (completed_at=? AND id<?)",
        "RIGHT",
        "SEARCH jobs USING COVERING INDEX ix_jobs_completed (completed_at<?)",
    ]
    with indexes["ingested"].connect() as conn:
        for label, listing in pages_to_check(conn, {}, "-completed_at"):
            plan = plan_of(conn, compiled_sql(conn, listing))
            choose = [step for step in plan if step not in fetch]
            if label == "page 1":
                assert len(choose) == 1 and "COVERING INDEX ix_jobs_completed" in choose[0], (label, plan)
            else:
                assert choose == merged, plan
            assert plan[-1] == fetch[-1], (label, plan)  # only the page's rows are read whole


@pytest.mark.parametrize("state", ["ingested", "analyzed"])
def test_unfiltered_facets_read_each_fields_top_values_through_the_count_index(indexes, state):
    """One statement for every field (an open page asks on every change); each field's part a
    search of ix_facet_values_count, never a scan of facet_values."""
    from learning_svc.index import facets

    with indexes[state].connect() as conn:
        limits = ", ".join(["50"] * len(facets.FACET_NAMES))
        sql = facets._UNFILTERED.replace("?", "{}").format(*limits.split(", "))
        plan = plan_of(conn, sql)
        searches = [line for line in plan if "facet_values" in line]
        assert len(searches) == len(facets.FACET_NAMES)
        assert all("USING INDEX ix_facet_values_count" in line for line in searches), searches


# ---------------------------------------------------------------- PostgreSQL
# At a few hundred rows PostgreSQL rightly prefers reading a whole table, so its plans are
# checked with sequential scans and sorts priced out (enable_seqscan, enable_sort off): a plan
# that still scans or sorts has no index that can answer the listing, whatever the size.
PG_TABLE_SCAN = re.compile(r"Seq Scan on (jobs|job_tags)\b")


@pytest.fixture(scope="module")
def pg_index(postgres, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pg-plans")
    url = postgres.new_database()
    settings = Settings(data_dir=tmp / "learning", output_root=tmp / "outputs", database_url=url)
    app = create_app(settings)
    records = dataset_records(300, SEED)
    post_all(app.test_client, [*records, {**records[0], "job_id": "rare-word", "prompt": "a lone quokka, dusk"}])
    rate_all(app.test_client, rating_events(records, SEED))
    app.extensions["learning_svc"].close()
    engine = create_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # As autovacuum leaves it: statistics, and the GIN index's pending list merged (ingest
        # adds to that list; while it is long the planner rightly prices the index high).
        conn.execute(text("VACUUM ANALYZE"))
    yield engine
    engine.dispose()


def pg_plan_of(conn, sql: str) -> list[str]:
    conn.execute(text("SET enable_seqscan = off"))
    conn.execute(text("SET enable_sort = off"))
    return [row[0] for row in conn.execute(text("EXPLAIN " + sql))]


def pg_unbounded_sorts(conn, sql: str) -> list[str]:
    """Sort nodes that sort the matches: with a scan below them not cut short by a Limit (a
    sort of the few rows of limited, ordered walks is the merge of a cursor's two parts)."""

    def unlimited_scan(node) -> bool:
        if node["Node Type"] == "Limit":
            return False
        return "Scan" in node["Node Type"] or any(unlimited_scan(child) for child in node.get("Plans", []))

    def sorts(node):
        if "Sort" in node["Node Type"] and "Merge" not in node["Node Type"] and unlimited_scan(node):
            yield f"{node['Node Type']} on {node.get('Sort Key')}"
        for child in node.get("Plans", []):
            yield from sorts(child)

    (tree,) = conn.execute(text("EXPLAIN (FORMAT JSON) " + sql)).scalar_one()
    return list(sorts(tree["Plan"]))


@pytest.mark.parametrize("sort", SORTS)
def test_postgresql_listing_plans_use_indexes(pg_index, sort):
    """Every sort, with no filter and each filter, page 1 and after a cursor: through an index,
    never a scan of jobs or job_tags; the listings that SQLite walks in order are walked in
    order on PostgreSQL too (no Sort node)."""
    problems = {}
    with pg_index.connect() as conn:
        for name, params in {**SINGLE_FILTERS, **MORE_FILTERS}.items():
            for label, listing in pages_to_check(conn, params, sort):
                sql = compiled_sql(conn, listing)
                plan = pg_plan_of(conn, sql)
                found = [f"table scan: {line.strip()}" for line in plan if PG_TABLE_SCAN.search(line)]
                if not any("Index" in line for line in plan):
                    found.append("no index used")
                if must_walk_in_order(name, sort):
                    found += [f"sorts the matches: {step}" for step in pg_unbounded_sorts(conn, sql)]
                if found:
                    problems[f"{name}, {label}"] = found + plan
    assert not problems, "\n\n".join(f"{name}:\n" + "\n".join(lines) for name, lines in problems.items())


@pytest.mark.parametrize("sort", SORTS)
def test_postgresql_a_rare_word_is_found_through_the_gin_index(pg_index, sort):
    """A word in one prompt, with another filter (a search alone is held in memory, as on
    SQLite): looked up in the tsvector's GIN index, not checked job by job along the sort index."""
    with pg_index.connect() as conn:
        for _, listing in pages_to_check(conn, {"q": ["quokka"], "rated": ["false"]}, sort):
            plan = pg_plan_of(conn, compiled_sql(conn, listing))
            assert any("ix_jobs_search_tsv" in line for line in plan), "\n".join(plan)
            assert not any(PG_TABLE_SCAN.search(line) for line in plan), plan


def test_postgresql_a_list_of_ids_is_an_array_value_the_planner_can_hash(pg_index):
    """A new-user run: a filtered facet (the tags of its 2,000 sampled jobs) took 3-12 s on
    PostgreSQL now and then. The ids went as text cast to bigint[] in the statement, a cast the
    executor runs, not a value: the planner could not hash the list, so a sequential scan
    compared each row with every id (2,000,000 rows, 2,000 ids: 98 s; as a value 0.1 s). Sent as
    a bigint[] parameter, the plan compares with an array constant."""
    from sqlalchemy import func, select

    from learning_svc.index import db
    from learning_svc.index.tables import job_tags

    with pg_index.connect() as conn:
        ids = list(conn.scalars(select(job_tags.c.job).distinct().order_by(job_tags.c.job).limit(250)))
        statement = select(func.count()).select_from(job_tags).where(db.among(conn, job_tags.c.job, ids))
        assert conn.execute(statement).scalar_one() > 1000
        compiled = statement.compile(conn)
        conn.exec_driver_sql("SET enable_indexscan = off")  # the plan the slow facet had
        conn.exec_driver_sql("SET enable_bitmapscan = off")
        (plan,) = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params).scalar_one()

    def filters(node):
        if "Filter" in node:
            yield node["Filter"]
        for child in node.get("Plans", []):
            yield from filters(child)

    found = list(filters(plan["Plan"]))
    assert found and all(re.fullmatch(r"\(job = ANY \('\{[\d,]+\}'::bigint\[\]\)\)", f) for f in found), found


@pytest.mark.both_backends
@pytest.mark.parametrize("size", [3, 600, 40_000])
def test_a_list_of_job_ids_of_any_length_is_asked_in_one_statement(settings, size):
    """A filtered facet asks for the tags of its sampled jobs (LEARNING_SVC_FACET_SAMPLE, 2,000
    by default, unbounded): SQLite takes at most 32,766 bound values and refused 40,000; on
    PostgreSQL each bound value cost time to send. Long lists are one array parameter."""
    from sqlalchemy import func, select

    from learning_svc import records
    from learning_svc.index import db
    from learning_svc.index.tables import jobs

    from procs import job

    app = create_app(settings)
    service = app.extensions["learning_svc"]
    try:
        for i in range(3):
            service.record_job(records.parse(records.JobIn, job(f"among{i}")))
        with service.reader() as conn:
            if conn.dialect.name == "sqlite":  # SQLite's default limit (Debian builds it with 250,000)
                conn.connection.driver_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)
            ids = list(conn.scalars(select(jobs.c.id)))
            wanted = (ids + list(range(10**12, 10**12 + size)))[:size]
            count = conn.execute(
                select(func.count()).select_from(jobs).where(db.among(conn, jobs.c.id, wanted))
            ).scalar()
    finally:
        service.close()
    assert count == min(3, size)


FACETS = "/api/facets?status=completed"


@pytest.mark.both_backends
def test_every_statement_of_a_listing_is_compiled_once_and_then_cached(settings):
    """SQLAlchemy caches a statement's compiled SQL: a page of a held text search read its ids
    through a construct that turned the cache off, and every such page compiled its whole
    statement again (16-25 ms a page at 100,000 jobs instead of 5-8)."""
    import dataclasses

    from sqlalchemy import Engine, event

    from learning_svc import records

    from procs import job

    # hold any word at once; facets of a sample (a facet count read 2.2 million tag rows at
    # 100,000 jobs when its id list was a construct SQLite compared with `= 1`: 350 ms, not 20)
    held = dataclasses.replace(settings, text_fetch_up_to=1, text_background=False, facet_sample=3)
    app = create_app(held)
    service = app.extensions["learning_svc"]
    client = app.test_client()
    try:
        for i in range(5):
            service.record_job(records.parse(records.JobIn, job(f"cached{i}", prompt="misty forest")))
        for path in ("/api/jobs?q=misty", "/api/jobs?q=misty&sort=-rating", "/api/jobs?pack=none", FACETS):
            assert client.get(path).status_code == 200  # compiled and cached
        hits: list[tuple[str, str]] = []

        def cache_of(conn, cursor, statement, parameters, context, executemany):
            if context is not None and context.compiled is not None:
                hits.append((context.cache_hit.name, statement[:80]))

        event.listen(Engine, "before_cursor_execute", cache_of)
        try:
            for path in ("/api/jobs?q=misty", "/api/jobs?q=misty&sort=-rating", "/api/jobs?pack=none", FACETS):
                assert client.get(path).status_code == 200
        finally:
            event.remove(Engine, "before_cursor_execute", cache_of)
    finally:
        service.close()
    assert hits and [hit for hit in hits if hit[0] != "CACHE_HIT"] == []


def pg_scanned_rows(conn, sql: str) -> dict[str, int]:
    """The most rows any scan node of the plan returned in one loop, by node (EXPLAIN ANALYZE)."""
    (tree,) = conn.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)).scalar_one()
    found: dict[str, int] = {}

    def walk(node):
        if "Scan" in node["Node Type"]:
            name = f"{node['Node Type']} on {node.get('Index Name') or node.get('Relation Name')}"
            found[name] = max(found.get(name, 0), node["Actual Rows"])
        for child in node.get("Plans", []):
            walk(child)

    walk(tree["Plan"])
    return found


@pytest.mark.parametrize("sort", ("rating", "-rating"))
@pytest.mark.parametrize("name", ("rating_min", "rating_max", "rated_true", "rated_false"))
def test_postgresql_a_rating_sorted_page_after_a_cursor_reads_only_its_rows(pg_index, sort, name):
    """After a cursor in a rating order, the rest of the cursor's tie group is one seek of the
    sort's index that stops at the page's size. A rating filter written on the tie group (it is
    decided by the tie's key alone) had PostgreSQL guess that almost no row passes it, fetch the
    whole group through a bitmap and sort it: 5,719 rows for 51 at 1,000,000 jobs, 15 ms."""
    with pg_index.connect() as conn:
        (_, first), (_, after) = pages_to_check(conn, SINGLE_FILTERS[name], sort)
        assert after.page.after is not None
        scanned = pg_scanned_rows(conn, compiled_sql(conn, after))
        assert scanned and max(scanned.values()) <= after.page.limit + 1, scanned
