"""`learning-svc import` of a StableNew installation (files generated in StableNew's shapes) and of
learning_svc's own export: what lands, with which times, ratings and packs, and that a second
import writes nothing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import requests

from learning_svc import create_app, gen_stablenew
from learning_svc.config import Settings
from learning_svc.importers.run import run_import

from procs import ServerProcess, cli_env, in_app, journal_lines, listing_pages, run_cli


@pytest.fixture
def installation(tmp_path) -> Path:
    return gen_stablenew.write_installation(tmp_path / "StableNew", jobs=120, images=18, groups=2, seed=5)


def sizes(settings: Settings) -> tuple[int, int]:
    return tuple(p.stat().st_size if p.exists() else 0 for p in (settings.log_path, settings.ratings_path))


def history_by_id(path: Path) -> dict[str, list[dict]]:
    jobs: dict[str, list[dict]] = {}
    for raw in path.read_text().splitlines():
        line = json.loads(raw)
        jobs.setdefault(line["job_id"], []).append(line)
    return jobs


def test_a_stablenew_installation_imports_and_a_second_import_writes_nothing(settings, installation):
    result = run_import(settings, [installation])
    total = result.tally.total()
    history = history_by_id(installation / "data" / "job_history.jsonl")
    finished = {job_id for job_id, lines in history.items() if lines[-1]["status"] in ("completed", "failed")}
    assert total["refused"] == 0, result.tally.problems
    assert total["skipped"] == len(history) - len(finished) > 0  # never finished: reported, not imported
    skipped = [p for p in result.tally.problems if p["outcome"] == "skipped"]
    assert all("did not finish" in p["reason"] for p in skipped) and result.report.exists()
    assert len(result.report.read_text().splitlines()) == len(skipped)
    before = sizes(settings)

    again = run_import(settings, [installation])
    assert again.tally.total()["imported"] == 0 and again.tally.total()["amended"] == 0
    assert sizes(settings) == before  # not one byte written

    app = create_app(settings)
    try:
        client = app.test_client()
        listed = {job["job_id"]: job for page in listing_pages(in_app(client)) for job in page}
        assert finished <= set(listed)
        for job_id in sorted(finished)[:40]:
            last = next(line for line in reversed(history[job_id]) if line["status"] in ("completed", "failed"))
            utc = datetime.fromisoformat(last["completed_at"]).replace(tzinfo=UTC).timestamp()
            assert listed[job_id]["completed_at"] == pytest.approx(utc, abs=1e-3)  # naive StableNew times are UTC
        enriched = {
            job_id: lines[-1]["prompt_pack_id"] for job_id, lines in history.items() if lines[-1]["prompt_pack_id"]
        }
        assert enriched and all(listed[job_id]["packs"] == [pack] for job_id, pack in enriched.items())
        not_ok = [
            job_id
            for job_id in finished
            if (history[job_id][-1].get("result") or {}).get("result", {}).get("success") is False
        ]
        assert not_ok and all(listed[job_id]["status"] == "failed" and listed[job_id]["error"] for job_id in not_ok)
        # learning records: a job per image with its experiment and latest rating; notes kept
        experiments = client.get("/api/facets").json["facets"]["variable"]
        assert {"value": "CFG Scale", "count": 18, "mean_rating": experiments[0]["mean_rating"]} in experiments
        cfg10 = client.get("/api/jobs", query_string={"variable": "cfg scale", "variant": "10"}).json["jobs"]
        assert cfg10 and all(job["cfg_scale"] == 10.0 for job in cfg10)
        records = [
            json.loads(raw) for raw in (installation / "data/learning/learning_records.jsonl").read_text().splitlines()
        ]
        last_rating = {r["metadata"]["image_path"]: r["metadata"]["user_rating"] for r in records}
        by_image = {
            job["outputs"][0]: job for job in listed.values() if job["outputs"] and "learning_CFG" in job["outputs"][0]
        }
        assert {image: job["rating"] for image, job in by_image.items()} == last_rating
        noted = client.get(f"/api/jobs/{by_image[records[0]['metadata']['image_path']]['job_id']}").json["record"]
        assert noted["extra"]["user_notes"] == "too soft"
        # discovered experiments: one job per item, rated where reviewed (StableNew's 0 = unrated)
        groups = client.get("/api/jobs", query_string={"experiment": "TXT2IMG · varying model", "limit": 50}).json[
            "jobs"
        ]
        assert len(groups) == 10 and sorted(j["rating"] for j in groups if j["rating"] is not None) == [1, 1, 2, 2]
        # StableNew's own names resolved: snapshot prompts, stage_chain model, lora_tags, bare <name-neg> embeddings
        # (the run's legacy config comes first where it knows the value, then the snapshot's stages)
        snapshot_jobs = [job_id for job_id in finished if history[job_id][-1]["snapshot"]]
        assert snapshot_jobs
        for job_id in snapshot_jobs:
            last = history[job_id][-1]
            config = (last.get("result") or {}).get("config") or {}
            chain = last["snapshot"]["stage_chain"][0]
            record = client.get(f"/api/jobs/{job_id}").json["record"]
            assert record["prompt"] == (config.get("prompt") or last["snapshot"]["positive_prompt"])
            assert record["model"] == (config.get("model") or chain["model"])
            assert record["steps"] == (config.get("steps") or 28) and record["scheduler"] == "Karras"
            assert {x["name"] for x in record["loras"]} >= {"add-detail-xl", "face"}
            assert {x["name"] for x in record["embeddings"]} >= {"easynegative"}
    finally:
        app.extensions["learning_svc"].close()


def test_a_grown_history_is_amended_with_what_the_jobs_lacked(settings, installation):
    """StableNew appends a second `completed` line with the pack after the first import: the
    next import adds the pack by an amendment, and the job's record says so."""
    path = installation / "data" / "job_history.jsonl"
    run_import(settings, [path])
    history = history_by_id(path)
    plain = next(
        job_id
        for job_id, lines in history.items()
        if lines[-1]["status"] == "completed" and not lines[-1]["prompt_pack_id"]
    )
    with open(path, "a") as f:
        f.write(json.dumps({**history[plain][-1], "prompt_source": "pack", "prompt_pack_id": "LATE_PACK"}) + "\n")
    result = run_import(settings, [path])
    assert result.tally.total()["amended"] == 1 and result.tally.total()["imported"] == 0
    # StableNew's own account of the job (extra.stablenew) grew with the line: not a conflict
    # to report (it was, and every later import then said "refused")
    assert [p for p in result.tally.problems if p["outcome"] != "skipped"] == []
    app = create_app(settings)
    try:
        detail = app.test_client().get(f"/api/jobs/{plain}").json
        assert detail["record"]["packs"] == ["LATE_PACK"] and len(detail["amendments"]) == 1
    finally:
        app.extensions["learning_svc"].close()
    again = run_import(settings, [path])
    assert again.tally.total()["amended"] == again.tally.total()["refused"] == 0
    # The command's closing sentence says it too (only the table did: "0 were imported, … present").
    other = next(
        job_id
        for job_id, lines in history.items()
        if job_id != plain and lines[-1]["status"] == "completed" and not lines[-1]["prompt_pack_id"]
    )
    with open(path, "a") as f:
        f.write(json.dumps({**history[other][-1], "prompt_source": "pack", "prompt_pack_id": "LATE_PACK"}) + "\n")
    said = run_cli("import", "--data-dir", str(settings.data_dir), str(path))
    assert said.returncode == 0 and "1 amended with what they lacked." in said.stdout, said.stdout


def test_bad_entries_are_reported_and_never_stop_the_rest(settings, tmp_path, installation):
    path = installation / "data" / "job_history.jsonl"
    lines = path.read_text().splitlines()
    lines.insert(3, "{torn line")
    lines.insert(5, json.dumps({"job_id": "no-times", "status": "completed", "created_at": None}))
    path.write_text("\n".join(lines) + "\n")
    stray = tmp_path / "notes.jsonl"
    stray.write_text('{"hello": "world"}\n')
    result = run_import(settings, [installation, stray, tmp_path / "missing"])
    reasons = {p["reason"] for p in result.tally.problems}
    assert any(r.startswith("not JSON") for r in reasons)
    assert "job no-times ended (completed) without a time" in reasons
    assert "not a history file this importer knows" in reasons and "no such file or folder" in reasons
    refused = [p for p in result.tally.problems if p["outcome"] == "refused"]
    assert [p["line"] for p in refused] == [6]  # the one job that cannot be imported, by its line
    assert result.tally.total()["imported"] > 100


def test_an_import_into_a_new_folder_no_service_serves_says_so(tmp_path, installation):
    done = run_cli("import", "--data-dir", str(tmp_path / "new"), str(installation), env=cli_env(), timeout=120)
    assert done.returncode == 0 and "held no history before" in done.stdout, done.stdout
    # said as a condition: with the index on PostgreSQL, whether a service serves this folder is
    # not known, and "a service serving another folder does not see these jobs" misled (outside run)
    assert "If your service serves another folder, it does not see these\n   jobs" in done.stdout


def test_dry_run_writes_nothing(settings, installation):
    result = run_import(settings, [installation], dry_run=True)
    assert result.tally.total()["imported"] > 100
    assert sizes(settings) == (0, 0)
    # Into a data folder not made yet: none is made (an index, lock files and a report were).
    assert not settings.data_dir.exists() and result.report is None and result.tally.problems
    dry = run_cli("import", "--dry-run", "--data-dir", str(settings.data_dir), str(installation))
    assert (
        dry.returncode == 0
        and "refused and skipped entries (and what amended ones left out), with their reasons:" in dry.stdout
    ), dry.stderr
    assert "(nothing recorded)" in dry.stdout and not settings.data_dir.exists()
    real = run_import(settings, [installation])
    assert real.tally.total()["imported"] == result.tally.total()["imported"]
    # Again, dry: nothing would be imported, as the real run would import nothing (it said "8
    # ratings would be imported": a rating the data folder has at the same time)
    assert run_import(settings, [installation], dry_run=True).tally.total()["imported"] == 0
    # Into the data folder that now exists: still nothing written, not even its report (one was).
    reports = sorted((settings.data_dir / "imports").iterdir())
    sizes_now = sizes(settings)
    again = run_cli("import", "--dry-run", "--data-dir", str(settings.data_dir), str(installation))
    assert (
        again.returncode == 0
        and "refused and skipped entries (and what amended ones left out), with their reasons:" in again.stdout
    )
    assert sorted((settings.data_dir / "imports").iterdir()) == reports and sizes(settings) == sizes_now


def test_import_while_the_server_runs_shows_the_jobs_at_once(tmp_path, installation):
    """The command on the data dir of a running server: the server lists the jobs when it ends."""
    server = ServerProcess(tmp_path / "learning").start()
    try:
        done = run_cli("import", "--data-dir", str(server.data_dir), str(installation), env=cli_env(), timeout=120)
        assert done.returncode == 0, done.stderr
        assert "total" in done.stdout and "refused and skipped entries" in done.stdout
        # The server serves this folder: no note that "a service serving another folder" misses them
        assert "held no history before" not in done.stdout
        listed = [
            job
            for page in listing_pages(
                lambda query: requests.get(server.url + "/api/jobs", params=query, timeout=10).json()
            )
            for job in page
        ]
        assert len(listed) > 100
        assert requests.get(server.url + "/api/ratings", timeout=10).json()
        again = run_cli("import", "--data-dir", str(server.data_dir), str(installation), env=cli_env(), timeout=120)
        assert " 0 were imported" in again.stdout
    finally:
        server.kill()


def test_our_own_export_moves_history_between_machines(tmp_path):
    """Export from one data dir, import into another: same jobs, records, amendments, ratings and
    reviews (flags, tags, notes, sub-scores, image ratings: they were dropped without a word);
    the pipeline's retry of an original POST is still an identical retry there."""
    here, there = Settings(data_dir=tmp_path / "here"), Settings(data_dir=tmp_path / "there")
    app = create_app(here)
    client = app.test_client()
    bodies = [{"job_id": f"job-{i}", "completed_at": 1_764_000_000 + i, "prompt": f"castle {i}"} for i in range(30)]
    bodies[8]["outputs"] = ["a.png", "b.png"]
    try:
        for body in bodies:
            assert client.post("/api/jobs", data=orjson.dumps(body), content_type="application/json").status_code == 201
        client.put("/api/jobs/job-3/rating", json={"rating": 4})
        client.patch("/api/jobs/job-5", data=orjson.dumps({"packs": ["LATER"]}), content_type="application/json")
        review = {"flag": "pick", "tags": ["keeper", "light"], "note": "the hands", "scores": {"anatomy": 2}}
        assert client.post("/api/jobs/job-3/review", json=review).status_code == 200
        assert client.put("/api/jobs/job-8/outputs/1/rating", json={"rating": 5}).status_code == 200
        exported = client.get("/api/export?format=jsonl").get_data()
        listing_here = client.get("/api/jobs?limit=100").json["jobs"]
    finally:
        app.extensions["learning_svc"].close()
    export_file = tmp_path / "export.jsonl"
    export_file.write_bytes(exported)
    result = run_import(there, [export_file])
    assert result.tally.total()["imported"] == 33  # 30 jobs, a rating and two reviews
    assert result.tally.imported == {"jobs": 30, "ratings": 1, "reviews": 2}
    assert run_import(there, [export_file]).tally.total()["imported"] == 0
    app = create_app(there)
    try:
        client = app.test_client()
        assert client.get("/api/jobs?limit=100").json["jobs"] == listing_here
        assert client.get("/api/jobs/job-5").json["record"]["packs"] == ["LATER"]
        retry = client.post("/api/jobs", data=orjson.dumps(bodies[7]), content_type="application/json")
        assert retry.status_code == 200
        # Reviewed here since: what the job has is kept, what it lacks is given.
        change = {"flag": "reject", "tags": ["mine"], "note": ""}
        assert client.post("/api/jobs/job-3/review", json=change).status_code == 200
    finally:
        app.extensions["learning_svc"].close()
    assert run_import(there, [export_file]).tally.imported == {"reviews": 1}
    app = create_app(there)
    try:
        job = app.test_client().get("/api/jobs/job-3").json["summary"]
        assert (job["flag"], job["tags"], job["note"], job["scores"]) == (
            "reject",
            ["mine", "keeper", "light"],
            "the hands",
            {"anatomy": 2},
        )
    finally:
        app.extensions["learning_svc"].close()


def test_an_export_imported_again_or_brought_home_writes_no_amendment(tmp_path):
    """An outside run: a job amended twice (packs P1, then P2 with replace) had both amendments
    replayed at every import of its export after the first, and at an import into the folder it
    came from: two amendment lines each time, the packs flipping P1, P2. A job already here now
    gets only what its record lacks of the export's, as one amendment."""
    here, there = Settings(data_dir=tmp_path / "here"), Settings(data_dir=tmp_path / "there")
    app = create_app(here)
    try:
        client = app.test_client()
        body = {"job_id": "api-a", "completed_at": 1_764_003_600.5, "prompt": "hello"}
        assert client.post("/api/jobs", json=body).status_code == 201
        assert client.patch("/api/jobs/api-a", json={"packs": ["P1"]}).status_code == 200
        assert client.patch("/api/jobs/api-a?replace=true", json={"packs": ["P2"]}).status_code == 200
        exported = client.get("/api/export?format=jsonl").get_data()
    finally:
        app.extensions["learning_svc"].close()
    export_file = tmp_path / "export.jsonl"
    export_file.write_bytes(exported)

    def amendments(settings: Settings) -> list[dict]:
        return [line["set"] for line in journal_lines(settings.log_path) if "set" in line]

    assert run_import(there, [export_file]).tally.imported == {"jobs": 1}
    assert amendments(there) == [{"packs": ["P1"]}, {"packs": ["P2"]}]  # a new job: its history as it was
    for settings in (there, there, here):
        result = run_import(settings, [export_file])
        assert result.tally.total()["amended"] == 0 and result.tally.total()["imported"] == 0
    assert amendments(there) == [{"packs": ["P1"]}, {"packs": ["P2"]}]
    assert amendments(here) == [{"packs": ["P1"]}, {"packs": ["P2"]}]

    app = create_app(there)  # amended there since: the export's own value comes back, in one amendment
    try:
        client = app.test_client()
        assert client.patch("/api/jobs/api-a?replace=true", json={"packs": ["THERE"]}).status_code == 200
    finally:
        app.extensions["learning_svc"].close()
    assert run_import(there, [export_file], dry_run=True).tally.total()["amended"] == 1  # and writes nothing
    assert amendments(there)[-1] == {"packs": ["THERE"]}
    assert run_import(there, [export_file]).tally.total()["amended"] == 1
    assert amendments(there)[-2:] == [{"packs": ["THERE"]}, {"packs": ["P2"]}]
    assert run_import(there, [export_file], dry_run=True).tally.total()["amended"] == 0


def test_an_exported_rating_of_an_image_the_job_no_longer_has_does_not_cost_its_review(tmp_path, monkeypatch):
    """An older version let an amendment take images away from under their ratings; importing
    that export refused the whole review ("no output 1"): the flag was lost. Now the rest is
    imported and the rating without its image is a line of the report."""
    from learning_svc import service

    here, there = Settings(data_dir=tmp_path / "here"), Settings(data_dir=tmp_path / "there")
    app = create_app(here)
    client = app.test_client()
    try:
        body = {"job_id": "multi", "completed_at": 1_764_000_000, "outputs": ["a.png", "b.png"]}
        assert client.post("/api/jobs", data=orjson.dumps(body), content_type="application/json").status_code == 201
        assert client.put("/api/jobs/multi/outputs/1/rating", json={"rating": 1}).status_code == 200
        assert client.put("/api/jobs/multi/outputs/0/rating", json={"rating": 4}).status_code == 200
        assert client.post("/api/jobs/multi/review", json={"flag": "pick"}).status_code == 200
        monkeypatch.setattr(service, "_rated_images_beyond", lambda review, outputs: [])
        assert client.patch("/api/jobs/multi?replace=true", json={"outputs": ["a.png"]}).status_code == 200
        exported = client.get("/api/export?format=jsonl").get_data()
    finally:
        app.extensions["learning_svc"].close()
    monkeypatch.undo()
    (tmp_path / "export.jsonl").write_bytes(exported)
    result = run_import(there, [tmp_path / "export.jsonl"])
    assert result.tally.imported == {"jobs": 1, "reviews": 1}
    [problem] = result.tally.problems
    assert problem["outcome"] == "skipped" and "output 1" in problem["reason"], problem
    app = create_app(there)
    try:
        job = app.test_client().get("/api/jobs/multi").json["summary"]
        assert (job["flag"], job["image_ratings"], job["num_outputs"]) == ("pick", {"0": 4}, 1)
    finally:
        app.extensions["learning_svc"].close()


def test_a_jsonl_file_of_posted_records_is_imported(tmp_path):
    """A file of POST /api/jobs bodies (the samples' jobs.jsonl): it was 'not a history file
    this importer knows'."""
    settings = Settings(data_dir=tmp_path / "d")
    bodies = [{"job_id": f"r{i}", "completed_at": 1_764_000_000 + i, "sampler": "Euler a"} for i in range(5)]
    lines = [orjson.dumps(body) for body in bodies] + [
        b"[1, 2]",
        b"{broken",
        orjson.dumps({"job_id": "bad", "steps": -1}),
        b'{"job_id": "nan", "completed_at": NaN}',  # not JSON, as the API says (it said "completed_at is required")
    ]
    (tmp_path / "jobs.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    result = run_import(settings, [tmp_path / "jobs.jsonl"])
    assert result.tally.total()["imported"] == 5 and result.tally.total()["refused"] == 4
    reasons = {problem["line"]: problem["reason"] for problem in result.tally.problems}
    assert sorted(reasons) == [6, 7, 8, 9]
    assert reasons[6] == "not a JSON object (one job record a line)" and reasons[7].startswith("not JSON")
    assert reasons[8].startswith("invalid job record: steps") and reasons[9].startswith("not JSON")
    assert run_import(settings, [tmp_path / "jobs.jsonl"]).tally.total()["imported"] == 0
    app = create_app(settings)
    try:
        assert app.test_client().get("/api/count?sampler=Euler a").json["jobs"] == 5
    finally:
        app.extensions["learning_svc"].close()


def test_a_line_that_says_otherwise_than_the_recorded_job_is_reported_not_dropped(tmp_path):
    """The same job id with another completed_at was counted "already present" with nothing in
    the report (the API answers 409), and a dry run counted three lines of one job as three imports."""
    settings = Settings(data_dir=tmp_path / "d")
    lines = [
        {"job_id": "d1", "completed_at": 1},
        {"job_id": "d1", "completed_at": 1},  # the same record again: already present
        {"job_id": "d1", "completed_at": 2},  # otherwise: refused, with the reason
        {"job_id": "d1", "completed_at": 3, "sampler": "Euler a"},  # adds what d1 lacks, the time kept
    ]
    (tmp_path / "dup.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    dry = run_import(settings, [tmp_path / "dup.jsonl"], dry_run=True)
    real = run_import(settings, [tmp_path / "dup.jsonl"])
    for result in (dry, real):
        total = result.tally.total()
        assert [total[k] for k in ("imported", "already present", "refused", "amended")] == [1, 1, 1, 1]
        assert [(p["line"], p["outcome"]) for p in result.tally.problems] == [(3, "refused"), (4, "amended")]
        assert all("completed_at (1.0 recorded, " in p["reason"] for p in result.tally.problems)
    # a difference inside a dict is named where it is, not by two dicts cut alike
    more = [{"job_id": "rc", "completed_at": 5, "run_config": {"prompt": "p" * 60, "steps": n}} for n in (30, 31)]
    (tmp_path / "rc.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in more))
    [problem] = run_import(settings, [tmp_path / "rc.jsonl"]).tally.problems
    assert "run_config.steps (30 recorded, 31 here)" in problem["reason"], problem
    assert [orjson.loads(line) for line in real.report.read_text().splitlines()] == real.tally.problems
    app = create_app(settings)
    try:
        record = app.test_client().get("/api/jobs/d1").json["record"]
        assert (record["completed_at"], record["sampler"]) == (1.0, "Euler a")
    finally:
        app.extensions["learning_svc"].close()


def test_a_path_that_does_not_exist_is_an_error_before_anything_is_imported(tmp_path, installation):
    """A typo (`~/StableNew` for `~/StableNew2`) exited 0 with a table saying "read 1, skipped
    1", the reason only in the report file, and the other paths imported."""
    data_dir = tmp_path / "learning"
    done = run_cli("import", "--data-dir", str(data_dir), str(installation), str(tmp_path / "typo"), env=cli_env())
    assert done.returncode == 2
    assert f"no such file or folder: {tmp_path / 'typo'}" in done.stderr and "nothing imported" in done.stderr
    assert not (data_dir / "learning_log_v2.jsonl").exists()


def test_the_summary_names_the_data_folder_and_says_when_it_is_a_new_one(tmp_path, installation):
    """Run from another folder, the import went to ./logs/learning there, a new empty store,
    while the user's service served another: nothing said where the jobs went."""
    data_dir = tmp_path / "learning"
    first = run_cli("import", "--data-dir", str(data_dir), str(installation), env=cli_env(), timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"data folder: {data_dir.resolve()}" in first.stdout
    assert "it held no history before" in first.stdout
    # an entry is a job or a rating (a learning record gives both): the summary says which
    found = re.search(r"([\d,]+) were imported \(([\d,]+) jobs, ([\d,]+) ratings\)", first.stdout)
    assert found, first.stdout
    imported, jobs, ratings = (int(g.replace(",", "")) for g in found.groups())
    assert imported == jobs + ratings and jobs > 100 and ratings > 0
    assert jobs == len(journal_lines(data_dir / "learning_log_v2.jsonl"))
    again = run_cli("import", "--data-dir", str(data_dir), str(installation), env=cli_env(), timeout=120)
    assert f"data folder: {data_dir.resolve()}" in again.stdout
    assert "it held no history before" not in again.stdout


def test_two_imports_in_one_second_keep_their_own_report(settings, tmp_path):
    from learning_svc.importers.run import Tally, write_report

    reports = []
    for name in ("first", "second", "third"):
        tally = Tally()
        tally.problems.append({"file": name, "line": None, "outcome": "skipped", "reason": "no such file or folder"})
        reports.append(write_report(settings, tally))
    assert len(set(reports)) == 3
    assert [json.loads(r.read_text())["file"] for r in reports] == ["first", "second", "third"]


def test_an_exported_review_with_more_tags_than_a_job_holds_keeps_the_rest_of_it(tmp_path):
    """A new-user run: a job with 41 tags (an older version let them in) exported and imported
    into an empty folder came in without any of its review (flag, note, scores, image ratings),
    counted "already present", with no line in the report. Now the first MAX_TAGS tags and the
    rest of the review come in, and the tags left out are a line of the report."""
    from learning_svc.reviews import MAX_TAGS, review_event

    here, there = Settings(data_dir=tmp_path / "here"), Settings(data_dir=tmp_path / "there")
    app = create_app(here)
    try:
        body = {"job_id": "tagged", "completed_at": 1_764_000_000, "outputs": ["a.png"]}
        client = app.test_client()
        assert client.post("/api/jobs", data=orjson.dumps(body), content_type="application/json").status_code == 201
        assert client.post("/api/jobs/tagged/review", json={"flag": "pick", "note": "keep"}).status_code == 200
        assert client.put("/api/jobs/tagged/outputs/0/rating", json={"rating": 4}).status_code == 200
    finally:
        app.extensions["learning_svc"].close()
    with open(here.ratings_path, "ab") as ratings:  # as an older version wrote it
        ratings.write(orjson.dumps(review_event("tagged", {"tags": [f"t{i}" for i in range(41)]}, "api")) + b"\n")
    app = create_app(here)
    try:
        exported = app.test_client().get("/api/export?format=jsonl").get_data()
    finally:
        app.extensions["learning_svc"].close()
    (tmp_path / "export.jsonl").write_bytes(exported)
    result = run_import(there, [tmp_path / "export.jsonl"])
    assert result.tally.imported == {"jobs": 1, "reviews": 1}, result.tally.imported
    [problem] = result.tally.problems
    assert problem["outcome"] == "skipped" and f"at most {MAX_TAGS}" in problem["reason"], problem
    assert "t40" in problem["reason"] and "t0," not in problem["reason"]
    app = create_app(there)
    try:
        job = app.test_client().get("/api/jobs/tagged").json["summary"]
        assert (job["flag"], job["note"], job["image_ratings"]) == ("pick", "keep", {"0": 4})
        assert job["tags"] == [f"t{i}" for i in range(MAX_TAGS)]
    finally:
        app.extensions["learning_svc"].close()


def test_an_import_ends_with_everything_it_wrote_indexed(tmp_path, monkeypatch, caplog):
    """An outside run: a 200,000-job import ended while its index was far behind (the follower
    was given STOP_SECONDS at close), and the next `serve` spent 90 s indexing the rest, its log
    silent. An import now waits for its index; a start with much to index says so first."""
    import sqlite3

    from learning_svc import gen
    from learning_svc import service as service_module
    from learning_svc.index import sync

    monkeypatch.setattr(service_module, "STOP_SECONDS", 0.0)  # as if the follower were minutes behind
    history = tmp_path / "jobs.jsonl"
    history.write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in gen.generate_records(3000, 7)))
    settings = Settings(data_dir=tmp_path / "learning")
    assert run_import(settings, [history]).tally.imported["jobs"] == 3000
    with sqlite3.connect(settings.index_path) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 3000
        indexed = conn.execute("SELECT \"offset\" FROM checkpoints WHERE name = 'log'").fetchone()[0]
    assert indexed == settings.log_path.stat().st_size

    settings.index_path.unlink()  # a start with the whole journal to index
    monkeypatch.setattr(sync, "SAID_BACKLOG_BYTES", 1024)
    with caplog.at_level("INFO", logger="learning_svc.index.sync"):
        app = create_app(settings)
        app.extensions["learning_svc"].close()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("indexing ")]
    assert said and "learning_log_v2.jsonl that the index does not hold yet" in said[0], said


def test_a_job_the_api_took_at_its_largest_comes_back_through_an_export(tmp_path):
    """An outside run: a POST of just under 1 MiB was 201, but its export line (the stored
    line: times, hashes, resolved fields, the export's own block) was over 1 MiB and the import
    refused it, so the job could not be moved."""
    here, there = Settings(data_dir=tmp_path / "here"), Settings(data_dir=tmp_path / "there")
    big = "x" * (here.max_body_bytes - 300)
    app = create_app(here)
    try:
        client = app.test_client()
        body = {"job_id": "big", "completed_at": 1_764_003_600, "prompt": "a <lora:a:0.5>", "run_config": {"blob": big}}
        assert client.post("/api/jobs", json=body).status_code == 201
        exported = client.get("/api/export?format=jsonl").get_data()
    finally:
        app.extensions["learning_svc"].close()
    assert len(exported) > here.max_body_bytes
    export_file = tmp_path / "export.jsonl"
    export_file.write_bytes(exported)
    assert run_import(there, [export_file]).tally.imported == {"jobs": 1}
    [line] = journal_lines(there.log_path)
    assert line["run_config"]["blob"] == big and line["job_id"] == "big"
    too_big = dict(orjson.loads(exported), job_id="bigger", run_config={"blob": "x" * (5 * here.max_body_bytes)})
    export_file.write_bytes(orjson.dumps(too_big) + b"\n")
    result = run_import(there, [export_file])
    assert result.tally.imported == {} and "MiB" in str(result.tally.problems)
