"""History queries over the real waitress server: posted over HTTP, read back page by page.

Checks what only a real server and a real HTTP client show: query strings with `+`,
brackets, backslashes and non-ASCII text; a streamed export; and a page walk that
keeps going while new jobs arrive.
"""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import requests

from learning_svc.index import text_search

from history_oracle import SORTS, TIE_AT, Oracle, dataset_records, journal_offsets, rating_events
from procs import listing_pages, over_http

SEED = 77


def post(url: str, record: dict) -> None:
    response = requests.post(
        url + "/api/jobs", data=orjson.dumps(record), headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 201, response.text


def apply_ratings(url: str, events) -> None:
    """Each job's events in order, different jobs at once."""
    by_job: dict[str, list] = {}
    for job_id, rating in events:
        by_job.setdefault(job_id, []).append(rating)

    def rate(item):
        job_id, ratings = item
        with requests.Session() as http:
            for rating in ratings:
                if rating is None:
                    response = http.delete(f"{url}/api/jobs/{job_id}/rating", timeout=30)
                else:
                    response = http.put(f"{url}/api/jobs/{job_id}/rating", json={"rating": rating}, timeout=30)
                assert response.status_code == 200, response.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(rate, by_job.items()))


def walk(http, url: str, params: dict, sort: str, limit: int, between_pages=None) -> list[str]:
    """The job ids of every page; between_pages(n, page) runs after page n, before the next is asked for."""
    found = []
    for n, page in enumerate(listing_pages(over_http(http, url), {**params, "sort": sort}, limit), start=1):
        found += [job["job_id"] for job in page]
        if between_pages:
            between_pages(n, page)
    return found


@pytest.fixture
def served(live_server):
    """A live server holding ~180 rated jobs, and the oracle for them."""
    records = dataset_records(100, SEED)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda record: post(live_server.url, record), records))
    events = rating_events(records, SEED)
    apply_ratings(live_server.url, events)
    oracle = Oracle.build(records, journal_offsets(live_server.settings.log_path), events)
    return live_server, oracle, records


def test_filters_sorts_facets_and_export_over_http(served):
    server, oracle, _ = served
    model = next(job.record["model"] for job in oracle.jobs if "[" in (job.record.get("model") or ""))
    cases = [
        {},
        {"sampler": ["DPM++ 2M", "dpm++ 2m sde"]},  # `+` must arrive as a plus, not a space
        {"model": [model]},  # brackets and backslashes
        {"q": "Café crème"},
        {"pack": ["extra pack"], "rated": "true"},
        {"since": str(TIE_AT), "until": str(TIE_AT)},
    ]
    for params in cases:
        assert oracle.select(params), params
        for sort in SORTS:
            assert walk(server.http, server.url, params, sort, 7) == oracle.listing(params, sort), (params, sort)
        facets = server.http.get(server.url + "/api/facets", params={**params, "facet_size": 1000}, timeout=30).json()
        expected = oracle.facets(params)
        for name, entries in facets["facets"].items():
            assert [(e["value"], e["count"]) for e in entries] == [(e["value"], e["count"]) for e in expected[name]], (
                params,
                name,
            )
        with server.http.get(
            server.url + "/api/export", params={**params, "format": "csv", "sort": "rating"}, stream=True, timeout=30
        ) as response:
            assert response.status_code == 200
            assert response.headers.get("Transfer-Encoding") == "chunked"
            rows = list(csv.reader(io.StringIO(b"".join(response.iter_content(4096)).decode())))
        assert [row[0] for row in rows[1:]] == oracle.listing(params, "rating")


def test_walk_while_new_jobs_arrive(served):
    """Jobs posted during a newest-first walk: none is repeated, none of the old ones is
    skipped, and a late job older than the current position still shows up."""
    server, oracle, records = served
    expected = oracle.listing({}, "-completed_at")
    newest, oldest = max(job.completed_at for job in oracle.jobs), min(job.completed_at for job in oracle.jobs)
    extra = [dict(records[i], job_id=f"late-{i}") for i in range(6)]
    arrived = []

    def post_more(pages_done, page):
        if pages_done == 3:
            position = oracle.by_id[page[-1]["job_id"]].completed_at
            times = (newest + 10, position, position, oldest - 10, oldest - 20, newest + 20)
            for record, completed_at in zip(extra, times):
                record.update(completed_at=completed_at, started_at=completed_at - 30)
                post(server.url, record)
            arrived.extend(zip(extra, times))

    walked = walk(server.http, server.url, {}, "-completed_at", 7, post_more)
    assert len(walked) == len(set(walked))
    assert [job_id for job_id in walked if not job_id.startswith("late-")] == expected
    late = {record["job_id"] for record, completed_at in arrived if completed_at < oldest}
    assert late <= set(walked)
    # Newer than the position (or tied with it but written later): already behind the walk.
    assert not {record["job_id"] for record, completed_at in arrived if completed_at >= oldest} & set(walked)


def test_held_word_stays_right_while_jobs_arrive_and_are_rated(live_server, monkeypatch):
    """A common word held in memory (index/text_search.py), searched over and over while 8
    clients post jobs with and without it and re-rate them: every answer lists only jobs
    with the word, in order, and once the writers stop every sort lists exactly them."""
    sets = text_search.MatchSets(fetch_up_to=3, merge_at=16)  # held in the background; many merges of the tails
    monkeypatch.setattr(live_server.app.extensions["learning_svc"], "match_sets", sets)
    url, base = live_server.url, 1_764_000_000.0
    # completed_at out of posting order, and many ties, so that jobs land all over each order
    bodies = [
        {
            "job_id": f"job-{i:03d}",
            "completed_at": base + (i * 37) % 50,
            "duration_sec": float(i % 9),
            "run_config": {"prompt": "a lighthouse at dusk" if i % 3 else "a castle"},
        }
        for i in range(240)
    ]
    with_word = {body["job_id"] for body in bodies if "lighthouse" in body["run_config"]["prompt"]}
    for body in bodies[:40]:
        post(url, body)

    def write(chunk: list[dict]) -> None:
        with requests.Session() as http:
            for n, body in enumerate(chunk):
                post(url, body)
                if n % 2:
                    job_id = chunk[n // 2]["job_id"]
                    assert http.put(f"{url}/api/jobs/{job_id}/rating", json={"rating": n % 6}, timeout=30).ok

    with ThreadPoolExecutor(8) as pool:
        writers = [pool.submit(write, bodies[40 + k :: 8]) for k in range(8)]
        while not all(w.done() for w in writers):
            for sort in SORTS:
                jobs = live_server.http.get(
                    url + "/api/jobs", params={"q": "lighthouse", "sort": sort, "limit": 500}, timeout=30
                ).json()["jobs"]
                listed = [job["job_id"] for job in jobs]
                assert set(listed) <= with_word and len(listed) == len(set(listed)), sort
                assert listed == [job["job_id"] for job in sorted_like(jobs, sort)], sort
        for w in writers:
            w.result()
    sets.wait_for_builds()
    everything = walk(live_server.http, url, {}, "-completed_at", 500)
    assert len(everything) == 240
    for sort in SORTS:
        all_jobs = live_server.http.get(url + "/api/jobs", params={"sort": sort, "limit": 500}, timeout=30).json()[
            "jobs"
        ]
        expected = [job["job_id"] for job in all_jobs if job["job_id"] in with_word]
        assert walk(live_server.http, url, {"q": "lighthouse"}, sort, 7) == expected, sort
    assert any(entry.ids for entry in sets.entries.values())  # it was held


def sorted_like(jobs: list[dict], sort: str) -> list[dict]:
    """Jobs in the listing's order, from their own fields (ties: later line first when descending)."""
    name, descending = sort.lstrip("-"), sort.startswith("-")

    def key(job):
        value = job[name]
        if name == "rating":
            value = (-1 if descending else 6) if value is None else value
        elif name == "duration_sec":
            value = -1 if value is None else value
        return value

    # ties keep the server's order (the line offset, which the client cannot see)
    return sorted(jobs, key=key, reverse=descending)
