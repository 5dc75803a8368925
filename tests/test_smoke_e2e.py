"""End to end: over the real waitress server (post the samples, rate, list), and the commands."""

import orjson
import pytest

from learning_svc import create_app
from learning_svc.config import Settings

from conftest import sample_records
from procs import run_cli


def test_post_samples_rate_and_list(live_server):
    records = sample_records()
    for record in records:
        response = live_server.post_job(record)
        assert response.status_code == 201, response.text
        assert response.headers["Location"].startswith("/api/jobs/")
    listing = live_server.http.get(live_server.url + "/api/jobs?limit=500").json()
    assert len(listing["jobs"]) == len(records)
    assert listing["next_cursor"] is None
    job_id = records[0]["job_id"]
    assert live_server.rate(job_id, 4).json()["rating"] == 4
    assert live_server.http.get(live_server.url + "/api/ratings").json() == {job_id: 4}


def test_export_command_filters_and_its_errors(tmp_path):
    """`learning-svc export` as a user runs it: before, a bad filter and a data folder without
    history were tracebacks (and the latter left an index and lock files in the folder); then
    the latter was an empty export, exit 0, which a mistyped --data-dir got too: now it says so."""
    empty = tmp_path / "nothing-yet"
    result = run_cli("export", "--data-dir", str(empty), "--format", "csv")
    assert result.returncode == 1 and result.stdout == "" and "nothing to export" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not empty.exists()

    data = tmp_path / "data"
    app = create_app(Settings(data_dir=data))
    try:
        client = app.test_client()
        for i, sampler in enumerate(["Euler a", "DPM++ 2M", "Euler a"]):
            body = {"job_id": f"j{i}", "completed_at": 1_764_000_000 + i, "sampler": sampler}
            assert client.post("/api/jobs", json=body).status_code == 201
    finally:
        app.extensions["learning_svc"].close()
    result = run_cli("export", "--data-dir", str(data), "sampler=Euler a")
    assert result.returncode == 0, result.stderr
    assert sorted(orjson.loads(line)["job_id"] for line in result.stdout.splitlines()) == ["j0", "j2"]
    for bad, said in (
        ("foo=bar", "filter foo: unknown parameter"),
        ("rating_min=9", "filter rating_min: must be"),
        ("format=csv", "'format' is not a filter here; use --format"),  # was taken, and JSONL written
    ):
        result = run_cli("export", "--data-dir", str(data), "-o", str(tmp_path / "out.jsonl"), bad)
        assert result.returncode == 2 and said in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert not (tmp_path / "out.jsonl").exists()
    # The list of known filters named `format`, which is then refused as "not a filter here".
    known = run_cli("export", "--data-dir", str(data), "foo=bar").stderr.split("(known: ", 1)[1]
    assert "format" not in known.split(", ") and "cursor" not in known and "sampler" in known.split(", ")


def test_export_of_a_service_without_history_is_empty_not_an_error(tmp_path):
    app = create_app(Settings(data_dir=tmp_path / "new"))
    try:
        client = app.test_client()
        assert client.get("/api/export?format=jsonl").get_data() == b""
        assert client.get("/api/export?format=csv").get_data(as_text=True).startswith("job_id,status,")
    finally:
        app.extensions["learning_svc"].close()


def test_demo_with_no_jobs_is_a_usage_error(tmp_path):
    result = run_cli("demo", "--data-dir", str(tmp_path / "demo"), "--jobs", "0", "--no-serve")
    assert result.returncode == 2 and "--jobs" in result.stderr, result.stdout  # "demo jobs already in", exit 0
    assert not (tmp_path / "demo").exists()


def test_reindex_says_it_moved_a_cut_last_line_aside(tmp_path):
    """A restored copy taken mid-append: reindex moved its cut last line aside without a word,
    and the running service's health (which monitoring reads) never knew."""
    data = tmp_path / "restored"
    app = create_app(Settings(data_dir=data))
    try:
        for i in range(3):
            assert (
                app.test_client().post("/api/jobs", json={"job_id": f"j{i}", "completed_at": 1.7e9 + i}).status_code
                == 201
            )
    finally:
        app.extensions["learning_svc"].close()
    with (data / "learning_log_v2.jsonl").open("ab") as log:
        log.write(b'{"job_id": "cut", "comple')
    result = run_cli("reindex", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert "indexed 3 job lines" in result.stdout
    assert "a cut last line was moved aside into learning_log_v2.jsonl.torn-" in result.stdout, result.stdout


def test_a_reindex_whose_database_goes_away_half_way_says_the_old_index_is_unchanged(tmp_path, monkeypatch):
    """It said only "cannot use the index database …: connection failed" (the old index was in
    fact unchanged: the rebuild is swapped in only when complete)."""
    from click.testing import CliRunner
    from sqlalchemy.exc import OperationalError

    from learning_svc import cli
    from learning_svc.index import sync

    def server_gone(*args, **kwargs):
        raise OperationalError("COPY", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(sync, "rebuild", server_gone)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "learning_log_v2.jsonl").write_bytes(b"")  # a data folder (it holds a journal)
    result = CliRunner().invoke(cli.main, ["reindex", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 1, result.output
    assert "reindex stopped, the old index is unchanged: cannot use the index database" in result.output
    assert "server closed the connection unexpectedly" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("command", ["reindex", "verify", "export"])
def test_a_data_folder_that_is_not_there_is_refused_and_makes_nothing(tmp_path, command):
    """reindex made the folder (and, for PostgreSQL, its id file) to index nothing; export of a
    mistyped folder said "exported 0 jobs" and exit 0; verify blamed the index database."""
    output = tmp_path / "out.jsonl"
    result = run_cli(
        command, "--data-dir", str(tmp_path / "typo"), *(["-o", str(output)] if command == "export" else [])
    )
    assert result.returncode == 1, result.stderr
    assert f"no data folder {tmp_path / 'typo'}: nothing to {command}" in result.stderr
    assert not (tmp_path / "typo").exists() and not output.exists()
    (tmp_path / "empty").mkdir()  # there, but no data folder: verify said "ok" and left an index in it
    result = run_cli(
        command, "--data-dir", str(tmp_path / "empty"), *(["-o", str(output)] if command == "export" else [])
    )
    assert result.returncode == 1 and "holds no history (no learning_log_v2.jsonl)" in result.stderr, result.stderr
    assert list((tmp_path / "empty").iterdir()) == [] and not output.exists()


def test_the_command_says_its_version():
    from importlib.metadata import version

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip().endswith(f" {version('learning-svc')}"), result
