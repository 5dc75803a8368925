"""The JSON API contract (SPEC §2): statuses, shapes, error bodies."""

import io
import os
import re

import orjson
import pytest

from conftest import JSON, sample_records


def post(client, body, **headers):
    return client.post("/api/jobs", data=orjson.dumps(body), headers={**JSON, **headers})


def assert_error(response, status, code):
    assert response.status_code == status, response.data
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


def test_post_created_retry_and_conflict(client, settings):
    body = sample_records()[0]
    first = post(client, body)
    assert first.status_code == 201
    assert first.headers["Location"] == f"/api/jobs/{body['job_id']}"
    summary = first.get_json()
    assert summary["job_id"] == body["job_id"] and summary["rating"] is None
    assert summary["loras"] == ["add-detail_xl", "FantasyArt_v3", "add-detail_v3", "skin_texture_v2"]
    size = settings.log_path.stat().st_size
    reordered = dict(reversed(list(body.items())))
    retry = post(client, reordered)
    assert retry.status_code == 200 and retry.get_json() == summary
    changed = {**body, "packs": ["another"]}
    error = assert_error(post(client, changed), 409, "conflict")
    assert body["job_id"] in error["message"]
    assert settings.log_path.stat().st_size == size


def test_invalid_record_is_400_with_fields_and_writes_nothing(client, settings):
    error = assert_error(post(client, {"job_id": "a/b", "completed_at": "soon"}), 400, "invalid")
    assert {f["loc"] for f in error["fields"]} == {"job_id", "completed_at"}
    assert not settings.log_path.exists() or settings.log_path.stat().st_size == 0


def test_malformed_json_and_non_object(client):
    assert_error(client.post("/api/jobs", data=b"{nope", headers=JSON), 400, "invalid")
    assert_error(client.post("/api/jobs", data=b"[1,2]", headers=JSON), 400, "invalid")


def test_job_detail_has_record_rating_and_history(client):
    body = sample_records()[1]
    post(client, body)
    job_id = body["job_id"]
    assert client.put(f"/api/jobs/{job_id}/rating", json={"rating": 2}).status_code == 200
    assert client.put(f"/api/jobs/{job_id}/rating", json={"rating": 5, "source": "web"}).status_code == 200
    detail = client.get(f"/api/jobs/{job_id}").get_json()
    assert detail["record"]["job_id"] == job_id and detail["record"]["run_config"] == body["run_config"]
    assert detail["record"]["schema"] == "learning_log_v2" and "logged_at" in detail["record"]
    assert detail["rating"] == 5 and detail["rated_at"] == detail["rating_history"][-1]["timestamp"]
    assert [(e["rating"], e["source"]) for e in detail["rating_history"]] == [(2, "api"), (5, "web")]


def test_rating_put_delete_and_ratings_dict(client, settings):
    a, b = sample_records()[:2]
    post(client, a), post(client, b)
    put = client.put(f"/api/jobs/{a['job_id']}/rating", json={"rating": 0})
    assert put.status_code == 200 and put.get_json()["rating"] == 0 and put.get_json()["rated_at"] > 0
    client.put(f"/api/jobs/{b['job_id']}/rating", json={"rating": 3})
    assert client.get("/api/ratings").get_json() == {a["job_id"]: 0, b["job_id"]: 3}
    cleared = client.delete(f"/api/jobs/{a['job_id']}/rating")
    assert cleared.get_json() == {"job_id": a["job_id"], "rating": None, "rated_at": None}
    assert client.get("/api/ratings").get_json() == {b["job_id"]: 3}
    events = [orjson.loads(line) for line in settings.ratings_path.read_bytes().splitlines()]
    assert [e["rating"] for e in events] == [0, 3, None]
    assert all(e["schema"] == "learning_rating_v2" for e in events)


@pytest.mark.parametrize(
    "body",
    [{"rating": 4.5}, {"rating": True}, {"rating": "4"}, {"rating": 6}, {"rating": -1}, {}, {"rating": 3, "extra": 1}],
)
def test_bad_ratings_are_400_and_write_nothing(client, settings, body):
    job = sample_records()[0]
    post(client, job)
    response = client.put(f"/api/jobs/{job['job_id']}/rating", data=orjson.dumps(body), headers=JSON)
    assert_error(response, 400, "invalid")
    assert not settings.ratings_path.exists() or settings.ratings_path.stat().st_size == 0


@pytest.mark.parametrize(
    "job_id",
    [
        *("  ", "\u200b", "\u3164", "\u2800", "\ufe0f", " padded ", "padded ", "\u202eevil", "a\u2068b", "a\u200bb"),
        *("\u200dab", "a\u200db", "ab\u200d"),  # a joiner that joins nothing (an outside run: "\u200dab" and "ab")
    ],
)
def test_a_job_id_that_shows_nothing_or_other_text_than_it_is_is_400(client, settings, job_id):
    """A blank id was recorded; " padded " and "padded" became two jobs; "\u202eevil" shows "live"."""
    response = client.post("/api/jobs", json={**sample_records()[0], "job_id": job_id})
    assert_error(response, 400, "invalid")
    assert "job_id" in response.get_json()["error"]["message"]
    assert not settings.log_path.exists() or settings.log_path.stat().st_size == 0


@pytest.mark.parametrize("field", ["packs", "model", "sampler"])
def test_a_name_with_a_bidi_override_is_400(client, settings, field):
    """An outside run: a pack "\u202eevil pack" was recorded and its chip read "kcap live"."""
    value = "\u202eevil pack"
    response = client.post("/api/jobs", json={**sample_records()[0], field: [value] if field == "packs" else value})
    assert_error(response, 400, "invalid")
    assert "bidi override" in response.get_json()["error"]["message"]
    assert not settings.log_path.exists() or settings.log_path.stat().st_size == 0
    names = {"packs": ["עברית \u200fpack"], "model": "موديل", "sampler": "Euler a"}  # right-to-left text, a mark
    response = client.post("/api/jobs", json={**sample_records()[0], field: names[field]})
    assert response.status_code == 201, response.get_data(as_text=True)


def test_unknown_job_is_404(client):
    assert_error(client.get("/api/jobs/nope"), 404, "not_found")
    assert_error(client.put("/api/jobs/nope/rating", json={"rating": 1}), 404, "not_found")
    assert_error(client.delete("/api/jobs/nope/rating"), 404, "not_found")
    assert_error(client.get("/api/nothing-here"), 404, "not_found")


def test_an_index_database_that_cannot_be_reached_is_503_not_500(app, client, monkeypatch):
    """A read while the index database is down or restarting (or SQLite's file locked past its
    timeout) is a moment's trouble: 503 in the error shape, without the driver's text."""
    from sqlalchemy.exc import OperationalError

    def down(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection to server at 10.0.0.5 failed"))

    monkeypatch.setattr(app.extensions["learning_svc"], "count", down)
    response = client.get("/api/count")
    assert response.status_code == 503
    assert response.json["error"]["code"] == "unavailable" and response.json["error"]["fields"] == []
    assert "10.0.0.5" not in response.get_data(as_text=True)


def test_an_index_database_whose_tables_were_dropped_says_so_and_writes_nothing(settings, client):
    """The index database dropped and made again under a running service: every read was a 500
    ("relation does not exist" in the log) and every write a 503 saying it "cannot be reached"."""
    from sqlalchemy import create_engine, text

    assert post(client, {"job_id": "before", "completed_at": 1_764_000_000}).status_code == 201
    assert client.get("/api/jobs/before").status_code == 200  # indexed: no follower transaction left to meet
    engine = create_engine(settings.db_url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP TABLE job_tags, jobs"))  # both locks in one statement
        else:
            conn.execute(text("DROP TABLE job_tags"))
            conn.execute(text("DROP TABLE jobs"))
    engine.dispose()
    size = settings.log_path.stat().st_size
    for response in (
        client.get("/api/jobs"),
        client.get("/api/health"),  # it said "ok" (it counted jobs from the facet counts)
        post(client, {"job_id": "after", "completed_at": 1_764_000_001}),
    ):
        error = assert_error(response, 503, "unavailable")
        assert "lost its tables" in error["message"] and "restart the service" in error["message"], error
    assert settings.log_path.stat().st_size == size


def test_an_index_missing_one_of_its_tables_is_made_anew_at_start(settings, client, app):
    """Only the jobs table dropped (the schema version still current): a restart, a reindex and
    a verify all failed with 'relation "jobs" does not exist'; the migrations never made it again."""
    from sqlalchemy import create_engine, text

    from learning_svc import create_app

    for i in range(3):
        assert post(client, {"job_id": f"j{i}", "completed_at": 1_764_000_000 + i}).status_code == 201
    assert client.put("/api/jobs/j1/rating", json={"rating": 4}).status_code == 200
    app.extensions["learning_svc"].close()
    engine = create_engine(settings.db_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE jobs" + (" CASCADE" if engine.dialect.name == "postgresql" else "")))
    engine.dispose()
    again = create_app(settings)
    try:
        restarted = again.test_client()
        assert [j["job_id"] for j in restarted.get("/api/jobs").json["jobs"]] == ["j2", "j1", "j0"]
        assert restarted.get("/api/jobs/j1").json["rating"] == 4
        assert restarted.get("/api/health").json["status"] == "ok"
    finally:
        again.extensions["learning_svc"].close()


def test_method_not_allowed_has_the_error_shape(client):
    assert_error(client.patch("/api/jobs", json={}), 405, "method_not_allowed")
    assert_error(client.delete("/api/ratings"), 405, "method_not_allowed")


def test_method_not_allowed_says_what_is_allowed(client):
    """RFC 9110: a 405 carries an Allow header (the error handler's answer had none)."""
    for path, allowed in (
        ("/api/jobs", {"GET", "HEAD", "POST", "OPTIONS"}),
        ("/api/ratings", {"GET", "HEAD", "OPTIONS"}),
    ):
        response = client.delete(path)
        assert_error(response, 405, "method_not_allowed")
        assert set(response.headers["Allow"].split(", ")) == allowed


@pytest.mark.parametrize(
    "query, param",
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("sort=name", "sort"),
        ("cursor=garbage", "cursor"),
        ("bogus=1", "bogus"),
        ("rating_min=9", "rating_min"),
        ("rated=yes", "rated"),
        ("since=tomorrow", "since"),
        ("status=done", "status"),
        ("limit=5&limit=6", "limit"),
    ],
)
def test_bad_listing_parameters_name_the_parameter(client, query, param):
    error = assert_error(client.get(f"/api/jobs?{query}"), 400, "invalid_parameter")
    assert error["fields"][0]["loc"] == param and error["message"].startswith(param)


def test_cursor_of_another_sort_is_refused(client):
    for body in sample_records()[:5]:
        post(client, body)
    cursor = client.get("/api/jobs?limit=2").get_json()["next_cursor"]
    error = assert_error(client.get(f"/api/jobs?limit=2&sort=rating&cursor={cursor}"), 400, "invalid_parameter")
    assert "sort" in error["message"]


def test_listing_summary_fields(client):
    for body in sample_records():
        post(client, body)
    jobs = client.get("/api/jobs?limit=3").get_json()["jobs"]
    expected = {
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
        "embeddings",
        "rating",
        "rated_at",
        "vae",
        "run_id",
        "error",
        "flag",  # the review (reviews.py)
        "tags",
        "note",
        "scores",
        "image_ratings",
    }
    assert all(set(job) == expected for job in jobs)
    completed = [job["completed_at"] for job in jobs]
    assert completed == sorted(completed, reverse=True)


def test_health_counts(client):
    for body in sample_records()[:3]:
        post(client, body)
    health = client.get("/api/health").get_json()
    assert health["status"] == "ok"
    assert health["jsonl"]["jobs_lines"] == 3 and health["index"]["jobs"] == 3 and health["index"]["lag_bytes"] == 0


re_path = re.compile(r"<(?:\w+:)?(\w+)>")


def test_openapi_document_is_valid_openapi_3_1(client):
    """An integrator's run: the document said `openapi: 3.0.3` but held 3.1's JSON Schema
    (`{"type": "null"}`, from pydantic), so a 3.0 validator or code generator refused it."""
    from openapi_spec_validator import validate

    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises with the first error (the version the document gives picks the schema)


def test_openapi_document_describes_every_route(client):
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert {
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/rating",
        "/api/ratings",
        "/api/facets",
        "/api/export",
        "/api/health",
    } <= set(doc["paths"])
    assert "job_id" in doc["components"]["schemas"]["JobIn"]["properties"]
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    routes = {
        (re_path.sub(r"{\1}", rule.rule), method)
        for rule in client.application.url_map.iter_rules()
        if rule.rule.startswith("/api/") and rule.rule != "/api/openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routes - documented == set()


def test_openapi_bounds_are_json_schema_minimum_and_maximum(client):
    """pydantic's `ge`/`le` of the integers of a record or a rating were in the document: no JSON
    Schema keyword, so a client or fuzzer saw no bounds."""
    doc = client.get("/api/openapi.json").get_json()
    rating = doc["components"]["schemas"]["RatingIn"]["properties"]["rating"]
    assert rating["minimum"] == 0 and rating["maximum"] == 5
    steps = doc["components"]["schemas"]["JobIn"]["properties"]["steps"]["anyOf"][0]
    assert steps["minimum"] == 0 and steps["maximum"] == 100_000

    def pydantic_keys(node, names: bool = False) -> set:
        """ge/le/gt/lt keys of every schema under `node` (a `properties` object's keys are names)."""
        if isinstance(node, list):
            return set().union(*(pydantic_keys(item) for item in node))
        if not isinstance(node, dict):
            return set()
        found = set() if names else {"ge", "le", "gt", "lt"} & set(node)
        return found.union(*(pydantic_keys(value, key == "properties") for key, value in node.items()))

    assert pydantic_keys(doc) == set()


def test_openapi_documents_batches_bodies_of_clears_and_the_token(client):
    """POST /api/jobs took NDJSON batches undocumented; a clear's 400 (a body that is no object)
    and a write's 401 (LEARNING_SVC_TOKEN set) were not said, nor the bearer scheme."""
    doc = client.get("/api/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    record = doc["paths"]["/api/jobs"]["post"]
    assert set(record["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    line = record["responses"]["200"]["content"]["application/x-ndjson"]["schema"]
    line = schemas[line["$ref"].rsplit("/", 1)[1]]
    body = b'{"job_id": "b1", "completed_at": 1764000000}\n{"job_id": "b2", "completed_at": "soon"}\n'
    batch = client.post("/api/jobs", data=body, headers={"Content-Type": "application/x-ndjson"})
    assert batch.status_code == 200 and batch.mimetype == "application/x-ndjson"
    answers = [orjson.loads(text) for text in batch.data.splitlines()]
    assert [answer["status"] for answer in answers] == [201, 400]
    for answer in answers:  # each line as the document says
        assert set(line["required"]) <= set(answer) <= set(line["properties"]), answer

    for path in ("/api/jobs/{job_id}/rating", "/api/jobs/{job_id}/outputs/{n}/rating"):
        assert "400" in doc["paths"][path]["delete"]["responses"]
    assert_error(client.delete("/api/jobs/b1/rating", json=["api"]), 400, "invalid")
    assert_error(client.delete("/api/jobs/b1/outputs/0/rating", json="api"), 400, "invalid")

    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    writes = [
        operation
        for operations in doc["paths"].values()
        for method, operation in operations.items()
        if method in ("post", "put", "patch", "delete")
    ]
    assert len(writes) == 8
    for operation in writes:
        assert "401" in operation["responses"] and {"bearer": []} in operation["security"], operation["operationId"]
    assert all("security" not in operations["get"] for operations in doc["paths"].values() if "get" in operations)


def test_page_is_served_with_a_strict_csp(client):
    page = client.get("/")
    assert page.status_code == 200 and b'type="module"' in page.data
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert client.get("/static/app.js").status_code == 200


# ---------------------------------------------------------------- amendments (PATCH)


def patch(client, job_id, body, **query):
    return client.patch(f"/api/jobs/{job_id}", query_string=query, data=orjson.dumps(body), headers=JSON)


def test_an_amendment_sets_what_was_not_set_and_is_append_only(client, settings):
    """StableNew's second `completed` line adds the pack: PATCH sets it with an amendment line;
    the job lists, filters and exports with it; the stored line itself is never rewritten."""
    assert post(client, {"job_id": "sn", "completed_at": 1_764_000_000, "prompt": "a castle"}).status_code == 201
    stored = settings.log_path.read_bytes()
    first = patch(client, "sn", {"packs": ["PACK_one"], "extra": {"prompt_pack_id": "p-1"}})
    assert first.status_code == 200 and first.json["amended"] == ["extra", "packs"]
    assert first.json["summary"]["packs"] == ["PACK_one"]
    assert settings.log_path.read_bytes().startswith(stored)  # appended, not rewritten
    amendment = orjson.loads(settings.log_path.read_bytes()[len(stored) :])
    assert amendment["schema"] == "learning_amend_v2" and amendment["set"]["packs"] == ["PACK_one"]
    assert [j["job_id"] for j in client.get("/api/jobs?pack=pack_one").json["jobs"]] == ["sn"]
    detail = client.get("/api/jobs/sn").json
    assert detail["record"]["packs"] == ["PACK_one"] and len(detail["amendments"]) == 1
    assert client.get("/api/facets").json["facets"]["pack"] == [{"value": "PACK_one", "count": 1, "mean_rating": None}]
    # the same again: nothing to change, nothing written
    size = settings.log_path.stat().st_size
    again = patch(client, "sn", {"packs": ["PACK_one"]})
    assert again.status_code == 200 and again.json["amended"] == [] and settings.log_path.stat().st_size == size
    # an identical retry of the original POST is still identical
    assert post(client, {"job_id": "sn", "completed_at": 1_764_000_000, "prompt": "a castle"}).status_code == 200


@pytest.mark.parametrize("job_id", ["?", "a?b=1", "#frag", "100%", "a b+c", "%2E%2E", "é?&"])
def test_a_job_id_with_url_characters_is_reached_at_its_percent_encoded_path(client, job_id):
    """SPEC §1.1 lets a job id hold any character but '/' and control characters: '?', '#', '%'
    and spaces reach the job when the path carries them percent-encoded, for every job route."""
    from urllib.parse import quote

    assert post(client, {"job_id": job_id, "completed_at": 1_764_000_000}).status_code == 201
    path = f"/api/jobs/{quote(job_id, safe='')}"
    assert client.get(path).json["record"]["job_id"] == job_id
    rated = client.put(f"{path}/rating", json={"rating": 4})
    assert rated.status_code == 200 and (rated.json["job_id"], rated.json["rating"]) == (job_id, 4)
    amended = client.patch(path, data=orjson.dumps({"packs": ["P"]}), headers=JSON)
    assert amended.status_code == 200 and amended.json["summary"]["packs"] == ["P"]
    assert client.delete(f"{path}/rating").status_code == 200
    assert client.get(path).json["rating"] is None


def test_an_amendment_does_not_change_what_is_set_unless_asked(client, settings):
    assert post(client, {"job_id": "j", "completed_at": 1_764_000_000, "model": "a.safetensors"}).status_code == 201
    size = settings.log_path.stat().st_size
    error = assert_error(patch(client, "j", {"model": "b.safetensors", "vae": "v"}), 409, "conflict")
    assert "model" in error["message"] and "replace=true" in error["message"]
    assert settings.log_path.stat().st_size == size
    replaced = patch(client, "j", {"model": "b.safetensors"}, replace="true")
    assert replaced.status_code == 200 and replaced.json["summary"]["model"] == "b.safetensors"
    assert client.get("/api/facets").json["facets"]["model"] == [{"value": "b", "count": 1, "mean_rating": None}]
    assert [j["job_id"] for j in client.get("/api/jobs?model=a").json["jobs"]] == []


@pytest.mark.parametrize(
    "body, code, loc",
    [
        ({"job_id": "other"}, 400, "job_id"),
        ({"schema": "x"}, 400, "schema"),
        ({"num_outputs": 3}, 400, "num_outputs"),
        ({}, 400, "body"),
        ({"steps": "many"}, 400, "steps"),
        ({"completed_at": 1_763_999_000, "started_at": 1_764_000_500}, 400, "completed_at"),
    ],
)
def test_bad_amendments_are_400_and_write_nothing(client, settings, body, code, loc):
    assert post(client, {"job_id": "j", "completed_at": 1_764_000_000}).status_code == 201
    size = settings.log_path.stat().st_size
    error = assert_error(patch(client, "j", body, replace="true"), code, "invalid")
    assert error["fields"][0]["loc"] == loc
    assert settings.log_path.stat().st_size == size
    assert_error(patch(client, "nobody", {"packs": ["x"]}), 404, "not_found")


def test_an_invalid_value_for_a_set_field_is_400_not_a_conflict(client, settings):
    """Without replace=true, a bad value for a field that is set was answered 409 ("amend with
    replace=true"), and with it 400: the value is checked first, whatever the flag."""
    assert post(client, {"job_id": "j", "completed_at": 1_764_000_000, "steps": 30}).status_code == 201
    size = settings.log_path.stat().st_size
    error = assert_error(patch(client, "j", {"steps": "abc"}), 400, "invalid")
    assert error["fields"][0]["loc"] == "steps"
    assert settings.log_path.stat().st_size == size


def test_a_duration_that_ends_after_the_largest_timestamp_is_refused(client, settings):
    """Found by the stateful schemathesis run: started_at + a huge duration_sec was stored with a
    completed_at past MAX_EPOCH, a line that no longer validates, so amending it failed the index."""
    for duration in (6.8e16, 99_999_999_999 - 48_695_746_000):
        body = {"job_id": "long", "started_at": 48_695_746_160, "duration_sec": duration}
        assert assert_error(post(client, body), 400, "invalid")["fields"][0]["loc"] == "duration_sec"
    assert not settings.log_path.exists() or settings.log_path.stat().st_size == 0


def test_amending_a_stored_line_that_no_longer_validates_is_refused_and_the_index_stays_up(client, settings):
    """A line an older version accepted (the long duration above): PATCH answers 400, writes
    nothing, and the index is not put in trouble for everyone else."""
    assert post(client, {"job_id": "ok", "completed_at": 1_764_000_000}).status_code == 201
    bad = {**orjson.loads(settings.log_path.read_bytes()), "job_id": "old", "completed_at": 6.8e16}
    with settings.log_path.open("ab") as log:
        log.write(orjson.dumps(bad) + b"\n")
    size = settings.log_path.stat().st_size
    error = assert_error(patch(client, "old", {"packs": ["p"]}), 400, "invalid")
    assert "cannot be amended" in error["message"] and settings.log_path.stat().st_size == size
    health = client.get("/api/health").json
    assert health["status"] == "ok" and health["index"]["problem"] is None
    assert post(client, {"job_id": "after", "completed_at": 1_764_000_001}).status_code == 201
    assert client.get("/api/jobs/after").status_code == 200


def test_an_amended_prompt_is_found_by_a_held_text_search(client):
    """Held searches keep each job's text: an amendment starts them over (index generation)."""
    from learning_svc.index.text_search import MatchSets

    service = client.application.extensions["learning_svc"]
    service.match_sets = MatchSets(background=False, fetch_up_to=-1)  # every word held at once
    for i in range(6):
        body = {"job_id": f"j{i}", "completed_at": 1_764_000_000 + i, "prompt": "lighthouse" if i % 2 else "castle"}
        assert post(client, body).status_code == 201
    assert [j["job_id"] for j in client.get("/api/jobs?q=lighthouse").json["jobs"]] == ["j5", "j3", "j1"]
    assert patch(client, "j0", {"prompt": "a lighthouse"}, replace="true").status_code == 200
    assert patch(client, "j5", {"completed_at": 1_763_000_000}, replace="true").status_code == 200
    assert [j["job_id"] for j in client.get("/api/jobs?q=lighthouse").json["jobs"]] == ["j3", "j1", "j0", "j5"]
    assert [j["job_id"] for j in client.get("/api/jobs?q=castle").json["jobs"]] == ["j4", "j2"]


def test_an_amended_prompt_brings_its_own_loras_and_embeddings(client):
    """An outside run: PATCH of `prompt` to "new <lora:foo:0.5>" kept the LoRAs found in the old
    prompt, so `?lora=foo` did not find the job. LoRAs and embeddings found in the prompts are
    found again in the new ones; ones the pipeline gave stay."""
    found = {"job_id": "found", "completed_at": 1_764_000_000, "prompt": "hello <lora:old:0.8> embedding:easyneg"}
    given = {**found, "job_id": "given", "loras": [{"name": "mine", "weight": 1.0}]}
    for body in (found, given):
        assert post(client, body).status_code == 201
    for job_id in ("found", "given"):
        assert patch(client, job_id, {"prompt": "new <lora:foo:0.5>"}, replace="true").status_code == 200
    record = client.get("/api/jobs/found").json["record"]
    assert record["loras"] == [{"name": "foo", "weight": 0.5}] and record["embeddings"] == []
    assert client.get("/api/jobs/given").json["record"]["loras"] == [{"name": "mine", "weight": 1.0}]
    assert [j["job_id"] for j in client.get("/api/jobs?lora=foo").json["jobs"]] == ["found"]
    assert client.get("/api/jobs?lora=old").json["jobs"] == []
    kept = [{"name": "foo", "weight": 0.5}]  # named with the next prompt, unchanged: kept as given
    assert patch(client, "found", {"prompt": "plain", "loras": kept}, replace="true").status_code == 200
    assert client.get("/api/jobs/found").json["record"]["loras"] == kept


def test_a_held_text_search_follows_new_jobs_and_ratings(client):
    """A search held in memory (on PostgreSQL too, for a search alone) adds the jobs indexed
    after it was made and moves the ones rated since, in every order."""
    from learning_svc.index.text_search import MatchSets

    service = client.application.extensions["learning_svc"]
    service.match_sets = sets = MatchSets(background=False, fetch_up_to=-1)

    def listed(sort: str) -> list[str]:
        return [j["job_id"] for j in client.get(f"/api/jobs?q=harbour&sort={sort}").json["jobs"]]

    for i in range(4):
        assert (
            post(client, {"job_id": f"h{i}", "completed_at": 1_764_000_000 + i, "prompt": "a harbour"}).status_code
            == 201
        )
    assert listed("-completed_at") == ["h3", "h2", "h1", "h0"] and sets.entries  # held from here on
    assert client.put("/api/jobs/h1/rating", json={"rating": 5}).status_code == 200
    assert client.put("/api/jobs/h2/rating", json={"rating": 2}).status_code == 200
    assert post(client, {"job_id": "h4", "completed_at": 1_764_000_010, "prompt": "harbour"}).status_code == 201
    assert listed("-completed_at") == ["h4", "h3", "h2", "h1", "h0"]
    assert listed("-rating") == ["h1", "h2", "h4", "h3", "h0"]  # unrated last, newest first
    assert listed("rating") == ["h2", "h1", "h0", "h3", "h4"]  # ties in id order, ascending
    assert [len(entry.ids) for entry in sets.entries.values()] == [5]


def test_a_held_text_search_is_counted_in_memory_through_new_jobs_and_ratings(client):
    """An outside run at 223,000 jobs: /api/count?q=<a common word> took 0.5-1.6 s, counting
    in SQL what the held search already holds. The page's two counts (all, unrated) of a held
    search come from memory, and agree with SQL's through new jobs, re-ratings and clears."""
    from sqlalchemy import event

    from learning_svc.index.text_search import MatchSets

    service = client.application.extensions["learning_svc"]
    service.match_sets = sets = MatchSets(background=False, fetch_up_to=-1, merge_at=3)  # tails merged too

    def counted() -> tuple[dict, list[str]]:
        statements = []
        listen = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731
        event.listen(service.read_engine, "before_cursor_execute", listen)
        try:
            return client.get("/api/count?q=harbour").json, statements
        finally:
            event.remove(service.read_engine, "before_cursor_execute", listen)

    def in_sql() -> dict:  # the same counts with the search not held: SQL's
        saved, service.match_sets = service.match_sets, MatchSets(background=False, fetch_up_to=10**9)
        try:
            return client.get("/api/count?q=harbour").json
        finally:
            service.match_sets = saved

    for i in range(8):
        body = {"job_id": f"h{i}", "completed_at": 1_764_000_000 + i, "prompt": "harbour" if i % 4 else "mill"}
        assert post(client, body).status_code == 201
    assert client.get("/api/jobs?q=harbour").status_code == 200 and sets.entries  # held from here on
    steps = [
        ("put", "h1", 5), ("put", "h2", 0), ("post", "h8", None), ("put", "h1", 3),
        ("delete", "h2", None), ("post", "h9", None), ("put", "h9", 4), ("put", "h3", 1),
    ]  # fmt: skip
    for kind, job_id, rating in steps:
        if kind == "post":
            assert (
                post(client, {"job_id": job_id, "completed_at": 1_765_000_000, "prompt": "harbour"}).status_code == 201
            )
        elif kind == "put":
            assert client.put(f"/api/jobs/{job_id}/rating", json={"rating": rating}).status_code == 200
        else:
            assert client.delete(f"/api/jobs/{job_id}/rating").status_code == 200
        found, statements = counted()
        assert found == in_sql(), (kind, job_id)
        assert not [s for s in statements if "count(" in s.lower() and "text_match" in s.lower()], statements
        assert not [s for s in statements if "jobs_fts" in s or "search_tsv" in s], statements
    assert found == {"jobs": 8, "exact": True, "unrated": 5, "unrated_exact": True}  # h1, h3, h9 rated
    assert client.get("/api/count?q=harbour&rated=true").json == {
        "jobs": 3, "exact": True, "unrated": 0, "unrated_exact": True
    }  # fmt: skip


# ---------------------------------------------------------------- small contract points (issue 10.7)


def test_the_same_rating_again_writes_nothing(client, settings):
    assert post(client, {"job_id": "r", "completed_at": 1_764_000_000}).status_code == 201
    first = client.put("/api/jobs/r/rating", json={"rating": 4}).json
    size = settings.ratings_path.stat().st_size
    again = client.put("/api/jobs/r/rating", json={"rating": 4, "source": "api"})
    assert again.status_code == 200 and again.json == first and settings.ratings_path.stat().st_size == size
    assert len(client.get("/api/jobs/r").json["rating_history"]) == 1
    assert client.delete("/api/jobs/r/rating").json["rating"] is None
    size = settings.ratings_path.stat().st_size
    assert client.delete("/api/jobs/r/rating").json == {"job_id": "r", "rating": None, "rated_at": None}
    assert settings.ratings_path.stat().st_size == size


def test_rating_sources_may_have_spaces_and_are_checked_on_delete_too(client):
    assert post(client, {"job_id": "s", "completed_at": 1_764_000_000}).status_code == 201
    response = client.put("/api/jobs/s/rating", json={"rating": 3, "source": "StableNew review tab"})
    assert response.status_code == 200
    assert client.get("/api/jobs/s").json["rating_history"][0]["source"] == "StableNew review tab"
    assert_error(client.put("/api/jobs/s/rating", json={"rating": 2, "source": "line\nbreak"}), 400, "invalid")
    assert_error(client.delete("/api/jobs/s/rating", json={"source": "x" * 33}), 400, "invalid")
    assert_error(client.delete("/api/jobs/s/rating", json={"source": "tab\there"}), 400, "invalid")
    assert client.delete("/api/jobs/s/rating", json={"source": "bulk clear"}).status_code == 200


def test_an_output_a_job_does_not_have_is_404(client):
    assert post(client, {"job_id": "o", "completed_at": 1_764_000_000, "outputs": ["a.png"]}).status_code == 201
    assert client.get("/api/jobs/o/outputs/0").headers["X-Learning-Placeholder"] == "missing"  # has it, unreadable
    for path in ("/api/jobs/o/outputs/1", "/api/jobs/o/outputs/5/thumbnail"):
        assert_error(client.get(path), 404, "not_found")


def test_run_ids_filter_and_are_searched(client):
    for i, run in enumerate(("20260311_run-a", "20260311_run-a", "20260312_run-b")):
        assert post(client, {"job_id": f"j{i}", "completed_at": 1_764_000_000 + i, "run_id": run}).status_code == 201
    assert [j["job_id"] for j in client.get("/api/jobs?run_id=20260311_run-a").json["jobs"]] == ["j1", "j0"]
    assert [j["job_id"] for j in client.get("/api/jobs?q=run").json["jobs"]] == ["j2", "j1", "j0"]
    assert [j["job_id"] for j in client.get("/api/jobs?q=20260312_run").json["jobs"]] == ["j2"]
    assert "run_id" not in client.get("/api/facets").json["facets"]  # a filter, not a facet


def test_images_are_found_by_their_file_and_folder_names(client):
    """A new-user run: 20,000 imported images are known by their file and folder names
    (`00012-1234.png` in `txt2img-images/2024-05-01`), and `q` did not find them by either."""
    outputs = {
        "a1111": ["txt2img-images/2024-05-01/00012-1234.png", "txt2img-images/2024-05-01/00013-1235.png"],
        "stablenew": ["C:\\Users\\rob\\StableNew\\output\\Pipeline\\20260331_PORTRAIT-juggernaut\\up_p02 e72ce8dc.png"],
        "comfy": ["/home/ana/ComfyUI/output/ComfyUI_00001_.png"],
        "none": [],
    }
    for i, (job_id, paths) in enumerate(outputs.items()):
        body = {"job_id": job_id, "completed_at": 1_764_000_000 + i, "prompt": "a castle", "outputs": paths}
        if job_id == "stablenew":  # its folder is named as its run
            body["run_id"] = "20260331_PORTRAIT-juggernaut"
        assert post(client, body).status_code == 201

    def found(q):
        response = client.get("/api/jobs", query_string={"q": q})
        assert response.status_code == 200, response.json
        return [j["job_id"] for j in response.json["jobs"]]

    assert found("00013") == ["a1111"]  # a file name's number
    assert found("txt2img-images") == ["a1111"]  # a folder name, as a phrase
    assert found("2024-05-01 castle") == ["a1111"]  # with a word of the prompt
    assert found("e72ce8dc") == found("juggernaut") == found("pipeline") == ["stablenew"]  # a Windows path
    assert found("comfyui_00001") == found("ComfyUI") == ["comfy"]
    assert found("png") == ["comfy", "stablenew", "a1111"]
    assert found("00012-1235") == found("rob ana") == []  # words of two files, of two jobs
    assert found("users") == found("home") == []  # a folder by its last two names: not what every path shares
    # a path pasted whole finds its job, by any of its images (a code review: only by its first one,
    # and an absolute one not at all), and not a job whose file is of another folder
    for path in (*outputs["a1111"], "/home/me/sd/outputs/txt2img-images/2024-05-01/00013-1235.png"):
        assert found(path) == ["a1111"], path
    windows = "C:\\Users\\rob\\StableNew\\output\\Pipeline\\20260331_PORTRAIT-juggernaut\\up_p02 e72ce8dc.png"
    assert found(windows) == ["stablenew"] and found(windows.replace("juggernaut", "dreamshaper")) == []
    assert found("output\\Pipeline\\20260331_PORTRAIT-juggernaut\\up_p02") == ["stablenew"]  # a name's beginning
    assert found("/home/ana/ComfyUI/output") == found("ComfyUI/output/ComfyUI_00001_.png") == ["comfy"]
    assert found("txt2img-images/2024-05-01/00001-9.png") == []  # that folder, another file
    assert len(found("/")) == 4  # no word: everything, as `-` (README)
    assert client.get("/api/count", query_string={"q": "2024-05-01"}).json["jobs"] == 1
    # an amendment naming the job's images makes it found by them, and no longer by the old ones
    assert patch(client, "none", {"outputs": ["later/00099-7.png"]}).status_code == 200
    assert patch(client, "comfy", {"outputs": ["elsewhere/renamed.png"]}, replace="true").status_code == 200
    assert found("00099") == ["none"] and found("renamed") == ["comfy"] and found("comfyui_00001") == []


def test_export_jsonl_keeps_a_stored_rating_key_as_stored(client):
    """A record's own top-level `rating` (an unknown key, kept as given) is exported as stored;
    the service's rating is under `learning_svc`."""
    assert post(client, {"job_id": "x", "completed_at": 1_764_000_000, "rating": 5}).status_code == 201
    client.put("/api/jobs/x/rating", json={"rating": 2})
    (line,) = [orjson.loads(raw) for raw in client.get("/api/export?format=jsonl").get_data().splitlines()]
    assert line["rating"] == 5 and line["learning_svc"]["rating"] == 2


# ---------------------------------------------------------------- batch ingest (application/x-ndjson)

NDJSON = {"Content-Type": "application/x-ndjson"}


def post_batch(client, bodies: list[bytes]):
    response = client.post("/api/jobs", data=b"\n".join(bodies) + b"\n", headers=NDJSON)
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson", response.data[:300]
    return [orjson.loads(line) for line in response.get_data().splitlines()]


def test_a_batch_is_one_fsync_with_one_answer_per_line(client, settings, monkeypatch):
    from learning_svc.journal import Journal

    assert post(client, {"job_id": "old", "completed_at": 1_764_000_000}).status_code == 201
    syncs = []
    real = Journal._fsync
    monkeypatch.setattr(Journal, "_fsync", staticmethod(lambda fd: (syncs.append(fd), real(fd))))
    bodies = [orjson.dumps({"job_id": f"b{i}", "completed_at": 1_764_000_000 + i}) for i in range(2000)]
    bodies[10] = b"{not json"
    bodies[11] = orjson.dumps({"job_id": "old", "completed_at": 1_764_000_000})  # identical retry
    bodies[12] = orjson.dumps({"job_id": "old", "completed_at": 5})  # conflict
    bodies[13] = orjson.dumps({"job_id": "x", "completed_at": 1, "schema": "mine"})
    bodies[14] = b"  "  # a blank line in the middle: refused as a line, said so (it was "zero-length JSON")
    answers = post_batch(client, bodies)
    assert len(syncs) == 1  # every new line of the batch in one append
    assert [a["line"] for a in answers] == list(range(1, 2001))
    assert [a["status"] for a in answers[9:15]] == [201, 400, 200, 409, 400, 400]
    assert answers[13]["error"]["fields"][0]["loc"] == "schema" and answers[13]["job_id"] == "x"
    assert answers[10]["job_id"] is None and answers[0]["summary"]["job_id"] == "b0"
    assert answers[10]["error"]["message"].startswith("the line is not valid JSON")  # not "the body"
    assert answers[14]["error"]["message"] == "the line is empty: one record a line"
    assert sum(a["status"] == 201 for a in answers) == 1995
    assert client.get("/api/health").json["index"]["jobs"] == 1996


def test_a_body_that_starts_with_a_byte_order_mark_is_read(client):
    """A batch saved by PowerShell or Notepad (UTF-8 with a BOM) had its first record refused as
    "not valid JSON"; a single record too."""
    bom = b"\xef\xbb\xbf"
    response = client.post("/api/jobs", data=bom + orjson.dumps({"job_id": "one", "completed_at": 1}), headers=JSON)
    assert response.status_code == 201, response.json
    answers = post_batch(
        client, [bom + orjson.dumps({"job_id": "b1", "completed_at": 1}), b'{"job_id": "b2", "completed_at": 2}']
    )
    assert [a["status"] for a in answers] == [201, 201]


def test_batches_have_limits(client, settings):
    too_many = client.post("/api/jobs", data=b"{}\n" * 10_001, headers=NDJSON)
    assert_error(too_many, 413, "too_large")
    big = orjson.dumps({"job_id": "big", "completed_at": 1, "extra": {"x": "y" * (1 << 20)}})
    answers = post_batch(client, [big, orjson.dumps({"job_id": "small", "completed_at": 1})])
    assert [a["status"] for a in answers] == [400, 201] and "larger than 1 MiB" in answers[0]["error"]["message"]
    assert_error(client.post("/api/jobs/x/rating", data=b"{}", headers=NDJSON), 415, "unsupported_media_type")
    plain = assert_error(
        client.post("/api/jobs", data=b"{}", headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type"
    )
    assert "application/x-ndjson" in plain["message"]  # the other way in is named where it applies
    empty = client.post("/api/jobs", data=b"", headers=NDJSON)
    assert empty.status_code == 200 and empty.get_data() == b""


def test_json_answers_are_gzipped_for_clients_that_take_it(client):
    import gzip

    for i in range(40):
        assert (
            post(client, {"job_id": f"z{i}", "completed_at": 1_764_000_000 + i, "prompt": "a castle " * 20}).status_code
            == 201
        )
    plain = client.get("/api/jobs")
    zipped = client.get("/api/jobs", headers={"Accept-Encoding": "gzip, deflate"})
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in zipped.headers["Vary"]
    assert orjson.loads(gzip.decompress(zipped.get_data())) == plain.json
    assert len(zipped.get_data()) < len(plain.get_data()) / 4
    small = client.get("/api/jobs/z1/rating", headers={"Accept-Encoding": "gzip"})  # 405, small: as it is
    assert "Content-Encoding" not in small.headers


def test_the_change_feed_follows_arrival_not_completion_time(client):
    """The page follows what the index took in, in order: a job with an old completed_at (imported,
    written offline) is not missed, more than a page of new jobs neither, and ratings come too."""
    assert post(client, {"job_id": "first", "completed_at": 1_764_000_000}).status_code == 201
    position = client.get("/api/changes").json
    assert position["jobs"] == [] and position["next"].startswith("c1.")
    for i in range(620):
        body = {"job_id": f"n{i:03d}", "completed_at": 1_700_000_000 + i, "packs": ["A" if i % 2 else "B"]}
        assert post(client, body).status_code == 201
    client.put("/api/jobs/first/rating", json={"rating": 4})
    seen, after, rated = [], position["next"], []
    while True:
        answer = client.get("/api/changes", query_string={"after": after, "pack": "a"}).json
        seen += [job["job_id"] for job in answer["jobs"]]
        rated += answer["rated"]
        after = answer["next"]
        if not answer["more"]:
            break
    assert seen == [f"n{i:03d}" for i in range(620) if i % 2]  # in arrival order, filtered
    assert [r["job_id"] for r in rated] == ["first"] and rated[0]["rating"] == 4
    assert client.get("/api/changes", query_string={"after": after}).json["jobs"] == []
    assert_error(client.get("/api/changes?after=nonsense"), 400, "invalid_parameter")
    # An amended job says whether it now matches the filters (it may have come into them).
    for job_id, pack in (("n000", "A"), ("n001", "B")):
        assert client.patch(f"/api/jobs/{job_id}?replace=true", json={"packs": [pack]}).status_code == 200
    amended = client.get("/api/changes", query_string={"after": after, "pack": "a"}).json["amended"]
    assert {job["job_id"]: job["matches"] for job in amended} == {"n000": True, "n001": False}


def test_counts_of_matching_and_unrated_jobs(client):
    for i in range(30):
        assert (
            post(
                client, {"job_id": f"c{i}", "completed_at": 1_764_000_000 + i, "packs": ["P" if i < 12 else "Q"]}
            ).status_code
            == 201
        )
    for i in range(5):
        client.put(f"/api/jobs/c{i}/rating", json={"rating": 3})
    assert client.get("/api/count").json == {"jobs": 30, "exact": True, "unrated": 25, "unrated_exact": True}
    assert client.get("/api/count?pack=p").json == {"jobs": 12, "exact": True, "unrated": 7, "unrated_exact": True}
    assert client.get("/api/count?rating_min=3").json["jobs"] == 5
    # a listing's query string as it is (a new-user run: sort, limit or cursor gave 400)
    page = client.get("/api/jobs?pack=p&sort=-rating&limit=3").json
    listing = f"pack=p&sort=-rating&limit=3&cursor={page['next_cursor']}"
    assert client.get(f"/api/count?{listing}").json == {"jobs": 12, "exact": True, "unrated": 7, "unrated_exact": True}
    assert client.get("/api/count?sort=nonsense").status_code == 400  # still checked as a listing's


def test_the_pages_own_files_are_gzipped_and_revalidate(client):
    import gzip

    plain = client.get("/static/keys.js")
    assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
    zipped = client.get("/static/keys.js", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in zipped.headers["Vary"]
    assert gzip.decompress(zipped.get_data()) == plain.get_data()
    assert len(zipped.get_data()) < len(plain.get_data()) / 2
    etag = zipped.headers["ETag"]
    assert etag.startswith("W/") and etag != plain.headers["ETag"]
    again = client.get("/static/keys.js", headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""
    page = client.get("/", headers={"Accept-Encoding": "gzip"})
    assert page.headers["Content-Encoding"] == "gzip" and b'<dialog id="viewer"' in gzip.decompress(page.get_data())


def test_the_index_is_on_the_backend_asked_for(app, backend):
    """This module runs on SQLite and on a real PostgreSQL server (tests/postgres.py)."""
    service = app.extensions["learning_svc"]
    assert service.write_engine.dialect.name == backend
    assert service.read_engine.dialect.name == backend


@pytest.mark.parametrize("key", [2**40, -(2**40), 2**63 - 1, 1e300, -1e300, 0.5])
def test_a_forged_cursor_with_an_extreme_key_is_answered_on_every_sort(client, key):
    """A cursor is opaque but not signed: one made by hand with any number the database can bind
    must give a page (or a 400), never a 500 (PostgreSQL casts parameters to the column's type:
    a rating key past smallint would be an error there)."""
    from learning_svc.index.plan import SORTS
    from learning_svc.index.queries import encode_cursor

    for record in sample_records()[:5]:
        assert post(client, record).status_code == 201
    for sort in SORTS:
        response = client.get(f"/api/jobs?sort={sort}&cursor={encode_cursor(sort, key, 2**40)}")
        assert response.status_code in (200, 400), (sort, key, response.data)


def test_openapi_documents_503_wherever_the_index_is_used():
    """Reads answer 503 too while the index database cannot be reached (PostgreSQL restarting)."""
    from learning_svc.openapi import document

    missing = [
        (path, method)
        for path, operations in document()["paths"].items()
        for method, operation in operations.items()
        if path != "/api/fields" and "503" not in operation["responses"]
    ]
    assert missing == []
    assert "503" in document()["paths"]["/api/jobs"]["get"]["responses"]


def test_an_image_past_pillows_warning_size_is_shown_as_too_large_without_a_warning(client, settings):
    """A 10000×10000 PNG (100 MP: Pillow warns past 89.5) printed DecompressionBombWarning into
    the service's log at every thumbnail; its size is checked by the service (THUMB_MAX_PIXELS)."""
    import warnings
    import zlib

    from PIL import Image

    from image_fixtures import raw_png

    root = settings.output_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "huge.png").write_bytes(raw_png(10000, 10000, idat=zlib.compress(b"\x00" * 1000)))
    assert post(client, {"job_id": "huge", "completed_at": 1_764_000_000, "outputs": ["huge.png"]}).status_code == 201
    with warnings.catch_warnings(record=True) as caught:  # the filters as they are, recorded
        thumb = client.get("/api/jobs/huge/outputs/0/thumbnail")
        client.get("/api/jobs/huge/outputs/0")
    assert thumb.headers.get("X-Learning-Placeholder") == "too-large"
    assert [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)] == []


def test_a_thumbnail_says_why_it_cannot_show_an_image(client, settings, monkeypatch):
    """A file that is there but cannot be shown (damaged, or more pixels than a thumbnail decodes)
    got the "image not found" tile, which sent a user looking for a file that was there (a
    10000×10000 PNG from the image fixtures). Each case now has its own tile and header."""
    from PIL import Image

    from learning_svc import images

    root = settings.output_root
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (120, 80), (10, 200, 30)).save(root / "wide.png", "PNG")
    (root / "cut.png").write_bytes((root / "wide.png").read_bytes()[:60])  # the header and no pixels
    outputs = ["wide.png", "cut.png", "gone.png"]
    assert post(client, {"job_id": "t", "completed_at": 1_764_000_000, "outputs": outputs}).status_code == 201
    monkeypatch.setattr(images, "THUMB_MAX_PIXELS", 120 * 80 - 1)
    kinds = [client.get(f"/api/jobs/t/outputs/{n}/thumbnail").headers.get("X-Learning-Placeholder") for n in range(3)]
    assert kinds == ["too-large", "unreadable", "missing"]
    tiles = {client.get(f"/api/jobs/t/outputs/{n}/thumbnail").get_data() for n in range(3)}
    assert len(tiles) == 3  # three different tiles, each saying what it is
    monkeypatch.setattr(images, "THUMB_MAX_PIXELS", 120 * 80)
    shown = client.get("/api/jobs/t/outputs/0/thumbnail")
    assert shown.mimetype == "image/jpeg" and "X-Learning-Placeholder" not in shown.headers


def test_a_word_inside_a_cjk_phrase_is_found(client):
    """一只猫在花园里 was one token: q=花园 found nothing, and q=一只* was refused (a prefix of 2)."""
    job = {"job_id": "cjk-1", "completed_at": 1_764_003_600, "prompt": "一只猫在花园里, 水彩画"}
    assert client.post("/api/jobs", json=job).status_code == 201
    for q in ("花园", "一只*", "猫", "水彩画", "在花园"):
        assert client.get("/api/count", query_string={"q": q}).json["jobs"] == 1, q
    for q in ("园花", "花园里的狗"):
        assert client.get("/api/count", query_string={"q": q}).json["jobs"] == 0, q


def test_a_sampler_is_one_facet_value_whichever_ui_named_it(client):
    """A ComfyUI pipeline's `dpmpp_2m` + `karras`, InvokeAI's `dpmpp_2m_k`, older A1111's
    `DPM++ 2M Karras` and an imported image's `DPM++ 2M` + `Karras` were four samplers in the
    facets, and a filter on one name missed the others."""
    named = [("dpmpp_2m", "karras"), ("dpmpp_2m_k", None), ("DPM++ 2M Karras", None), ("DPM++ 2M", "Karras")]
    for n, (sampler, scheduler) in enumerate(named):
        body = {"job_id": f"s{n}", "completed_at": 1_764_000_000 + n, "sampler": sampler}
        assert post(client, {**body, "scheduler": scheduler} if scheduler else body).status_code == 201
    facets = client.get("/api/facets").json["facets"]
    assert [(v["value"], v["count"]) for v in facets["sampler"]] == [("DPM++ 2M", 4)]
    assert [(v["value"], v["count"]) for v in facets["scheduler"]] == [("Karras", 4)]
    for name in ("dpmpp_2m", "DPM++ 2M Karras", "dpm++ 2m"):
        assert len(client.get("/api/jobs", query_string={"sampler": name}).json["jobs"]) == 4, name
    record = client.get("/api/jobs/s0").json["record"]
    assert (record["sampler"], record["scheduler"]) == ("dpmpp_2m", "karras")  # the record keeps what was written


def test_facets_say_which_value_each_filter_of_a_link_is(client):
    """A link's `sampler=dpmpp_2m` filtered the DPM++ 2M jobs, but nothing said that its
    facet value is "DPM++ 2M": the page listed a ticked "dpmpp_2m" with 0 jobs beside it."""
    body = {"completed_at": 1_764_000_000, "model": "juggernautXL.safetensors [dd08fa32f9]", "steps": 30}
    assert post(client, {**body, "job_id": "f1", "sampler": "dpmpp_2m", "cfg_scale": 7}).status_code == 201
    query = {"sampler": ["dpmpp_2m", " "], "model": "juggernautXL.safetensors", "steps": "30.0", "pack": "x"}
    answer = client.get("/api/facets", query_string=query).json
    assert answer["filter_values"] == {
        "sampler": {"dpmpp_2m": "DPM++ 2M"},
        "model": {"juggernautXL.safetensors": "juggernautXL"},
        "steps": {"30.0": "30"},
        "pack": {"x": "x"},
    }
    facets = client.get("/api/facets", query_string={"model": "juggernautXL"}).json
    shown = answer["filter_values"]["sampler"]["dpmpp_2m"]
    assert [v["value"] for v in facets["facets"]["sampler"]] == [shown]  # the value the facets list
    assert client.get("/api/facets").json["filter_values"] == {}


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e999"])
@pytest.mark.parametrize("path", ["/api/jobs", "/api/facets", "/api/export", "/api/count"])
def test_a_number_filter_that_is_not_a_finite_number_is_400(client, path, value):
    """SPEC §2.1: bad values are 400. `steps=abc` was, but `cfg_scale=nan` or `steps=1e999`
    answered 200 with nothing matched."""
    for name in ("cfg_scale", "steps"):
        error = assert_error(client.get(path, query_string={name: value}), 400, "invalid_parameter")
        assert "finite number" in error["message"], error


@pytest.mark.parametrize("path", ["/api/jobs", "/api/count", "/api/facets", "/api/export", "/api/changes"])
def test_an_image_rating_filter_is_an_integer_from_0_to_5(client, path):
    """SPEC §2.1: bad values are 400. `image_rating=7` and `image_rating=2.5` answered 200 with
    no jobs (`rating_min=6` was a 400 already)."""
    assert post(client, {"job_id": "r", "completed_at": 1_764_000_000, "outputs": ["a.png"]}).status_code == 201
    assert client.put("/api/jobs/r/outputs/0/rating", json={"rating": 4}).status_code == 200
    for value in ("7", "2.5", "-1", "4.0", "four"):
        error = assert_error(client.get(path, query_string={"image_rating": value}), 400, "invalid_parameter")
        assert error["message"].startswith("image_rating: must be an integer from 0 to 5, got "), error
    assert client.get(path, query_string={"image_rating": ["0", "5"]}).status_code == 200
    assert client.get("/api/count", query_string={"image_rating": "4"}).json["jobs"] == 1
    items = client.get("/api/openapi.json").json["paths"]["/api/jobs"]["get"]["parameters"]
    schema = next(p["schema"] for p in items if p["name"] == "image_rating")
    assert schema["items"] == {"type": "integer", "minimum": 0, "maximum": 5}


@pytest.mark.parametrize(
    "path, own",
    [
        ("/api/jobs", ["cursor", "limit"]),
        ("/api/count", ["cursor"]),
        ("/api/facets", ["facet_size"]),
        ("/api/export", ["format"]),
        ("/api/changes", ["after"]),
    ],
)
def test_an_empty_parameter_is_400_not_passed_over(client, path, own):
    """`pack=` and `cursor=` were taken as if they were not there (the page never sends an empty value)."""
    for name in ["pack", "q", "image_rating", "rating_min", *own]:
        error = assert_error(client.get(f"{path}?{name}="), 400, "invalid_parameter")
        assert error["message"] == f"{name}: must not be empty: give a value, or leave the parameter out", error
    assert client.get(f"{path}?pack=a&pack=").status_code == 400
    assert client.get(f"{path}?pack=a").status_code == 200


def test_an_endpoint_without_parameters_says_it_takes_none(client):
    """`GET /api/fields?x=1` said "unknown parameter (known: )"."""
    error = assert_error(client.get("/api/fields?x=1"), 400, "invalid_parameter")
    assert error["message"].endswith("unknown parameter (this endpoint takes none)"), error


def test_a_sampler_named_with_its_scheduler_filters_that_scheduler_too(client):
    """`sampler=DPM++ 2M Karras` (as the card shows an older A1111 image's sampler) counted every
    DPM++ 2M job, Normal and no scheduler too: the scheduler part was dropped."""
    named = [
        ("DPM++ 2M Karras", None),
        ("dpmpp_2m_k", None),
        ("DPM++ 2M", "Karras"),
        ("DPM++ 2M", "Normal"),
        ("DPM++ 2M", None),
    ]
    for n, (sampler, scheduler) in enumerate(named):
        body = {"job_id": f"s{n}", "completed_at": 1_764_000_000 + n, "sampler": sampler}
        assert post(client, {**body, "scheduler": scheduler} if scheduler else body).status_code == 201
    for query in (
        {"sampler": "DPM++ 2M Karras"},
        {"sampler": "dpmpp_2m_k"},
        {"sampler": "DPM++ 2M Karras", "scheduler": "karras"},
    ):
        listed = sorted(job["job_id"] for job in client.get("/api/jobs", query_string=query).json["jobs"])
        assert listed == ["s0", "s1", "s2"], query
    assert client.get("/api/count", query_string={"sampler": "DPM++ 2M"}).json["jobs"] == 5
    for query, param in (
        ({"sampler": ["DPM++ 2M Karras", "Euler a"]}, "sampler"),  # (2M and Karras) or Euler a: not one filter
        ({"sampler": "DPM++ 2M Karras", "scheduler": "Normal"}, "scheduler"),
    ):
        error = assert_error(client.get("/api/jobs", query_string=query), 400, "invalid_parameter")
        assert error["fields"][0]["loc"] == param and "scheduler as its own filter" in error["message"], error
    facets = client.get("/api/facets", query_string={"sampler": "DPM++ 2M Karras"}).json
    # the page's address becomes sampler=DPM++ 2M&scheduler=Karras: each picker's own value
    assert (facets["filter_values"], facets["implied"]) == (
        {"sampler": {"DPM++ 2M Karras": "DPM++ 2M"}},
        {"scheduler": ["Karras"]},
    )
    assert [(v["value"], v["count"]) for v in facets["facets"]["scheduler"]] == [("Karras", 3)]
    for query in ({"sampler": "DPM++ 2M"}, {"sampler": "DPM++ 2M Karras", "scheduler": "Karras"}):
        assert client.get("/api/facets", query_string=query).json["implied"] == {}, query


def test_filter_values_of_a_thousand_values_are_looked_up_in_one_statement(client):
    """One OR term per value went past SQLite's expression depth at ~1,000 values: 503."""
    assert post(client, {"job_id": "m", "completed_at": 1_764_000_000, "model": "m7"}).status_code == 201
    query = {"model": [f"M{n}" for n in range(1_200)], "lora": [f"l{n}" for n in range(300)]}
    answer = client.get("/api/facets", query_string=query)
    assert answer.status_code == 200, answer.json
    assert answer.json["filter_values"]["model"]["M7"] == "m7" and len(answer.json["filter_values"]["model"]) == 1_200


def test_filter_values_are_the_facets_own_spelling_whatever_the_case(client):
    """`status=FAILED` was echoed as "FAILED" where the facets list "failed"."""
    assert (
        post(
            client, {"job_id": "f", "completed_at": 1_764_000_000, "status": "failed", "model": "juggernautXL"}
        ).status_code
        == 201
    )
    query = {"status": "FAILED", "model": "JUGGERNAUTXL.safetensors", "pack": "Never-Seen"}
    assert client.get("/api/facets", query_string=query).json["filter_values"] == {
        "status": {"FAILED": "failed"},
        "model": {"JUGGERNAUTXL.safetensors": "juggernautXL"},
        "pack": {"Never-Seen": "Never-Seen"},  # no job has it: as the link spells it
    }


def test_health_ignores_a_monitor_s_cache_buster(client):
    """The one endpoint that does not refuse unknown parameters (README): a monitor's `?_=…`."""
    answer = client.get("/api/health", query_string={"_": "1733500000"})
    assert answer.status_code == 200 and answer.json["status"] == "ok", answer.json


def test_an_image_has_one_address_not_one_per_leading_zero(client, settings):
    """`outputs/01` was image 1 too: its rating PUT was taken, a second URL for the same image."""
    assert (
        post(client, {"job_id": "z", "completed_at": 1_764_000_000, "outputs": ["a.png", "b.png"]}).status_code == 201
    )
    size = settings.ratings_path.stat().st_size if settings.ratings_path.exists() else 0
    for path in ("/api/jobs/z/outputs/01/rating", "/api/jobs/z/outputs/+1/rating", "/api/jobs/z/outputs/00/rating"):
        assert_error(client.put(path, json={"rating": 2}), 404, "not_found")
    assert (settings.ratings_path.stat().st_size if settings.ratings_path.exists() else 0) == size
    error = assert_error(client.get("/api/jobs/z/outputs/01"), 404, "not_found")
    assert error["message"].startswith("'01' is no image number: images are numbered 0, 1, 2"), error
    assert "check your spelling" not in assert_error(client.get("/api/nowhere"), 404, "not_found")["message"]
    assert client.put("/api/jobs/z/outputs/1/rating", json={"rating": 2}).status_code == 200
    assert client.put("/api/jobs/z/outputs/0/rating", json={"rating": 3}).status_code == 200
    assert client.get("/api/jobs/z").json["review"]["images"] == {"0": 3, "1": 2}


def test_options_says_what_a_path_allows_with_no_body(client):
    """Flask's own OPTIONS answer was an empty text/html 200 in a JSON API."""
    for path, allowed in (
        ("/api/jobs", {"GET", "HEAD", "POST", "OPTIONS"}),
        ("/api/jobs/a/rating", {"PUT", "DELETE", "OPTIONS"}),
    ):
        response = client.options(path)
        assert response.status_code == 204 and response.data == b""
        assert "Content-Type" not in response.headers and "Content-Length" not in response.headers
        assert set(response.headers["Allow"].split(", ")) == allowed


@pytest.mark.parametrize(
    "method, path, body, name",
    [
        ("post", "/api/jobs", {"job_id": "a", "completed_at": "soon"}, "job record"),
        ("put", "/api/jobs/e/rating", {"rating": 9}, None),  # its own message: "rating must be ..."
        ("delete", "/api/jobs/e/rating", {"source": 5}, "rating removal"),
        ("put", "/api/jobs/e/outputs/0/rating", {"rating": 9}, "image rating"),
        ("post", "/api/jobs/e/review", {"flag": "maybe"}, "review"),
        ("post", "/api/ratings:batch", {"job_ids": ["e"], "set": {"flag": 1}}, "batch change"),
    ],
)
def test_a_bodys_error_names_it_in_words_not_by_its_schema(client, method, path, body, name):
    """The page shows these messages in its toast: "invalid ReviewRequest: ..." named a schema."""
    assert post(client, {"job_id": "e", "completed_at": 1_764_000_000, "outputs": ["a.png"]}).status_code == 201
    error = assert_error(getattr(client, method)(path, json=body), 400, "invalid")
    assert name is None or error["message"].startswith(f"invalid {name}: "), error
    assert not re.search(r"Request|JobRecord|ReviewSet", error["message"]), error


def test_another_image_copied_over_an_output_with_its_size_and_time_is_not_the_cached_one(client, settings):
    """The thumbnail cache and the ETag were keyed by path, size and mtime: another image of the
    same size copied over the output with its time kept (`cp -p`) got the old thumbnail, and a
    304 for the old bytes."""
    import io

    from PIL import Image

    def png(color) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), color).save(buffer, "PNG", compress_level=0)  # same size for any color
        return buffer.getvalue()

    red, blue = png((255, 0, 0)), png((0, 0, 255))
    assert len(red) == len(blue)
    settings.output_root.mkdir(parents=True, exist_ok=True)
    path = settings.output_root / "same.png"
    path.write_bytes(red)
    os.utime(path, (1_764_000_000, 1_764_000_000))
    assert post(client, {"job_id": "s", "completed_at": 1_764_000_000, "outputs": ["same.png"]}).status_code == 201
    first = client.get("/api/jobs/s/outputs/0")
    etag = first.headers["ETag"]
    first.close()
    thumb = client.get("/api/jobs/s/outputs/0/thumbnail").get_data()
    path.with_name("new.png").write_bytes(blue)
    os.utime(path.with_name("new.png"), (1_764_000_000, 1_764_000_000))
    path.with_name("new.png").replace(path)
    again = client.get("/api/jobs/s/outputs/0", headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.get_data() == blue and again.headers["ETag"] != etag
    again.close()
    shown = Image.open(io.BytesIO(client.get("/api/jobs/s/outputs/0/thumbnail").get_data()))
    assert client.get("/api/jobs/s/outputs/0/thumbnail").get_data() != thumb
    assert shown.convert("RGB").getpixel((8, 8))[2] > 200  # blue


def test_exports_leave_threads_for_the_page_and_health(client, settings):
    """Eight exports at once took the 8 threads that answer reads: the page and /api/health
    waited 20-36 s behind them. A quarter of the threads send exports; one more is 503 with
    Retry-After, and one finished (or cut off) frees its place."""
    assert post(client, {"job_id": "x", "completed_at": 1_764_000_000}).status_code == 201
    slots = max(1, settings.threads // 4)
    running = [client.get("/api/export?format=jsonl", buffered=False) for _ in range(slots)]
    assert all(response.status_code == 200 for response in running)
    refused = client.get("/api/export?format=csv")
    error = assert_error(refused, 503, "unavailable")
    assert refused.headers["Retry-After"] == "5" and "exports are being sent already" in error["message"]
    assert client.get("/api/health").status_code == 200 and client.get("/api/jobs").status_code == 200
    running.pop().close()  # sent (or the client went away): its place is free
    again = client.get("/api/export?format=jsonl")
    assert again.status_code == 200 and orjson.loads(again.get_data().splitlines()[0])["job_id"] == "x"
    for response in reversed(running):  # the test client's request contexts: last in, first out
        response.close()


def test_a_large_image_s_thumbnail_is_not_waited_for_while_another_is_made(client, settings, monkeypatch):
    """A new-user run asked for twelve 8000 x 8000 thumbnails at once: made one at a time, the
    others waited on the read threads, /api/count took 6.9 s and a rating 2.9 s. While one is
    made, another is answered at once: 503 with Retry-After, which the page asks again after."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from learning_svc import images

    root = settings.output_root
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (120, 80), (200, 40, 40)).save(root / "big.png")
    assert post(client, {"job_id": "big", "completed_at": 1_764_000_000, "outputs": ["big.png"]}).status_code == 201
    monkeypatch.setattr(images, "LARGE_DECODE_PIXELS", 120 * 80 - 1)  # this one is large
    with ThreadPoolExecutor(1) as pool, images._large_decodes:  # another large one is being made
        busy = pool.submit(client.get, "/api/jobs/big/outputs/0/thumbnail").result(timeout=5)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1", busy.status_code
        assert busy.json["error"]["code"] == "unavailable" and "no-store" in busy.headers["Cache-Control"]
    shown = client.get("/api/jobs/big/outputs/0/thumbnail")
    assert shown.status_code == 200 and shown.mimetype == "image/jpeg"
    assert images._large_decodes.acquire(blocking=False)  # given back
    images._large_decodes.release()


def test_the_memory_a_large_thumbnail_took_is_given_back_whichever_thread_made_it(tmp_path):
    """glibc keeps freed memory in the arena of the thread that freed it: after a page of
    8000 x 8000 thumbnails, made one at a time on the eight read threads, a new-user run's
    server sat idle at 869 MB. Eight 36-megapixel thumbnails on eight threads, in a process
    of its own: what it holds afterwards is about what it held before."""
    import subprocess
    import sys

    script = r"""
import sys, threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from PIL import Image
from learning_svc import images

def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) >> 10

folder = Path(sys.argv[1])
Image.new("RGB", (6000, 6000), (10, 200, 30)).save(folder / "big.png", compress_level=1)
images.quiet_size_warnings()
before, one_at_a_time = rss(), threading.Lock()

def thumbnail(i):
    with one_at_a_time:
        output = images.open_output(str(folder / "big.png"), folder)
        try:
            assert images.thumbnail(output, folder / f"cache{i}")
        finally:
            output.close()

with ThreadPoolExecutor(8) as pool:
    list(pool.map(thumbnail, range(8)))
    print(before, rss())
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, after = map(int, done.stdout.split())
    assert after - before < 300, (before, after)  # one 36-megapixel decode is 108 MB; kept by each thread: ~800


def test_a_png_pillow_refuses_for_a_text_chunk_alone_is_shown(client, settings):
    """A PNG whose text chunk is damaged, or over Pillow's limits (a compressed ComfyUI workflow
    inflating past 1 MiB, 66 MiB of text in all), is one browsers show and the importer imports
    (without that chunk): its thumbnail and the image itself were "cannot show this image"."""
    import struct
    import zlib

    from image_fixtures import raw_png

    root = settings.output_root
    root.mkdir(parents=True, exist_ok=True)
    damaged = bytearray(raw_png(120, 80, pre_idat=[(b"tEXt", b"parameters\0a cat\nSteps: 5")]))
    at = damaged.index(b"tEXt")
    damaged[at + 4 + struct.unpack(">I", damaged[at - 4 : at])[0]] ^= 0xFF  # its checksum
    files = {
        "damaged.png": bytes(damaged),
        "ztxt.png": raw_png(120, 80, pre_idat=[(b"zTXt", b"workflow\0\0" + zlib.compress(b"y" * (2 << 20)))]),
        "texts.png": raw_png(
            120, 80, post_idat=[(b"tEXt", b"a\0" + b"x" * (33 << 20)), (b"tEXt", b"b\0" + b"x" * (33 << 20))]
        ),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    body = {"job_id": "texts", "completed_at": 1_764_000_000, "outputs": list(files)}
    assert post(client, body).status_code == 201
    for n, data in enumerate(files.values()):
        thumb = client.get(f"/api/jobs/texts/outputs/{n}/thumbnail")
        assert thumb.mimetype == "image/jpeg" and "X-Learning-Placeholder" not in thumb.headers, n
        image = client.get(f"/api/jobs/texts/outputs/{n}")
        assert "X-Learning-Placeholder" not in image.headers and image.get_data() == data, n


def test_a_retry_that_gives_num_outputs_or_leaves_it_out_is_identical(client, settings):
    """`num_outputs` can only be the number of outputs, yet a retry that left it out (or gave it
    where the first POST had not) was a 409 conflict: it was hashed as given."""
    base = {"job_id": "n1", "completed_at": 1_764_000_000, "outputs": ["a.png", "b.png"]}
    other = {**base, "job_id": "n2"}
    assert post(client, {**base, "num_outputs": 2}).status_code == 201
    assert post(client, other).status_code == 201
    size = settings.log_path.stat().st_size
    assert post(client, base).status_code == 200
    assert post(client, {**other, "num_outputs": 2}).status_code == 200
    lines = [
        orjson.dumps(base),
        orjson.dumps({**other, "num_outputs": 2}),
        orjson.dumps({**base, "outputs": ["c.png"]}),
    ]
    assert [a["status"] for a in post_batch(client, lines)] == [200, 200, 409]
    assert settings.log_path.stat().st_size == size


def test_a_record_an_earlier_version_stored_with_num_outputs_stays_identical_to_its_retries(settings):
    """Versions before this one hashed `num_outputs` as given: a record stored so is an identical
    retry of its POST with it or without it, single or in a batch (its lines validated in worker
    processes too), and another content is still a conflict."""
    from learning_svc import create_app, records

    body = {"job_id": "legacy", "completed_at": 1_764_000_000, "outputs": ["a.png"], "num_outputs": 1}
    job = records.parse(records.JobIn, body)
    line = records.stored_job(job)
    line["input_hash"] = records.earlier_input_hash(job)  # as the earlier version stored it
    assert line["input_hash"] != records.input_hash(job)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.log_path.write_bytes(records.dumps(line))
    app = create_app(settings)
    try:
        client = app.test_client()
        assert post(client, body).status_code == 200
        without = {k: v for k, v in body.items() if k != "num_outputs"}
        assert post(client, without).status_code == 200
        assert post(client, {**body, "outputs": ["b.png"]}).status_code == 409
        filler = [orjson.dumps({"job_id": f"f{i}", "completed_at": 1_764_000_000 + i}) for i in range(60)]
        answers = post_batch(client, [orjson.dumps(body), orjson.dumps(without), *filler])
        assert [a["status"] for a in answers[:2]] == [200, 200] and {a["status"] for a in answers[2:]} == {201}
        assert client.get("/api/health").json["jsonl"]["jobs_lines"] == 61
    finally:
        app.extensions["learning_svc"].close()


def test_whether_an_output_is_an_image_is_found_once_per_file_and_never_by_copying_it(client, settings, monkeypatch):
    """An outside review: every request for an output (the image, its thumbnail, each 503 and
    retry) checked the whole file again, and a PNG Pillow refused was copied whole into memory
    (then refused anyway, when cut short: 1.4 GB for eight requests of a 139 MB one); a chunk
    length of 4 GB was read as asked. Now the chunk headers are walked, nothing is copied, and
    what a file state was found to be is remembered."""
    import struct
    import tracemalloc
    import zlib

    from PIL import Image

    from learning_svc import images

    from image_fixtures import png_chunk

    root = settings.output_root
    root.mkdir(parents=True, exist_ok=True)
    big = io.BytesIO()
    Image.frombytes("RGB", (2000, 2000), os.urandom(2000 * 2000 * 3)).save(big, format="PNG", compress_level=0)
    (root / "cut.png").write_bytes(big.getvalue()[: 8 << 20])  # cut short: no image
    small = io.BytesIO()
    Image.new("RGB", (8, 8)).save(small, format="PNG")
    bogus = small.getvalue()[:33] + struct.pack(">I4s", 0xFFFFFFF0, b"tEXt") + b"x" * 100
    (root / "bogus.png").write_bytes(bogus)
    texts = (
        small.getvalue()[:33] + png_chunk(b"zTXt", b"w\0\0" + zlib.compress(b"y" * (2 << 20))) + small.getvalue()[33:]
    )
    (root / "texts.png").write_bytes(texts)
    body = {"job_id": "odd", "completed_at": 1_764_000_000, "outputs": ["cut.png", "bogus.png", "texts.png"]}
    assert post(client, body).status_code == 201
    checked = []
    verified = images._verified
    monkeypatch.setattr(images, "_verified", lambda file: checked.append(1) or verified(file))
    tracemalloc.start()
    try:
        for _ in range(3):
            kinds = [client.get(f"/api/jobs/odd/outputs/{n}").headers.get("X-Learning-Placeholder") for n in range(3)]
            assert kinds == ["unreadable", "unreadable", None], kinds
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak
    assert len(checked) == 4  # once each (texts.png: as it is, then without its text chunk), not per request
    thumb = client.get("/api/jobs/odd/outputs/2/thumbnail")
    assert thumb.mimetype == "image/jpeg" and "X-Learning-Placeholder" not in thumb.headers


def test_a_png_of_text_chunks_between_thousands_of_others_is_not_shown_through_a_view(client, settings):
    """An outside review: a 1.2 MB PNG whose damaged text chunk is followed by 50,000 pairs of
    tiny chunks made a view of 50,000 byte ranges, kept per file state (8 MB) and read slowly.
    A view holds at most 1,000 ranges; past that the file is no image we show."""

    from PIL import Image

    from learning_svc import images

    from image_fixtures import png_chunk

    root = settings.output_root
    root.mkdir(parents=True, exist_ok=True)
    small = io.BytesIO()
    Image.new("RGB", (4, 4)).save(small, format="PNG")
    data = small.getvalue()
    pairs = (png_chunk(b"prVt", b"") + png_chunk(b"tEXt", b"a\0b")) * 5_000
    crafted = data[:33] + png_chunk(b"tEXt", b"a\0b")[:-4] + b"\0\0\0\0" + pairs + data[33:]
    (root / "crafted.png").write_bytes(crafted)
    few_pairs = (png_chunk(b"prVt", b"") + png_chunk(b"tEXt", b"a\0b")) * 400
    few = data[:33] + png_chunk(b"tEXt", b"a\0b")[:-4] + b"\0\0\0\0" + few_pairs + data[33:]
    (root / "few.png").write_bytes(few)  # 400 pairs: a view of about 400 ranges, shown
    assert (
        post(client, {"job_id": "c", "completed_at": 1_764_000_000, "outputs": ["crafted.png", "few.png"]}).status_code
        == 201
    )
    assert client.get("/api/jobs/c/outputs/0").headers.get("X-Learning-Placeholder") == "unreadable"
    assert max((len(v) for v in images._readable_files.values() if isinstance(v, list)), default=0) <= 1_000
    assert "X-Learning-Placeholder" not in client.get("/api/jobs/c/outputs/1").headers
