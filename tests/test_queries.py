"""GET /api/jobs, /api/facets and /api/export against an independent oracle (SPEC §2, §2.1).

One history of ~900 realistic jobs (generated, plus a block sharing one completed_at,
unknown durations, differently written facet values, jobs without a model) is posted
through the app and rated (re-rated, cleared) once per module; every filter, sort, page
walk, facet and export is then compared with what the oracle computes from the input.
"""

from __future__ import annotations

import base64
import csv
import io
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pytest

from learning_svc import create_app
from learning_svc import params as query_params
from learning_svc.config import Settings
from learning_svc.index import text_search
from learning_svc.index.plan import Thresholds
from learning_svc.index.text_search import MatchSets

from history_oracle import (
    SORTS,
    TIE_AT,
    Oracle,
    dataset_records,
    journal_offsets,
    key_of,
    model_group,
    oracle_job,
    post_all,
    rate_all,
    rating_events,
    review_all,
    review_events,
)
from procs import JSON, in_app, listing_pages
from procs import job as small_job

SEED = 20261125
RECORDS = dataset_records(800, SEED)  # deterministic: the cases below pick values from it
CSV_COLUMNS = [
    "job_id",
    "status",
    "completed_at",
    "started_at",
    "duration_sec",
    "rating",
    "rated_at",
    "run_id",
    "variant_index",
    "variant_total",
    "model",
    "vae",
    "sampler",
    "scheduler",
    "steps",
    "cfg_scale",
    "seed",
    "width",
    "height",
    "pack",
    "model_group",
    "vae_group",
    "sampler_group",
    "scheduler_group",
    "lora",
    "embedding",
    "experiment",
    "variable",
    "variant",
    "generator",
    "lora_weights",
    "embedding_weights",
    "prompt",
    "negative_prompt",
    "num_outputs",
    "outputs",
    "error",
    "flag",
    "tag",
    "note",
    "scores",
    "image_rating",
]


@dataclass
class History:
    client: object
    oracle: Oracle
    settings: Settings
    service: object


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def history(request, tmp_path_factory):
    """The same history indexed in SQLite and in PostgreSQL: every case runs against both."""
    tmp = tmp_path_factory.mktemp("history")
    database_url = request.getfixturevalue("postgres").new_database() if request.param == "postgresql" else None
    settings = Settings(data_dir=tmp / "learning", output_root=tmp / "outputs", database_url=database_url)
    app = create_app(settings)
    post_all(app.test_client, RECORDS)
    events = rating_events(RECORDS, SEED)
    rate_all(app.test_client, events)
    reviews = review_events(RECORDS, SEED)
    review_all(app.test_client, reviews)
    oracle = Oracle.build(RECORDS, journal_offsets(settings.log_path), events, reviews)
    yield History(app.test_client(), oracle, settings, app.extensions["learning_svc"])
    app.extensions["learning_svc"].close()


# ---------------------------------------------------------------- the cases

INPUT_JOBS = [oracle_job(record, i) for i, record in enumerate(RECORDS)]


def _values_by_count(field_name: str) -> list[str]:
    """Raw values of a field in the input, most frequent key first (first spelling of each)."""
    counts, raw = Counter(), {}
    for job in INPUT_JOBS:
        for key, value in job.tags[field_name].items():
            counts[key] += 1
            raw.setdefault(key, value)
    return [raw[key] for key, _ in counts.most_common()]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _filter_cases() -> dict[str, tuple[dict, dict]]:
    """name -> (query parameters, the same for the oracle)."""
    cases: dict[str, dict | tuple] = {"none": {}}
    for name in ("pack", "model", "sampler", "scheduler", "lora", "embedding"):
        values = _values_by_count(name)
        cases[f"{name}_common"] = {name: [values[0]]}
        cases[f"{name}_rare"] = {name: [values[-1]]}
        cases[f"{name}_case"] = {name: [values[1].swapcase()]}
        cases[f"{name}_or"] = {name: [values[0], values[3], values[-1]]}
        cases[f"{name}_or_unknown"] = {name: [values[2], "no such value"]}
        cases[f"{name}_unknown"] = {name: ["no such value"]}
    for name in ("experiment", "variant"):  # learning experiments: one setting swept across variants
        values = [str(v) for v in _values_by_count(name)]
        cases[f"{name}_common"] = {name: [values[0]]}
        cases[f"{name}_rare"] = {name: [values[-1]]}
        cases[f"{name}_or"] = {name: [values[0], values[2], values[-1]]}
    variables = _values_by_count("variable")
    cases["variable_common"] = {"variable": [variables[0].upper()]}
    cases["variable_rare"] = {"variable": [variables[-1]]}
    vaes = _values_by_count("vae")  # few VAEs in use, as in real histories
    cases["vae_common"], cases["vae_rare"] = {"vae": [vaes[0]]}, {"vae": [vaes[-1]]}
    cases["vae_case"] = {"vae": [f"models/VAE/{vaes[-1].upper()}"]}
    cases["vae_unknown"] = {"vae": ["no such vae"]}
    for name in ("steps", "cfg_scale"):  # numbers: any spelling of the same value
        values = [str(v) for v in _values_by_count(name)]
        cases[f"{name}_common"] = {name: [values[0]]}
        cases[f"{name}_rare"] = {name: [values[-1]]}
        cases[f"{name}_or"] = {name: [values[0], values[3], values[-1]]}
        cases[f"{name}_float_spelling"] = {name: [f"{float(values[1]):.3f}"]}
        cases[f"{name}_unknown"] = {name: ["12345"]}
    model = model_group(_values_by_count("model")[0])
    cases["model_hash_suffix"] = {"model": [f"{model}.safetensors [dd08fa32f9]"]}
    cases["model_path_upper"] = {"model": [f"C:\\models\\{model.upper()}.ckpt"]}
    cases["sampler_plus_lower"] = {"sampler": ["dpm++ 2m"]}
    cases["pack_spaces"] = {"pack": ["  extra PACK "]}
    cases["empty_values_ignored"] = {"pack": [" "], "model": ["  "], "q": "  "}  # an empty one is a 400 (test_api)
    for status in ("completed", "failed", "cancelled"):
        cases[f"status_{status}"] = {"status": [status]}
    cases["status_upper"] = {"status": ["FAILED"]}
    cases["status_or"] = {"status": ["failed", "cancelled"]}
    for n in (0, 3, 5):
        cases[f"rating_min_{n}"] = {"rating_min": str(n)}
    for n in (0, 2, 5):
        cases[f"rating_max_{n}"] = {"rating_max": str(n)}
    cases["rating_2_to_4"] = {"rating_min": "2", "rating_max": "4"}
    cases["rating_min_above_max"] = {"rating_min": "4", "rating_max": "2"}
    cases["tag_common"] = {"tag": ["bad hands"]}  # review values (history_oracle.review_events)
    cases["tag_case"] = {"tag": ["GREAT LIGHT"]}
    cases["tag_or"] = {"tag": ["blurry", "wrong pose"]}
    cases["flag_pick"] = {"flag": ["pick"]}
    cases["flag_reject_upper"] = {"flag": ["REJECT"]}
    cases["image_rating_0"] = {"image_rating": ["0"]}
    cases["image_rating_min_4"] = {"image_rating_min": "4"}
    cases["image_rating_min_with_value"] = {"image_rating_min": "4", "image_rating": ["3", "5"]}
    cases["rated_true"] = {"rated": "true"}
    cases["rated_false"] = {"rated": "false"}
    cases["unrated_with_min"] = {"rated": "false", "rating_min": "1"}
    cases["rated_max_1"] = {"rated": "true", "rating_max": "1"}
    cases["since"] = {"since": str(TIE_AT)}
    cases["until"] = {"until": str(TIE_AT)}
    cases["tie_instant"] = {"since": str(TIE_AT), "until": str(TIE_AT)}
    cases["since_iso"] = ({"since": _iso(TIE_AT)}, {"since": str(TIE_AT)})
    cases["window_iso_offset"] = (
        {"since": "2025-11-24T17:10:00+01:00", "until": "2025-11-24T16:20:00"},
        {"since": str(1764000600.0), "until": str(1764001200.0)},
    )
    cases["since_future"] = ({"since": "2030-01-01T00:00:00Z"}, {"since": str(1893456000.0)})
    # A date alone is a whole UTC day: until runs to the end of it.
    cases["one_day"] = (
        {"since": "2025-11-24", "until": "2025-11-24"},
        {"since": str(1763942400.0), "until": str(1764028799.999)},
    )
    cases["until_day_before"] = ({"until": "2025-11-23"}, {"until": str(1763942399.999)})
    hex_id = next(r["job_id"] for r in RECORDS if "-" not in r["job_id"] and "_" not in r["job_id"])
    dashed_id = next(r["job_id"] for r in RECORDS if r["job_id"].count("-") == 4)
    learning_id = next(r["job_id"] for r in RECORDS if r["job_id"].startswith("learning_"))
    searches = {
        "word": "lighthouse",
        "prefix_upper": "LIGHT*",
        "word_part": "LIGHT",
        "two_words": "castle cliff",
        "folded": "madchen",
        "diacritics": "Mädchen",
        "accents_case": "cafe CRÈME",
        "cjk": "古い寺院と桜",
        "cjk_prefix": "古い寺*",
        "cjk_inside_token": "寺院",
        "emoji_only": "🌊",
        "word_and_emoji": "storm 🌊",
        "dash_only": "-",
        "word_and_dash": "castle -",
        "quote": '"quoted',
        "star": "castle*",
        "fts_keywords": "OR NOT",
        "fts_near": "NEAR(castle",
        "column_syntax": "a:b",
        "paren": "(masterpiece",
        "embedding_prefix": "easyneg*",
        "lora_keyword": "lora",
        "lyco": "lyco",
        "pack_phrase": "portrait_moody",
        "pack_and_word": "PORTRAIT_moody_01 castle",
        "pack_with_space": "extra pack",
        "nothing": "zzzqqq",
        "hex_id_prefix": hex_id[:7] + "*",
        "hex_id_part": hex_id[:7],
        "hex_id": hex_id,
        "dashed_id": dashed_id,
        "dashed_id_part": dashed_id.split("-")[2],
        "learning_id": learning_id,
        "learning_id_prefix": learning_id[:20] + "*",
        "extra_prefix": "extra-01*",
    }
    for name, q in searches.items():
        cases[f"q_{name}"] = {"q": q}
    lora, embedding = _values_by_count("lora"), _values_by_count("embedding")
    sampler, scheduler = _values_by_count("sampler"), _values_by_count("scheduler")
    cases["model_and_sampler"] = {"model": [model], "sampler": [sampler[0]]}
    cases["pack_lora_rated"] = {"pack": [_values_by_count("pack")[0]], "lora": [lora[1]], "rated": "true"}
    cases["lora_or_and_embedding"] = {"lora": [lora[0], lora[5]], "embedding": [embedding[2]], "status": ["completed"]}
    cases["scheduler_rating_window"] = {
        "scheduler": [scheduler[1].upper()],
        "rating_min": "3",
        "since": "1764000500",
        "until": "1764002000",
    }
    cases["model_q_min"] = {"model": [model], "q": "portrait", "rating_min": "4"}
    cases["everything"] = {
        "pack": [_values_by_count("pack")[0]],
        "model": [model],
        "sampler": [sampler[0], sampler[1]],
        "lora": [lora[0]],
        "embedding": [embedding[0]],
        "status": ["completed"],
        "rating_min": "1",
        "rated": "true",
        "until": "1764002000",
        "q": "masterpiece",
    }
    return {name: case if isinstance(case, tuple) else (case, case) for name, case in cases.items()}


CASES = _filter_cases()


def get_json(client, path: str, params: dict, status: int = 200):
    response = client.get(path, query_string=params)
    assert response.status_code == status, response.get_data(as_text=True)
    return orjson.loads(response.get_data())


def walk(client, params: dict, sort: str, limit: int) -> list[list[dict]]:
    """Every page of a listing, following next_cursor to the end."""
    return list(listing_pages(in_app(client), {**params, "sort": sort}, limit))


def ids(jobs: list[dict]) -> list[str]:
    return [job["job_id"] for job in jobs]


# ---------------------------------------------------------------- listing

# Filters whose SQL depends on the sort (driving tag, rating columns) run in every order;
# the many text searches and the rare or unknown values in the default order and one more.
EVERY_SORT = [name for name in CASES if not name.startswith("q_") and not name.endswith(("_rare", "unknown"))]
LISTINGS = [
    (case, sort)
    for case in CASES
    for sort in SORTS
    if case in EVERY_SORT or case in ("q_word", "q_cjk", "q_pack_and_word") or sort in SORTS[:2]
]


@pytest.mark.parametrize("case,sort", LISTINGS)
def test_listing_matches_oracle(history, case, sort):
    params, oracle_params = CASES[case]
    expected = history.oracle.listing(oracle_params, sort)
    got = [job for page in walk(history.client, params, sort, 500) for job in page]
    assert ids(got) == expected
    for job in got:
        assert job["rating"] == history.oracle.by_id[job["job_id"]].rating


@pytest.mark.parametrize("case,sort", [(c, s) for c, s in LISTINGS if c in EVERY_SORT or c.startswith("q_")])
def test_listing_matches_oracle_when_every_value_counts_as_common(history, case, sort, monkeypatch):
    """The per-job probe plan (used for values above probe_above jobs) gives the same listing."""
    monkeypatch.setattr(history.service, "thresholds", Thresholds(probe_above=0))
    params, oracle_params = CASES[case]
    got = [job for page in walk(history.client, params, sort, 13) for job in page]
    assert ids(got) == history.oracle.listing(oracle_params, sort)


# Text search plans by how many jobs match (index/text_search.py), forced on this small history.
TEXT_PLANS = {"fetch": {"fetch_up_to": 10**9}, "set": {"fetch_up_to": -1}, "probe": {"fetch_up_to": -1, "set_max": -1}}


def force_text_plan(monkeypatch, service, plan: str) -> MatchSets:
    """A service's held searches replaced by new ones (nothing held yet) that pick `plan`."""
    sets = MatchSets(background=False, **TEXT_PLANS[plan])
    monkeypatch.setattr(service, "match_sets", sets)
    return sets


@pytest.mark.parametrize("plan", TEXT_PLANS)
@pytest.mark.parametrize("case,sort", [(c, s) for c, s in LISTINGS if "q" in CASES[c][0]])
def test_text_search_plans_give_the_same_listing(history, case, sort, plan, monkeypatch):
    """Rare words are fetched and sorted, common ones checked against a set in memory, the
    commonest in FTS5 job by job: all three give the oracle's listing, page by page."""
    sets = force_text_plan(monkeypatch, history.service, plan)
    params, oracle_params = CASES[case]
    got = [job for page in walk(history.client, params, sort, 29) for job in page]
    assert ids(got) == history.oracle.listing(oracle_params, sort)
    held = {"set" if entry.ids is not None else "probe" for entry in sets.entries.values()}
    searched = query_params.parse(query_params.FilterParams, {"q": [params["q"]]}).q  # None: no letter or digit
    # PostgreSQL holds a search alone, a rare one too (its pages are bisections); with other
    # filters it searches its tsvector
    sqlite = history.service.read_engine.dialect.name == "sqlite"
    if searched is None or not (sqlite or set(params) == {"q"}):
        expected = set()
    elif plan == "fetch":
        expected = set() if sqlite else {"set"}
    else:
        expected = {plan}
    assert held == expected


@pytest.mark.parametrize("case", ("since", "until", "window_iso_offset", "tie_instant"))
@pytest.mark.parametrize("sort", ("-rating", "duration_sec"))
def test_wide_time_windows_give_the_same_listing(history, case, sort, monkeypatch):
    """A window counted as wide (over probe_above jobs) is checked per job instead of ranged."""
    monkeypatch.setattr(history.service, "thresholds", Thresholds(probe_above=0))
    params, oracle_params = CASES[case]
    got = [job for page in walk(history.client, params, sort, 17) for job in page]
    assert ids(got) == history.oracle.listing(oracle_params, sort)


def test_cases_are_not_trivial(history):
    """The cases exercise both small and large results, and the input has what they need."""
    sizes = {name: len(history.oracle.select(oracle)) for name, (_, oracle) in CASES.items()}
    total = len(history.oracle.jobs)
    assert sizes["none"] == sizes["empty_values_ignored"] == total == len(RECORDS)
    for name in (
        "pack_case",
        "model_case",
        "sampler_case",
        "lora_case",
        "pack_spaces",
        "model_hash_suffix",
        "model_path_upper",
        "sampler_plus_lower",
        "status_upper",
        "tie_instant",
        "window_iso_offset",
        "q_word",
        "q_folded",
        "q_diacritics",
        "q_accents_case",
        "q_cjk",
        "q_cjk_prefix",
        "q_cjk_inside_token",  # a word inside a CJK phrase: each CJK character is a token (it found nothing)
        "q_pack_phrase",
        "q_pack_with_space",
        "q_hex_id_prefix",
        "q_dashed_id_part",
        "q_learning_id_prefix",
        "everything",
    ):
        assert 0 < sizes[name] < total, name
    for name in (
        "pack_unknown",
        "rating_min_above_max",
        "unrated_with_min",
        "since_future",
        "q_nothing",
        "q_hex_id_part",
    ):  # a piece of a word is not a word; "piece*" is a prefix
        assert sizes[name] == 0, name
    assert sizes["q_prefix_upper"] > sizes["q_word_part"] > 0
    assert sizes["q_hex_id"] == sizes["q_dashed_id"] == 1
    assert sizes["tie_instant"] >= 36
    # Words without letters or digits are left out of the search.
    assert sizes["q_emoji_only"] == sizes["q_dash_only"] == total
    assert sizes["q_word_and_emoji"] == len(history.oracle.select({"q": "storm"})) > 0
    # Differently written values group with the generated ones.
    variants = [job for job in history.oracle.jobs if job.job_id.startswith("extra-") and job.record.get("model")]
    assert variants and {key for job in variants for key in job.tags["model"]} <= {
        key for job in history.oracle.jobs if not job.job_id.startswith("extra-") for key in job.tags["model"]
    }


def test_summaries_carry_the_record(history):
    """Each listed summary holds the fields of SPEC §2.1, resolved from the input record."""
    listed = [job for page in walk(history.client, {}, "-completed_at", 500) for job in page]
    fields = {
        "job_id",
        "status",
        "completed_at",
        "started_at",
        "duration_sec",
        "packs",
        "variant_index",
        "variant_total",
        "num_outputs",
        "outputs",
        "model",
        "sampler",
        "scheduler",
        "steps",
        "cfg_scale",
        "seed",
        "width",
        "height",
        "loras",
        "rating",
        "rated_at",
    }
    for summary in listed:
        assert fields <= set(summary)
        job = history.oracle.by_id[summary["job_id"]]
        record = job.record
        assert summary["completed_at"] == job.completed_at
        assert summary["duration_sec"] == job.duration
        assert summary["status"] == job.status
        assert summary["packs"] == record.get("packs", [])
        assert summary["outputs"] == record.get("outputs", []) and summary["num_outputs"] == len(summary["outputs"])
        assert summary["variant_index"] == record.get("variant_index", 0)
        assert [key.casefold() for key in summary["loras"]] == list(job.tags["lora"])
        model = record.get("model") or (record["run_config"].get("model") if record["run_config"] else None)
        assert summary["model"] == model
        assert summary["rating"] == job.rating
        assert (summary["rated_at"] is not None) == (job.rating is not None)


# ---------------------------------------------------------------- paging

PAGING_CASES = (
    "none",
    "tie_instant",
    "model_common",
    "model_case",
    "pack_or",
    "status_failed",
    "rated_true",
    "rated_false",
    "rating_2_to_4",
    "q_word",
    "lora_or_and_embedding",
    "since",
)


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("case", PAGING_CASES)
def test_paging_never_skips_or_repeats(history, case, sort):
    params, oracle_params = CASES[case]
    expected = history.oracle.listing(oracle_params, sort)
    pages = walk(history.client, params, sort, 7)
    assert [ids(page) for page in pages] == [expected[i : i + 7] for i in range(0, max(len(expected), 1), 7)]
    flat = [job_id for page in pages for job_id in ids(page)]
    assert len(flat) == len(set(flat))


def test_ties_are_broken_by_journal_offset(history):
    """36+ jobs share one completed_at: newest first means last written first, and back."""
    tied = [job for job in history.oracle.jobs if job.completed_at == TIE_AT]
    by_offset = [job.job_id for job in sorted(tied, key=lambda job: job.offset)]
    params = {"since": str(TIE_AT), "until": str(TIE_AT)}
    assert [ids(page) for page in walk(history.client, params, "completed_at", 5)] == [
        by_offset[i : i + 5] for i in range(0, len(by_offset), 5)
    ]
    newest_first = [job_id for page in walk(history.client, params, "-completed_at", 5) for job_id in ids(page)]
    assert newest_first == by_offset[::-1]


def test_unknown_duration_sorts_as_minus_one(history):
    listed = [job for page in walk(history.client, {}, "duration_sec", 500) for job in page]
    unknown = [job for job in listed if job["duration_sec"] is None]
    assert unknown and listed[: len(unknown)] == unknown  # -1 comes before 0.0
    assert listed[len(unknown)]["duration_sec"] == 0.0
    descending = [job for page in walk(history.client, {}, "-duration_sec", 500) for job in page]
    assert descending[-len(unknown) :] == unknown[::-1]


def test_unrated_sort_last_in_both_directions(history):
    for sort in ("-rating", "rating"):
        ratings = [job["rating"] for page in walk(history.client, {}, sort, 500) for job in page]
        first_unrated = ratings.index(None)
        assert all(r is None for r in ratings[first_unrated:])
        rated = ratings[:first_unrated]
        assert rated == sorted(rated, reverse=sort == "-rating") and len(set(rated)) == 6


def test_cursor_is_opaque_and_keyset(history):
    """A cursor carries the sort, the last key and id (no offset); it works with the same sort only."""
    body = get_json(history.client, "/api/jobs", {"limit": "3", "sort": "-rating"})
    raw = orjson.loads(base64.urlsafe_b64decode(body["next_cursor"] + "=" * (-len(body["next_cursor"]) % 4)))
    last = history.oracle.by_id[body["jobs"][-1]["job_id"]]
    assert raw == ["-rating", last.sort_key("-rating"), last.offset]
    error = get_json(history.client, "/api/jobs", {"limit": "3", "sort": "rating", "cursor": body["next_cursor"]}, 400)
    assert error["error"]["fields"][0]["loc"] == "cursor"


# ---------------------------------------------------------------- facets


def assert_facets_equal(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for name in expected:
        assert [(e["value"], e["count"]) for e in got[name]] == [(e["value"], e["count"]) for e in expected[name]], name
        for g, e in zip(got[name], expected[name]):
            assert g["mean_rating"] == (None if e["mean_rating"] is None else pytest.approx(e["mean_rating"], abs=1e-4))


@pytest.mark.parametrize("case", CASES)
def test_facets_match_oracle(history, case):
    params, oracle_params = CASES[case]
    got = get_json(history.client, "/api/facets", {**params, "facet_size": "1000"})["facets"]
    assert_facets_equal(got, history.oracle.facets(oracle_params))


@pytest.mark.parametrize("case", ("rated_true", "status_completed", "lora_or", "q_word", "rating_2_to_4"))
def test_broad_filtered_facets_count_the_newest_matching_jobs(history, case, monkeypatch):
    monkeypatch.setattr(history.service, "thresholds", Thresholds(facet_sample=40))
    params, oracle_params = CASES[case]
    matching = len(history.oracle.listing(oracle_params, "-completed_at"))
    body = get_json(history.client, "/api/facets", {**params, "facet_size": "1000"})
    if matching > 40:
        assert body["sampled"] == {"jobs": 40, "order": "-completed_at"}
        assert_facets_equal(body["facets"], history.oracle.facets(oracle_params, newest=40))
        assert sum(e["count"] for e in body["facets"]["rating"]) == 40
    else:
        assert body["sampled"] is None
        assert_facets_equal(body["facets"], history.oracle.facets(oracle_params))


def test_facets_are_exact_up_to_the_sample_size(history):
    params, oracle_params = CASES["status_completed"]
    body = get_json(history.client, "/api/facets", {**params, "facet_size": "1000"})
    assert body["sampled"] is None and len(history.oracle.listing(oracle_params, "-completed_at")) > 500
    assert_facets_equal(body["facets"], history.oracle.facets(oracle_params))


@pytest.mark.parametrize("case", ("none", "rated_true", "status_completed"))
def test_facets_keep_the_most_frequent(history, case):
    params, oracle_params = CASES[case]
    got = get_json(history.client, "/api/facets", params)["facets"]  # default size 50
    assert_facets_equal(got, history.oracle.facets(oracle_params, size=50))
    assert len(got["lora"]) == 50 < len(history.oracle.facets(oracle_params)["lora"])


def test_facet_values_filter_back_to_their_counts(history):
    """A facet value, used as a filter, lists exactly `count` jobs (both paths of the facet query)."""
    for params in ({}, {"rated": "true"}):
        facets = get_json(history.client, "/api/facets", {**params, "facet_size": "1000"})["facets"]
        for name, entries in facets.items():
            for entry in entries[:3] + entries[-2:]:
                if name == "rating":
                    query = (
                        {"rated": "false"}
                        if entry["value"] is None
                        else {"rating_min": str(entry["value"]), "rating_max": str(entry["value"])}
                    )
                else:
                    query = {name: entry["value"]}
                listed = sum(len(page) for page in walk(history.client, {**params, **query}, "-completed_at", 500))
                assert listed == entry["count"], (name, entry)


# ---------------------------------------------------------------- export


def stored_lines(history) -> dict[str, dict]:
    lines = history.settings.log_path.read_bytes().splitlines()
    return {line["job_id"]: line for line in map(orjson.loads, lines)}


@pytest.mark.parametrize("case", ("none", "model_case", "lora_or", "rating_2_to_4", "q_pack_phrase", "everything"))
def test_export_jsonl_is_stored_records_with_ratings(history, case):
    params, oracle_params = CASES[case]
    stored = stored_lines(history)
    for sort in ("-completed_at", "rating"):
        response = history.client.get("/api/export", query_string={**params, "format": "jsonl", "sort": sort})
        assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
        assert response.is_streamed
        rows = [orjson.loads(line) for line in response.get_data().splitlines()]
        assert [row["job_id"] for row in rows] == history.oracle.listing(oracle_params, sort)
        for row in rows:
            job = history.oracle.by_id[row["job_id"]]
            service_view = row.pop("learning_svc")  # the stored line is exported as stored, nothing overwritten
            assert row == stored[job.job_id]
            rating, rated_at = service_view["rating"], service_view["rated_at"]
            assert rating == job.rating and (rated_at is not None) == (job.rating is not None)
            assert row["run_config"] == job.record["run_config"] and row["packs"] == job.record.get("packs", [])


@pytest.mark.parametrize("case", ("none", "pack_or", "rated_false", "q_diacritics", "pack_unknown"))
def test_export_csv_rows_and_columns(history, case):
    params, oracle_params = CASES[case]
    response = history.client.get("/api/export", query_string={**params, "format": "csv"})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="learning_export.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == CSV_COLUMNS
    expected = history.oracle.listing(oracle_params)
    assert len(rows) - 1 == len(expected)
    assert all(len(row) == len(CSV_COLUMNS) for row in rows)
    assert [row[0] for row in rows[1:]] == expected
    ratings = [row[CSV_COLUMNS.index("rating")] for row in rows[1:]]
    assert ratings == [
        "" if history.oracle.by_id[j].rating is None else str(history.oracle.by_id[j].rating) for j in expected
    ]
    stored = stored_lines(history)
    column = {name: i for i, name in enumerate(CSV_COLUMNS)}
    for row in rows[1:]:
        line, job = stored[row[0]], history.oracle.by_id[row[0]]
        assert row[column["completed_at"]] == _iso_ms(line["completed_at"])  # UTC, not epoch floats
        assert row[column["prompt"]] == (line["prompt"] or "") and row[column["seed"]] == _cell(line["seed"])
        assert row[column["lora_weights"]] == "|".join(f"{x['name']}:{x['weight']:g}" for x in line["loras"])
        # grouped values, each in this job's own spelling
        assert row[column["model_group"]].casefold() == (key_of("model", line["model"]) if line["model"] else "")
        assert {v.casefold() for v in row[column["lora"]].split("|") if v} == set(job.tags["lora"])


def _iso_ms(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cell(value) -> str:
    return "" if value is None else str(value)


# ---------------------------------------------------------------- bad parameters


def _cursor(*items) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(items))).decode().rstrip("=")


BAD = [
    ("bogus", "1"),
    ("Model", "x"),
    ("sort", "newest"),
    ("sort", "-duration"),
    ("limit", "0"),
    ("limit", "501"),
    ("limit", "ten"),
    ("limit", "2.5"),
    ("rating_min", "6"),
    ("rating_min", "-1"),
    ("rating_min", "four"),
    ("rating_max", "3.5"),
    ("rated", "yes"),
    ("rated", "1"),
    ("status", "done"),
    ("since", "yesterday"),
    ("until", "2025-13-01"),
    ("since", "nan"),
    ("until", "1e20"),
    ("q", "x" * 501),
    ("q", "castle a*"),
    ("q", "ma*"),
    ("q", "-é*"),
    ("cursor", "not-a-cursor"),
    ("cursor", _cursor("-completed_at", "1", 5)),
    ("cursor", _cursor("-completed_at", 1.5, 10**19)),
    ("cursor", _cursor("-completed_at", 10**19, 5)),
    ("cursor", _cursor("-completed_at", 1.5, True)),
    ("cursor", _cursor("-rating", 3, 5)),
    ("cursor", base64.urlsafe_b64encode(b'{"a":1,"b":2,"c":3}').decode()),
]


@pytest.mark.parametrize("name,value", BAD, ids=[f"{n}={v[:12]}" for n, v in BAD])
def test_bad_listing_parameter_is_400_naming_it(history, name, value):
    body = get_json(history.client, "/api/jobs", {name: value}, 400)
    error = body["error"]
    assert error["code"] == "invalid_parameter"
    assert error["fields"] == [{"loc": name, "msg": error["fields"][0]["msg"]}]
    assert error["message"].startswith(f"{name}: ")


@pytest.mark.parametrize(
    "path,params,name",
    [
        ("/api/jobs", {"limit": ["5", "6"]}, "limit"),
        ("/api/jobs", {"q": ["a", "b"]}, "q"),
        ("/api/facets", {"bogus": "1"}, "bogus"),
        ("/api/facets", {"limit": "5"}, "limit"),
        ("/api/facets", {"rating_max": "9"}, "rating_max"),
        ("/api/facets", {"facet_size": "0"}, "facet_size"),
        ("/api/export", {"format": "xml"}, "format"),
        ("/api/export", {"format": "csv", "bogus": "1"}, "bogus"),
        ("/api/export", {"sort": "size"}, "sort"),
        ("/api/export", {"status": "running"}, "status"),
        ("/api/export", {"cursor": "abc"}, "cursor"),
    ],
)
def test_bad_parameters_on_every_endpoint(history, path, params, name):
    body = get_json(history.client, path, params, 400)
    assert body["error"]["fields"][0]["loc"] == name and body["error"]["message"].startswith(f"{name}: ")


@pytest.mark.parametrize("sort", SORTS)
def test_common_words_are_held_in_the_background(history, sort, monkeypatch):
    """The first search of a common word fetches and sorts its matches while they are held in a
    thread; the searches after it use them. Both give the oracle's listing."""
    sets = MatchSets(fetch_up_to=-1)  # held in a background thread
    monkeypatch.setattr(history.service, "match_sets", sets)
    params, oracle_params = CASES["q_two_words"]
    expected = history.oracle.listing(oracle_params, sort)
    assert len(expected) > 31
    assert ids([job for page in walk(history.client, params, sort, 31) for job in page]) == expected
    sets.wait_for_builds()
    (held,) = sets.entries.values()  # PostgreSQL too: a search alone
    assert held.ids and set(held.orders) == set(text_search.ORDERS)
    assert ids([job for page in walk(history.client, params, sort, 31) for job in page]) == expected


def test_a_held_match_set_takes_in_jobs_recorded_after_it(client, monkeypatch):
    """A common word's matches are held in memory, also sorted by time and duration; jobs
    recorded later, even with an older completed_at, are added in place, not missed."""
    sets = force_text_plan(monkeypatch, client.application.extensions["learning_svc"], "set")
    t0 = 1_764_000_000.0

    def post(job_id: str, prompt: str, at: float, duration: float) -> None:
        body = small_job(job_id, run_config={"prompt": prompt}, completed_at=at, duration_sec=duration)
        assert client.post("/api/jobs", data=orjson.dumps(body), headers=JSON).status_code == 201

    def found(q: str, sort: str = "-completed_at") -> list[str]:
        return ids(get_json(client, "/api/jobs", {"q": q, "sort": sort})["jobs"])

    post("a", "lighthouse at dusk", t0, 9)
    post("b", "harbour at dawn", t0 + 1, 1)
    sorts = ("-completed_at", "completed_at", "-duration_sec", "duration_sec", "-rating", "rating")
    assert [found("lighthouse", sort) for sort in sorts] == [["a"]] * 6
    (held,) = sets.entries.values()
    assert set(held.orders) == set(text_search.ORDERS)
    post("c", "a lighthouse in fog", t0 - 100, 4)  # recorded late: older than a
    post("d", "castle", t0 + 2, 2)
    post("e", "lighthouse", t0 + 50, 30)
    assert found("lighthouse") == ["e", "a", "c"]
    assert found("lighthouse", "completed_at") == ["c", "a", "e"]
    assert found("lighthouse", "-duration_sec") == ["e", "a", "c"]
    assert found("lighthouse", "duration_sec") == ["c", "a", "e"]
    assert found("lighthouse fog") == ["c"]
    assert sets.entries[held.key] is held  # extended in place, not built again
    assert [key for key, _ in held.orders["completed_at"].current()] == [t0 - 100, t0, t0 + 50]

    def rate(job_id: str, rating: int | None) -> None:
        url = f"/api/jobs/{job_id}/rating"
        response = (
            client.delete(url)
            if rating is None
            else client.put(url, data=orjson.dumps({"rating": rating}), headers=JSON)
        )
        assert response.status_code == 200, response.get_data(as_text=True)

    rate("c", 5)
    rate("a", 2)
    rate("b", 5)  # not a match
    assert found("lighthouse", "-rating") == ["c", "a", "e"]  # unrated last
    assert found("lighthouse", "rating") == ["a", "c", "e"]
    rate("c", None)
    rate("e", 0)
    rate("a", 4)
    assert found("lighthouse", "-rating") == ["a", "e", "c"]
    assert found("lighthouse", "rating") == ["e", "a", "c"]
    assert [key for key, _ in held.orders["rating_hi"].current()] == [-1, 0, 4]  # moved as the ratings came


def test_a_held_match_set_follows_amended_prompts_and_times(client, monkeypatch):
    """An outside run asked: held searches were said to need no invalidation, "a job's text, time
    and duration never change", but an amendment (PATCH) changes them. It renews the index
    generation, so the word is held anew: a job amended out of its matches is not found, one
    amended into them is, one given another time is in its new place."""
    sets = force_text_plan(monkeypatch, client.application.extensions["learning_svc"], "set")
    t0 = 1_764_000_000.0

    def post(job_id: str, prompt: str, at: float, duration: float) -> None:
        body = small_job(job_id, run_config={"prompt": prompt}, completed_at=at, duration_sec=duration)
        assert client.post("/api/jobs", data=orjson.dumps(body), headers=JSON).status_code == 201

    def amend(job_id: str, changes: dict) -> None:
        url = f"/api/jobs/{job_id}?replace=true"
        response = client.patch(url, data=orjson.dumps(changes), headers=JSON)
        assert response.status_code == 200, response.get_data(as_text=True)

    def found(q: str, sort: str = "-completed_at") -> list[str]:
        return ids(get_json(client, "/api/jobs", {"q": q, "sort": sort})["jobs"])

    post("a", "lighthouse at dusk", t0, 9)
    post("b", "harbour at dawn", t0 + 1, 1)
    post("c", "a lighthouse in fog", t0 + 2, 4)
    assert found("lighthouse") == ["c", "a"]
    (held,) = sets.entries.values()
    amend("a", {"prompt": "castle at dusk"})
    amend("b", {"prompt": "lighthouse by the harbour"})
    amend("c", {"completed_at": t0 - 50, "duration_sec": 40})
    assert found("lighthouse") == ["b", "c"]
    assert found("lighthouse", "completed_at") == ["c", "b"]
    assert found("lighthouse", "-duration_sec") == ["c", "b"]
    assert found("lighthouse", "duration_sec") == ["b", "c"]
    assert found("lighthouse harbour") == ["b"]
    (now,) = [entry for key, entry in sets.entries.items() if key[1] == held.key[1] and key != held.key]
    assert [key for key, _ in now.orders["completed_at"].current()] == [t0 - 50, t0 + 1]
    amend("b", {"prompt": "harbour at dawn"})  # out again, and its place in the tail with it
    assert found("lighthouse", "duration_sec") == ["c"]


def test_match_sets_stay_within_their_memory_budget(client, monkeypatch):
    sets = force_text_plan(monkeypatch, client.application.extensions["learning_svc"], "set")
    for i in range(30):
        body = small_job(f"job-{i}", run_config={"prompt": f"word{i % 3} common"})
        assert client.post("/api/jobs", data=orjson.dumps(body), headers=JSON).status_code == 201
    used_order = ['"word0"', '"word1"', '"word2"', '"common"']
    for q in ("word0", "word1", "word2", "common"):
        assert len(get_json(client, "/api/jobs", {"q": q})["jobs"]) == (30 if q == "common" else 10)
    sizes = [entry.size for entry in sets.entries.values()]
    assert [q for _, q in sets.entries] == used_order and all(sizes) and sets.used == sum(sizes)
    sets.budget = sets.used - 1  # the next new set pushes out the least recently used ones
    assert len(get_json(client, "/api/jobs", {"q": "word0 common"})["jobs"]) == 10
    kept = [q for _, q in sets.entries]
    assert kept[-1] == '"word0" "common"' and '"word0"' not in kept
    assert kept[:-1] == used_order[len(used_order) - len(kept) + 1 :]  # the most recently used survive
    assert sets.used == sum(entry.size for entry in sets.entries.values()) <= sets.budget
