"""Reviewing beyond the job's rating (reviews.py): image ratings, flags, tags, notes,
sub-scores, and batches of them with undo; all append-only events in the ratings JSONL."""

from __future__ import annotations

import orjson
import pytest

from learning_svc import journal

from conftest import JSON

JOBS = [
    {"job_id": "a", "completed_at": 1764000000, "packs": ["p1"], "outputs": ["a0.png", "a1.png", "a2.png"]},
    {"job_id": "b", "completed_at": 1764000100, "packs": ["p1"], "outputs": ["b0.png"]},
    {"job_id": "c", "completed_at": 1764000200, "packs": ["p2"], "outputs": []},
]


@pytest.fixture
def jobs(client):
    for job in JOBS:
        assert client.post("/api/jobs", data=orjson.dumps(job), headers=JSON).status_code == 201
    return client


def lines(settings) -> list[dict]:
    path = settings.ratings_path
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def summary(client, job_id: str) -> dict:
    return client.get(f"/api/jobs/{job_id}").get_json()["summary"]


def review(client, job_id: str, body: dict):
    return client.post(f"/api/jobs/{job_id}/review", json=body)


def ids(client, query: str) -> list[str]:
    return [job["job_id"] for job in client.get(f"/api/jobs?{query}").get_json()["jobs"]]


def assert_error(response, status: int) -> dict:
    assert response.status_code == status, response.data
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["message"]
    return body["error"]


# ---------------------------------------------------------------- one job


def test_an_image_rating_is_an_event_with_its_output_and_leaves_the_jobs_rating(jobs, settings):
    assert jobs.put("/api/jobs/a/rating", json={"rating": 2}).status_code == 200
    response = jobs.put("/api/jobs/a/outputs/2/rating", json={"rating": 5, "source": "web"})
    assert response.status_code == 200
    assert response.get_json()["previous"] == {"rating": None}
    event = lines(settings)[-1]
    assert event["schema"] == "learning_review_v1"
    assert (event["job_id"], event["output"], event["set"], event["source"]) == ("a", 2, {"rating": 5}, "web")
    assert summary(jobs, "a")["image_ratings"] == {"2": 5}
    assert summary(jobs, "a")["rating"] == 2

    assert jobs.put("/api/jobs/a/outputs/2/rating", json={"rating": 5}).get_json()["changed"] == []
    assert len(lines(settings)) == 2  # the same rating again: nothing written
    assert jobs.delete("/api/jobs/a/outputs/2/rating").status_code == 200
    assert summary(jobs, "a")["image_ratings"] == {}
    assert lines(settings)[-1]["set"] == {"rating": None}


def test_stars_given_as_a_whole_float_are_taken_as_the_integer(jobs, settings):
    """A pipeline's stars computed as floats (3.0) were refused everywhere, while a record's 30.0
    steps is 30: `LearningClient.rate(job, 3.0)` logged an error and the rating was lost."""
    assert jobs.put("/api/jobs/a/rating", data=b'{"rating": 3.0}', headers=JSON).get_json()["rating"] == 3
    assert jobs.put("/api/jobs/a/outputs/1/rating", data=b'{"rating": 4.0}', headers=JSON).status_code == 200
    body = b'{"scores": {"anatomy": 2.0}}'
    assert jobs.post("/api/jobs/a/review", data=body, headers=JSON).status_code == 200
    got = summary(jobs, "a")
    assert (got["rating"], got["image_ratings"], got["scores"]) == (3, {"1": 4}, {"anatomy": 2})
    assert [type(value) for value in (got["rating"], got["image_ratings"]["1"], got["scores"]["anatomy"])] == [int] * 3
    stored = orjson.loads(settings.ratings_path.read_bytes().splitlines()[0])
    assert stored["rating"] == 3 and isinstance(stored["rating"], int)
    for bad in (b'{"rating": 4.5}', b'{"rating": true}', b'{"rating": "4"}', b'{"rating": 5.000001}'):
        assert_error(jobs.put("/api/jobs/a/rating", data=bad, headers=JSON), 400)
        assert_error(jobs.put("/api/jobs/a/outputs/1/rating", data=bad, headers=JSON), 400)


def test_an_image_a_job_does_not_have_is_404_and_writes_nothing(jobs, settings):
    assert_error(jobs.put("/api/jobs/b/outputs/1/rating", json={"rating": 3}), 404)
    assert_error(jobs.put("/api/jobs/c/outputs/0/rating", json={"rating": 3}), 404)
    assert_error(jobs.put("/api/jobs/nope/outputs/0/rating", json={"rating": 3}), 404)
    assert lines(settings) == []


def test_an_amendment_that_would_leave_image_ratings_without_their_images_is_409(jobs, settings):
    """Amending `outputs` to fewer images left the ratings of the images gone: listed, filtered
    on, shown on a card of one image as "#2", and impossible to clear (that image was a 404)."""
    assert jobs.put("/api/jobs/a/outputs/2/rating", json={"rating": 1}).status_code == 200
    assert jobs.put("/api/jobs/a/outputs/0/rating", json={"rating": 4}).status_code == 200
    size = settings.log_path.stat().st_size
    response = jobs.patch("/api/jobs/a?replace=true", json={"outputs": ["a0.png"]})
    error = assert_error(response, 409)
    assert "output 2" in error["message"] and "DELETE /api/jobs/a/outputs/2/rating" in error["message"]
    assert settings.log_path.stat().st_size == size
    assert summary(jobs, "a")["num_outputs"] == 3

    assert jobs.delete("/api/jobs/a/outputs/2/rating").status_code == 200
    response = jobs.patch("/api/jobs/a?replace=true", json={"outputs": ["a0.png"]})
    assert response.status_code == 200, response.data
    assert summary(jobs, "a")["image_ratings"] == {"0": 4}  # the image still there keeps its rating


def test_a_rating_left_without_its_image_by_an_older_version_can_be_cleared(jobs, monkeypatch):
    from learning_svc import service

    assert jobs.put("/api/jobs/a/outputs/2/rating", json={"rating": 1}).status_code == 200
    with monkeypatch.context() as older:  # the amendment as versions before the check made it
        older.setattr(service, "_rated_images_beyond", lambda review, outputs: [])
        assert jobs.patch("/api/jobs/a?replace=true", json={"outputs": ["a0.png"]}).status_code == 200
    assert summary(jobs, "a")["image_ratings"] == {"2": 1}
    assert_error(jobs.put("/api/jobs/a/outputs/2/rating", json={"rating": 3}), 404)  # no new rating of it
    assert jobs.delete("/api/jobs/a/outputs/2/rating").status_code == 200
    assert summary(jobs, "a")["image_ratings"] == {}
    assert_error(jobs.delete("/api/jobs/a/outputs/2/rating"), 404)


def test_flags_tags_notes_and_scores_latest_wins_history_kept(jobs, settings):
    assert review(jobs, "a", {"flag": "pick", "tags": ["bad hands", " Blurry  "], "source": "web"}).status_code == 200
    result = review(jobs, "a", {"tags_add": ["BAD HANDS", "oversaturated"], "tags_remove": ["blurry"]}).get_json()
    # what undoes it: the tag removed back, the one added out (not the whole list, test below)
    assert result["previous"] == {"tags_add": ["Blurry"], "tags_remove": ["oversaturated"]}
    assert result["expect"] == {}
    review(jobs, "a", {"note": "hands again", "scores": {"anatomy": 1, "composition": 4}})
    review(jobs, "a", {"flag": "reject", "scores": {"composition": None}})
    job = summary(jobs, "a")
    assert job["flag"] == "reject"
    assert job["tags"] == ["bad hands", "oversaturated"]
    assert job["note"] == "hands again"
    assert job["scores"] == {"anatomy": 1}
    detail = jobs.get("/api/jobs/a").get_json()
    assert [event["set"] for event in detail["review_history"]] == [
        {"flag": "pick", "tags": ["bad hands", "Blurry"]},
        {"tags": ["bad hands", "oversaturated"]},
        {"note": "hands again", "scores": {"anatomy": 1, "composition": 4}},
        {"flag": "reject", "scores": {"composition": None}},
    ]
    assert detail["review"] == {"flag": "reject", "tags": ["bad hands", "oversaturated"], "note": "hands again",
                                "scores": {"anatomy": 1}}  # fmt: skip
    assert len(lines(settings)) == 4
    assert review(jobs, "a", {"flag": "reject", "tags": ["Bad Hands", "oversaturated"]}).get_json()["changed"] == [
        "tags"  # another spelling is another value shown, the same tag matched
    ]
    assert review(jobs, "a", {"note": "", "flag": None}).status_code == 200
    assert summary(jobs, "a")["note"] is None and summary(jobs, "a")["flag"] is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"source": "web"},
        {"flag": "maybe"},
        {"rating": 4},
        {"tags": "bad hands"},
        {"tags": ["ok", ""]},
        {"tags": ["x" * 49]},
        {"tags": [f"t{i}" for i in range(33)]},
        {"tags": ["a"], "tags_add": ["b"]},
        {"tags": None},
        {"scores": {"hands": 3}},
        {"scores": {"anatomy": 6}},
        {"scores": {"anatomy": "3"}},
        {"note": "n" * 4001},
        {"flag": "pick", "extra": 1},
    ],
)
def test_bad_reviews_are_400_and_write_nothing(jobs, settings, body):
    assert_error(review(jobs, "a", body), 400)
    assert lines(settings) == []


def test_a_review_of_an_unknown_job_is_404(jobs, settings):
    assert_error(review(jobs, "nope", {"flag": "pick"}), 404)
    assert lines(settings) == []


# ---------------------------------------------------------------- filters and facets


def test_tags_flags_and_image_ratings_filter_and_facet_with_mean_rating(jobs):
    review(jobs, "a", {"flag": "pick", "tags": ["bad hands"]})
    review(jobs, "b", {"tags": ["Bad Hands", "blurry"]})
    jobs.put("/api/jobs/a/rating", json={"rating": 4})
    jobs.put("/api/jobs/b/rating", json={"rating": 2})
    jobs.put("/api/jobs/a/outputs/0/rating", json={"rating": 5})
    jobs.put("/api/jobs/b/outputs/0/rating", json={"rating": 0})
    assert ids(jobs, "tag=BAD%20HANDS") == ["b", "a"]
    assert ids(jobs, "tag=%20bad%20%20hands%09") == ["b", "a"]  # spaces as a tag is stored: collapsed
    assert ids(jobs, "tag=blurry&tag=nothing") == ["b"]
    assert ids(jobs, "flag=pick") == ["a"]
    assert ids(jobs, "image_rating_min=4") == ["a"]
    assert ids(jobs, "image_rating_min=0") == ["b", "a"]
    assert ids(jobs, "image_rating=0") == ["b"]
    assert ids(jobs, "tag=bad%20hands&rating_min=3") == ["a"]
    assert_error(jobs.get("/api/jobs?flag=maybe"), 400)

    facets = jobs.get("/api/facets").get_json()["facets"]
    assert facets["tag"] == [
        {"value": "bad hands", "count": 2, "mean_rating": 3.0},
        {"value": "blurry", "count": 1, "mean_rating": 2.0},
    ]
    assert facets["flag"] == [{"value": "pick", "count": 1, "mean_rating": 4.0}]
    assert {f["value"]: f["count"] for f in facets["image_rating"]} == {"5": 1, "0": 1}

    review(jobs, "b", {"tags": []})  # counts move when a tag goes
    facets = jobs.get("/api/facets").get_json()["facets"]
    assert [(f["value"], f["count"]) for f in facets["tag"]] == [("bad hands", 1)]
    filtered = jobs.get("/api/facets?pack=p1&tag=bad%20hands").get_json()["facets"]
    assert [(f["value"], f["count"]) for f in filtered["flag"]] == [("pick", 1)]


def test_an_amended_job_keeps_its_review(jobs):
    review(jobs, "a", {"flag": "pick", "tags": ["keeper"]})
    response = jobs.patch("/api/jobs/a?replace=true", json={"packs": ["p9"], "completed_at": 1764009999})
    assert response.status_code == 200, response.data
    assert response.get_json()["summary"]["tags"] == ["keeper"]
    assert ids(jobs, "tag=keeper") == ["a"]
    assert ids(jobs, "tag=keeper&since=1764009000") == ["a"]  # its rows moved with its new time
    assert ids(jobs, "pack=p9&flag=pick") == ["a"]


def test_the_change_feed_carries_reviews(jobs):
    start = jobs.get("/api/changes").get_json()["next"]
    review(jobs, "b", {"flag": "reject"})
    changes = jobs.get(f"/api/changes?after={start}").get_json()
    assert [(job["job_id"], job["flag"]) for job in changes["rated"]] == [("b", "reject")]


def test_export_carries_the_review(jobs):
    review(jobs, "a", {"flag": "pick", "tags": ["bad hands", "blurry"], "note": "one, two"})
    jobs.put("/api/jobs/a/outputs/1/rating", json={"rating": 4})
    exported = [orjson.loads(line) for line in jobs.get("/api/export?format=jsonl").data.splitlines()]
    by_id = {line["job_id"]: line["learning_svc"] for line in exported}
    assert by_id["a"]["review"] == {
        "flag": "pick",
        "tags": ["bad hands", "blurry"],
        "note": "one, two",
        "image_ratings": {"1": 4},
    }
    assert "review" not in by_id["b"]
    csv_text = jobs.get("/api/export?format=csv").get_data(as_text=True)
    assert 'pick,bad hands|blurry,"one, two",,1:4' in csv_text


# ---------------------------------------------------------------- batches and undo


def count_fsyncs(monkeypatch) -> list[int]:
    calls = []
    original = journal.Journal._fsync
    monkeypatch.setattr(journal.Journal, "_fsync", staticmethod(lambda fd: (calls.append(fd), original(fd))))
    return calls


def test_a_batch_rates_and_flags_many_jobs_in_one_append_and_undo_puts_it_back(jobs, settings, monkeypatch):
    jobs.put("/api/jobs/a/rating", json={"rating": 1})
    review(jobs, "b", {"flag": "reject", "tags": ["blurry"]})
    before = len(lines(settings))
    fsyncs = count_fsyncs(monkeypatch)
    body = {"job_ids": ["a", "b", "c"], "set": {"rating": 4, "flag": "pick", "tags_add": ["batch"]}, "source": "web"}
    result = jobs.post("/api/ratings:batch", json=body).get_json()
    assert len(fsyncs) == 1  # one append, one fsync for the six events
    assert result["changed"] == 6 and result["unchanged"] == 0
    written = lines(settings)[before:]
    assert len(written) == 6 and {line["source"] for line in written} == {"web"}
    assert {(j["job_id"], j["rating"], j["flag"]) for j in jobs.get("/api/jobs").get_json()["jobs"]} == {
        ("a", 4, "pick"),
        ("b", 4, "pick"),
        ("c", 4, "pick"),
    }
    assert summary(jobs, "b")["tags"] == ["blurry", "batch"]

    undo = jobs.post("/api/ratings:batch", json={"items": result["previous"], "source": "web"})
    assert undo.status_code == 200, undo.data
    state = {j["job_id"]: (j["rating"], j["flag"], j["tags"]) for j in jobs.get("/api/jobs").get_json()["jobs"]}
    assert state == {"a": (1, None, []), "b": (None, "reject", ["blurry"]), "c": (None, None, [])}
    assert len(lines(settings)) == before + 12  # undo appends the old values back: history kept


def test_undo_never_puts_back_a_value_over_a_change_made_since(jobs, settings):
    """Undo sent back the whole tag list and the old rating: a tag another tab added, or a
    rating another person gave, after the action was lost by the first tab's undo."""
    review(jobs, "a", {"tags": ["keep"], "source": "web"})
    mine = review(jobs, "a", {"tags_add": ["tabA"], "flag": "pick", "source": "web"}).get_json()
    assert mine["expect"] == {"flag": "pick"}
    review(jobs, "a", {"tags_add": ["tabB"]})  # another tab, after mine
    rated = jobs.post("/api/ratings:batch", json={"job_ids": ["b"], "set": {"rating": 3}, "source": "web"}).get_json()
    jobs.put("/api/jobs/b/rating", json={"rating": 5})  # someone else, after mine
    flagged = jobs.post("/api/ratings:batch", json={"job_ids": ["c"], "set": {"flag": "reject"}}).get_json()

    items = [{"job_id": "a", "output": None, "set": mine["previous"], "expect": mine["expect"]}]
    items += rated["previous"] + flagged["previous"]
    assert [item["expect"] for item in items] == [{"flag": "pick"}, {"rating": 3}, {"flag": "reject"}]
    before = len(lines(settings))
    undo = jobs.post("/api/ratings:batch", json={"items": items, "source": "web"}).get_json()
    assert undo["conflicted"] == [{"job_id": "b", "output": None}]  # rated 5 since: left as it is
    assert (summary(jobs, "a")["tags"], summary(jobs, "a")["flag"]) == (["keep", "tabB"], None)
    assert summary(jobs, "b")["rating"] == 5 and summary(jobs, "c")["flag"] is None
    assert len(lines(settings)) == before + 2
    # An expect that is not a value a job can hold is a 400, and nothing is written.
    bad = [{"job_id": "a", "output": None, "set": {"flag": "pick"}, "expect": {"rating": 9}}]
    assert_error(jobs.post("/api/ratings:batch", json={"items": bad}), 400)
    assert len(lines(settings)) == before + 2


def test_undo_s_check_holds_against_a_write_between_the_check_and_the_commit(jobs, monkeypatch):
    """The "changed since" check read the index before the commit: a rating given in between
    (41 of 150 tries in a new-user run) was overwritten by the undo. It is checked in the commit."""
    from learning_svc.service import rating_op

    done = jobs.post("/api/ratings:batch", json={"job_ids": ["b"], "set": {"rating": 1, "flag": "pick"}}).get_json()
    service = jobs.application.extensions["learning_svc"]
    submit = service.submit_many

    def someone_else_first(ops, together=False):
        if together:  # the undo's commit: another client's rating gets in just before it
            monkeypatch.setattr(service, "submit_many", submit)
            submit([rating_op("b", 4, "api")])
        return submit(ops, together=together)

    monkeypatch.setattr(service, "submit_many", someone_else_first)
    undo = jobs.post("/api/ratings:batch", json={"items": done["previous"], "source": "web"}).get_json()
    assert undo["conflicted"] == [{"job_id": "b", "output": None}]
    assert summary(jobs, "b")["rating"] == 4
    assert summary(jobs, "b")["flag"] is None  # the flag was not changed since: undone


def test_a_batch_over_a_filter_needs_the_confirmed_count(jobs, settings):
    body = {"where": "pack=p1&rated=false", "expect": 3, "set": {"flag": "pick"}}
    error = assert_error(jobs.post("/api/ratings:batch", json=body), 409)
    assert "now matches 2 jobs" in error["message"]
    assert lines(settings) == []
    body["expect"] = 2
    assert jobs.post("/api/ratings:batch", json=body).get_json()["changed"] == 2
    assert ids(jobs, "flag=pick") == ["b", "a"]
    assert_error(
        jobs.post("/api/ratings:batch", json={"where": "nonsense=1", "expect": 1, "set": {"flag": "pick"}}), 400
    )
    written = len(lines(settings))
    # A page of a listing is not a set of jobs: `limit` was dropped and every matching job changed.
    for paged in ("pack=p1&limit=1", "pack=p1&cursor=abc"):
        body = {"where": paged, "expect": 1, "set": {"flag": "reject"}}
        error = assert_error(jobs.post("/api/ratings:batch", json=body), 400)
        assert "picks a page of a listing" in error["message"], error
    assert len(lines(settings)) == written
    body = {"where": "pack=p1&sort=-rating", "expect": 2, "set": {"tags_add": ["sorted"]}}  # the same jobs
    assert jobs.post("/api/ratings:batch", json=body).get_json()["changed"] == 2


@pytest.mark.parametrize("form", ["job_ids", "items"])
def test_a_batch_of_more_jobs_than_one_change_takes_is_413_as_for_a_filter(jobs, settings, form):
    """README: "at most 20,000 jobs in one request (413 above)": 20,001 job ids or items were a
    400 "List should have at most 20000 items"; only `where` gave 413."""
    many = [f"j{n}" for n in range(20_001)]
    body = (
        {"job_ids": many, "set": {"flag": "pick"}}
        if form == "job_ids"
        else {"items": [{"job_id": job_id, "set": {"flag": "pick"}} for job_id in many]}
    )
    error = assert_error(jobs.post("/api/ratings:batch", json=body), 413)
    assert error["code"] == "too_many" and "20,000" in error["message"], error
    assert lines(settings) == []
    body[form] = body[form][:20_000]  # at the limit: past the size check, to the jobs (none of these is known)
    assert_error(jobs.post("/api/ratings:batch", json=body), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"job_ids": ["a", "nope"], "set": {"flag": "pick"}},
        {"items": [{"job_id": "a", "set": {"flag": "pick"}}, {"job_id": "b", "output": 3, "set": {"rating": 2}}]},
    ],
)
def test_a_batch_with_an_unknown_job_or_image_writes_nothing(jobs, settings, body):
    assert_error(jobs.post("/api/ratings:batch", json=body), 404)
    assert lines(settings) == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"job_ids": ["a"]},
        {"job_ids": ["a"], "where": "pack=p1", "set": {"flag": "pick"}},
        {"where": "pack=p1", "set": {"flag": "pick"}},
        {"items": [{"job_id": "a", "set": {"flag": "pick"}}], "set": {"flag": "pick"}},
        {"items": [{"job_id": "a", "output": 0, "set": {"flag": "pick"}}]},
    ],  # more than 20,000 jobs: 413, as the README says (test_a_batch_of_more_jobs_than_one_change_takes_...)
)
def test_bad_batches_are_400_and_write_nothing(jobs, settings, body):
    assert_error(jobs.post("/api/ratings:batch", json=body), 400)
    assert lines(settings) == []


def test_an_empty_change_names_every_key_a_batch_takes(jobs, settings):
    error = assert_error(jobs.post("/api/ratings:batch", json={"job_ids": ["a"], "set": {}}), 400)
    assert "rating" in error["message"] and "flag" in error["message"], error
    assert lines(settings) == []


def test_a_job_holds_at_most_max_tags_whatever_the_number_of_requests(jobs, settings):
    """A new-user run: 32 tags were checked per request only; two requests of 20 gave a job 41
    (and then moving the history dropped its whole review). A change that leaves more than 32
    is refused (400) and writes nothing; a job over it (an older version's) can still lose tags."""
    from learning_svc.reviews import MAX_TAGS

    assert review(jobs, "a", {"tags_add": [f"t{i}" for i in range(20)]}).status_code == 200
    written = len(lines(settings))
    error = assert_error(review(jobs, "a", {"tags_add": [f"u{i}" for i in range(20)]}), 400)
    assert f"at most {MAX_TAGS} tags" in error["message"], error
    assert review(jobs, "a", {"tags_add": [f"u{i}" for i in range(12)]}).status_code == 200  # 32 exactly
    assert_error(review(jobs, "a", {"tags_add": ["one more"]}), 400)
    batch = jobs.post("/api/ratings:batch", json={"job_ids": ["a"], "set": {"tags_add": ["one more"]}})
    assert batch.status_code == 400, batch.data
    assert len(summary(jobs, "a")["tags"]) == MAX_TAGS and len(lines(settings)) == written + 1
    assert review(jobs, "a", {"tags_add": ["T0", "t1"]}).status_code == 200  # already held: no change, no error


def test_a_job_over_max_tags_from_an_older_version_can_lose_tags(settings):
    """Events an older version let in (41 tags) stay readable, and taking tags off still works."""
    from learning_svc import create_app
    from learning_svc.reviews import review_event

    from procs import job

    app = create_app(settings)
    try:
        assert app.test_client().post("/api/jobs", data=orjson.dumps(job("old")), headers=JSON).status_code == 201
    finally:
        app.extensions["learning_svc"].close()
    event = review_event("old", {"tags": [f"t{i}" for i in range(41)]}, "api", None)
    with open(settings.ratings_path, "ab") as ratings:
        ratings.write(orjson.dumps(event) + b"\n")
    app = create_app(settings)
    try:
        client = app.test_client()
        assert len(summary(client, "old")["tags"]) == 41
        assert review(client, "old", {"tags_remove": ["t0"]}).status_code == 200
        assert len(summary(client, "old")["tags"]) == 40
        assert_error(review(client, "old", {"tags": [f"n{i}" for i in range(33)]}), 400)
    finally:
        app.extensions["learning_svc"].close()


@pytest.mark.parametrize(
    "tag",
    [
        *("\u200b", " \u200b\u2060 ", "\u3164", "\u2800", "\ufe0f", "\u0301"),  # shows nothing
        *("\u202eabc", "a\u2066b", "bad\u200bhands", "\u200eabc", "abc\u200f", "\ufeffabc", "ab\u00adc"),  # look-alikes
        *("\u200d" + "Z" * 40, "a\u200db"),  # a joiner that joins nothing (an outside run)
    ],
)
def test_a_tag_that_shows_nothing_or_other_text_than_it_is_is_400(jobs, settings, tag):
    """A zero-width space was stored as a tag (an empty chip); "\\u202eabc" showed as "cba";
    "abc", "\\u200eabc" and "\\ufeffabc" were three tags shown alike."""
    assert_error(jobs.post("/api/jobs/a/review", json={"tags_add": [tag]}), 400)
    assert lines(settings) == []
    assert (
        jobs.post("/api/jobs/a/review", json={"tags_add": ["👩\u200d💻 at work", "עברית", "क्\u200dष"]}).status_code
        == 200
    )
