"""LearningClient, the pipeline's side, against the real server: up, down, restarted, refusing."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from learning_svc import client as client_module
from learning_svc.client import LearningClient, LearningClientError
from learning_svc.config import Settings

from conftest import LiveServer
from procs import ServerProcess, all_job_ids, job, journal_lines

FAST = {"timeout": 2.0, "retries": 2, "backoff": 0.01}


@pytest.fixture
def server(tmp_path):
    server = ServerProcess(tmp_path / "learning").start()
    yield server
    server.kill()


def test_record_and_rate_while_up(live_server):
    client = LearningClient(live_server.url, **FAST)
    created = client.record_job(job("up-1"))
    assert created["job_id"] == "up-1" and created["num_outputs"] == 1 and "offline" not in created
    assert client.record_job(job("up-1"))["job_id"] == "up-1"  # a retry is harmless
    assert client.rate("up-1", 4)["rating"] == 4
    assert client.rate("up-1", None)["rating"] is None
    assert client.rate("up-1", 0)["rating"] == 0
    assert len(journal_lines(live_server.settings.log_path)) == 1


def test_job_recorded_while_the_service_is_down_is_listed_after_restart(server, caplog):
    client = LearningClient(server.url, data_dir=server.data_dir, **FAST)
    assert client.record_job(job("before"))["job_id"] == "before"
    server.kill()
    with open(server.data_dir / "learning_log_v2.jsonl", "ab") as f:
        f.write(b'{"job_id": "torn by the cra')  # the killed server left a torn tail
    with caplog.at_level(logging.WARNING, logger="learning_svc.client"):
        offline = client.record_job(job("while-down", outputs=[Path("out") / "a.png"]))
    assert offline["offline"] is True and offline["job_id"] == "while-down"
    # nothing listens: the job goes to the JSONL at once instead of waiting through the retries
    assert not any("retrying" in r.message for r in caplog.records)
    assert any("appended to" in r.message for r in caplog.records)
    lines = journal_lines(server.data_dir / "learning_log_v2.jsonl")  # repaired first, then appended
    assert [line["job_id"] for line in lines] == ["before", "while-down"]
    assert client.rate("while-down", 5) is None  # ratings need the service

    server.start()
    assert sorted(all_job_ids(server.url)) == ["before", "while-down"]
    detail = requests.get(server.url + "/api/jobs/while-down", timeout=10).json()
    assert detail["record"]["outputs"] == [str(Path("out") / "a.png")]
    # the pipeline retrying the same job over HTTP is an identical retry, not a conflict
    assert client.record_job(job("while-down", outputs=[Path("out") / "a.png"]))["job_id"] == "while-down"
    assert client.rate("while-down", 5)["rating"] == 5
    assert len(journal_lines(server.data_dir / "learning_log_v2.jsonl")) == 2
    assert len(list(server.data_dir.glob("learning_log_v2.jsonl.torn-*"))) == 1


def test_service_down_and_no_data_dir_logs_and_returns_none(tmp_path, caplog):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    client = LearningClient(url, **FAST)
    with caplog.at_level(logging.WARNING, logger="learning_svc.client"):
        assert client.record_job(job("lost")) is None
        assert client.rate("lost", 3) is None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "unreachable" in errors[0].message and "data_dir" in errors[0].message
    # it said "rating of job 'lost' was not stored: is unreachable (...)": whose, it did not say
    assert f"was not stored: the service at {url} is unreachable" in errors[1].message, errors[1].message
    assert len([r for r in caplog.records if "retrying" in r.message]) == 2 * FAST["retries"]
    with pytest.raises(LearningClientError, match="unreachable"):
        LearningClient(url, raise_errors=True, **FAST).record_job(job("lost"))


def test_a_service_that_never_answers_times_out_and_falls_back(tmp_path, caplog):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts connections, never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        client = LearningClient(url, data_dir=tmp_path / "learning", timeout=0.3, retries=1, backoff=0.01)
        assert client.record_job(job("hung"))["offline"] is True
    finally:
        listener.close()
    assert [line["job_id"] for line in journal_lines(tmp_path / "learning" / "learning_log_v2.jsonl")] == ["hung"]


def test_refusals_are_not_retried_and_never_raise(live_server, caplog):
    client = LearningClient(live_server.url, data_dir=live_server.settings.data_dir, **FAST)
    assert client.record_job(job("conflict"))
    with caplog.at_level(logging.WARNING, logger="learning_svc.client"):
        assert client.record_job(job("conflict", packs=["other"])) is None  # 409
        assert client.record_job({"job_id": "no-time"}) is None  # 400
        assert client.record_job({"job_id": "nan", "completed_at": float("nan")}) is None  # not JSON
        assert client.record_job({"job_id": "odd", "completed_at": 1.7e9, "extra": {"x": object()}}) is None
        assert client.record_job("not a dict") is None
        assert client.rate("no-such-job", 3) is None  # 404
        assert client.rate("conflict", 4.5) is None  # 400
    assert not [r for r in caplog.records if "retrying" in r.message]
    messages = " ".join(r.message for r in caplog.records if r.levelno == logging.ERROR)
    assert "already recorded with different content" in messages and "completed_at is required" in messages
    assert [line["job_id"] for line in journal_lines(live_server.settings.log_path)] == ["conflict"]
    with pytest.raises(LearningClientError) as caught:
        LearningClient(live_server.url, raise_errors=True, **FAST).record_job(job("conflict", packs=["x"]))
    assert caught.value.status == 409


def test_invalid_job_while_down_is_not_appended(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    client = LearningClient(url, data_dir=tmp_path / "learning", **FAST)
    assert client.record_job({"job_id": "bad/id", "completed_at": 1.7e9}) is None
    assert client.record_job({"job_id": "x", "completed_at": 1.7e9, "variant_index": 3}) is None
    assert not (tmp_path / "learning" / "learning_log_v2.jsonl").exists()


def test_pipeline_values_are_sent_as_plain_json(live_server):
    client = LearningClient(live_server.url, **FAST)
    completed = dt.datetime(2026, 3, 11, 23, 33, 2, tzinfo=dt.UTC)
    record = job(
        "typed", completed_at=completed, outputs=[Path("out") / "x.png"], packs=("A",), run_config={"tags": {"b", "a"}}
    )
    assert client.record_job(record)["completed_at"] == completed.timestamp()
    stored = requests.get(live_server.url + "/api/jobs/typed", timeout=10).json()["record"]
    assert stored["packs"] == ["A"] and stored["run_config"]["tags"] == ["a", "b"]


def test_token_is_sent(tmp_path):
    server = LiveServer(Settings(data_dir=tmp_path / "learning", token="s3cret"))
    try:
        assert LearningClient(server.url, **FAST).record_job(job("anon")) is None  # 401
        client = LearningClient(server.url, token="s3cret", **FAST)
        assert client.record_job(job("signed"))["job_id"] == "signed"
        assert client.rate("signed", 2)["rating"] == 2
    finally:
        server.stop()


def test_concurrent_fallback_writers_and_a_starting_server_share_the_lock(tmp_path):
    """Pipeline threads write while the service is down; the next start indexes every one."""
    data_dir = tmp_path / "learning"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = LearningClient(f"http://127.0.0.1:{port}", data_dir=data_dir, timeout=0.5, retries=0)
    results = []
    threads = [
        threading.Thread(target=lambda t=t: results.extend(client.record_job(job(f"t{t}-{i}")) for i in range(10)))
        for t in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 40 and all(r and r["offline"] for r in results)
    server = ServerProcess(data_dir, port=port).start()
    try:
        assert len(all_job_ids(server.url)) == 40
    finally:
        server.kill()


def _nobody_listens() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_offline_writes_keep_the_online_guarantees(tmp_path, caplog):
    """While the service is down an identical retry writes nothing and other content under the
    same job id is refused, as over HTTP; found through the index and the journal after it."""
    data_dir = tmp_path / "learning"
    up = LiveServer(Settings(data_dir=data_dir))
    try:
        assert LearningClient(up.url, **FAST).record_job(job("indexed"))["job_id"] == "indexed"
    finally:
        up.stop()
    client = LearningClient(_nobody_listens(), data_dir=data_dir, **FAST)
    with caplog.at_level(logging.WARNING, logger="learning_svc.client"):
        assert client.record_job(job("offline-1"))["offline"] is True
        assert client.record_job(job("offline-1"))["offline"] is True  # identical retry: nothing written
        assert client.record_job(job("indexed"))["job_id"] == "indexed"  # known to the index
        assert client.record_job(job("offline-1", packs=["other"])) is None  # conflict with the journal
        assert client.record_job(job("indexed", packs=["other"])) is None  # conflict with the index
    assert not [r for r in caplog.records if "retrying" in r.message]
    assert [line["job_id"] for line in journal_lines(data_dir / "learning_log_v2.jsonl")] == ["indexed", "offline-1"]
    with pytest.raises(LearningClientError) as caught:
        LearningClient(_nobody_listens(), data_dir=data_dir, raise_errors=True, **FAST).record_job(
            job("offline-1", packs=["x"])
        )
    assert caught.value.status == 409
    (data_dir / "index.sqlite3").unlink()  # no index: the journal alone says what is there
    assert client.record_job(job("indexed"))["job_id"] == "indexed"
    assert client.record_job(job("indexed", packs=["again"])) is None
    assert len(journal_lines(data_dir / "learning_log_v2.jsonl")) == 2
    server = ServerProcess(data_dir).start()
    try:
        assert sorted(all_job_ids(server.url)) == ["indexed", "offline-1"]
        health = requests.get(server.url + "/api/health", timeout=10).json()
        assert health["index"]["skipped_lines"] == 0 and health["index"]["jobs"] == 2
    finally:
        server.kill()


def test_naive_datetimes_are_utc_unless_the_client_says_otherwise(live_server, monkeypatch):
    """StableNew's times are naive UTC (datetime.utcnow()): stored as that instant whatever the
    machine's zone, the same as the ISO string of it; naive_timezone="local" for datetime.now()."""
    import time

    monkeypatch.setenv("TZ", "America/Chicago")
    time.tzset()
    try:
        naive = dt.datetime(2026, 3, 12, 4, 32, 21)
        client = LearningClient(live_server.url, **FAST)
        assert client.record_job(job("naive", completed_at=naive))["completed_at"] == 1773289941.0
        assert client.record_job(job("iso", completed_at=naive.isoformat()))["completed_at"] == 1773289941.0
        aware = naive.replace(tzinfo=dt.UTC)
        assert client.record_job(job("aware", completed_at=aware))["completed_at"] == 1773289941.0
        local = LearningClient(live_server.url, naive_timezone="local", **FAST)
        assert local.record_job(job("local", completed_at=naive))["completed_at"] == 1773289941.0 + 5 * 3600
        chicago = LearningClient(live_server.url, naive_timezone="America/Chicago", **FAST)
        assert chicago.record_job(job("zoned", completed_at=naive))["completed_at"] == 1773289941.0 + 5 * 3600
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    with pytest.raises(ValueError, match="unknown time zone"):
        LearningClient(live_server.url, naive_timezone="Mars/Olympus")


def test_the_offline_path_needs_neither_sqlalchemy_nor_flask(tmp_path):
    """The pipeline imports the client; writing offline must not pull in the service's stack."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import sys
        from learning_svc.client import LearningClient
        client = LearningClient({_nobody_listens()!r}, data_dir={str(tmp_path / "learning")!r}, retries=0)
        assert client.record_job({{"job_id": "light", "completed_at": 1764000000}})["offline"] is True
        heavy = sorted(name for name in ("sqlalchemy", "flask", "alembic", "waitress", "PIL") if name in sys.modules)
        print(",".join(heavy) or "none")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"


def test_record_jobs_sends_one_batch_and_answers_per_record(live_server, caplog):
    """record_jobs: one NDJSON POST, one fsync; each record's own answer, a bad one logged."""
    client = LearningClient(live_server.url, **FAST)
    client.record_job(job("known"))
    records = [job(f"b{i}") for i in range(30)] + [job("known"), job("known", packs=["other"]), {"job_id": "no time"}]
    with caplog.at_level(logging.ERROR, logger="learning_svc.client"):
        results = client.record_jobs(records)
    assert [r["job_id"] for r in results[:31]] == [f"b{i}" for i in range(30)] + ["known"]
    assert results[31:] == [None, None]
    messages = " ".join(r.message for r in caplog.records)
    assert "already recorded with different content" in messages and "completed_at is required" in messages
    assert len(journal_lines(live_server.settings.log_path)) == 31


def test_record_jobs_raising_sends_every_batch_and_raises_once_with_every_result(live_server, monkeypatch):
    """raise_errors=True raised at the first refused line: the batch's later lines were stored
    all the same, later batches were never sent, and the caller could not tell which were."""
    monkeypatch.setattr(client_module, "BATCH", 3)
    client = LearningClient(live_server.url, raise_errors=True, **FAST)
    client.record_job(job("known"))
    records = [
        job("r0"),
        job("known", packs=["other"]),  # 409
        job("r2"),
        {"job_id": "no time"},  # 400
        job("r4"),
        {"job_id": "unsendable", "completed_at": 1_764_000_000, "x": object()},
        job("r6"),
    ]
    with pytest.raises(LearningClientError) as raised:
        client.record_jobs(records)
    results = raised.value.results
    assert [result and result["job_id"] for result in results] == ["r0", None, "r2", None, "r4", None, "r6"]
    assert str(raised.value).startswith("3 of 7 jobs were not recorded"), raised.value
    assert raised.value.status == 409  # the first refusal's
    stored = [line["job_id"] for line in journal_lines(live_server.settings.log_path)]
    assert stored == ["known", "r0", "r2", "r4", "r6"]
    # without raise_errors: the same list, returned
    results = LearningClient(live_server.url, **FAST).record_jobs(records)
    assert [result and result["job_id"] for result in results] == ["r0", None, "r2", None, "r4", None, "r6"]


def test_record_jobs_keeps_each_batch_within_the_services_body_limit(settings, monkeypatch):
    """10,000 records of 7 KB went as one 70 MB body, past the service's 64 MiB: the connection
    was cut, the body sent three more times, and nothing recorded. Batches are cut by bytes too."""
    monkeypatch.setattr(client_module, "BATCH_BYTES", 48_000)  # as 32 MiB is to the service's 64
    server = LiveServer(replace(settings, max_batch_bytes=64_000))
    try:
        client = LearningClient(server.url, **FAST)
        records = [job(f"big{i}", extra={"notes": "x" * 7000}) for i in range(30)]  # ~210 KB together
        results = client.record_jobs(records)
        assert [r and r["job_id"] for r in results] == [f"big{i}" for i in range(30)]
        assert len(journal_lines(settings.log_path)) == 30
    finally:
        server.stop()


def test_record_jobs_falls_back_to_the_journal_when_down(tmp_path):
    client = LearningClient(_nobody_listens(), data_dir=tmp_path / "learning", **FAST)
    results = client.record_jobs([job("x1"), job("x2"), job("x1")])
    assert [r["offline"] for r in results] == [True, True, True]
    assert [line["job_id"] for line in journal_lines(tmp_path / "learning" / "learning_log_v2.jsonl")] == ["x1", "x2"]


def test_record_jobs_writes_what_the_service_could_not_index_to_the_journal(tmp_path, postgres_of_its_own, caplog):
    """PostgreSQL down: the service answers each line of a batch 503 (in a 200). record_jobs took
    that for a refusal and dropped the batch, with data_dir given; record_job retried and kept it."""
    settings = Settings(
        data_dir=tmp_path / "learning",
        output_root=tmp_path / "outputs",
        database_url=postgres_of_its_own.new_database(),
    )
    server = LiveServer(settings)
    try:
        client = LearningClient(server.url, data_dir=settings.data_dir, **FAST)
        assert client.record_job(job("before"))["job_id"] == "before"
        postgres_of_its_own.pause()
        try:
            with caplog.at_level(logging.WARNING, logger="learning_svc.client"):
                results = client.record_jobs([job("cb-0"), job("cb-1"), {"job_id": "no time"}])
        finally:
            postgres_of_its_own.resume()
        assert [r and r.get("offline") for r in results] == [True, True, None]
        assert [line["job_id"] for line in journal_lines(settings.log_path)] == ["before", "cb-0", "cb-1"]
        assert sum("retrying" in r.getMessage() for r in caplog.records) == FAST["retries"]
    finally:
        server.stop()


def test_an_offline_write_to_a_folder_no_service_used_says_where_it_went(tmp_path, caplog):
    """A relative data_dir resolved from another working directory made a new folder that no
    service reads, silently. The job is kept (never lost), and the log names the folder."""
    folder = tmp_path / "not-the-service-folder"
    client = LearningClient(_nobody_listens(), data_dir=folder, **FAST)
    with caplog.at_level(logging.WARNING, logger="learning_svc.client"):
        assert client.record_job(job("lost?"))["offline"] is True
        assert client.record_job(job("second"))["offline"] is True
    warned = [r.getMessage() for r in caplog.records if "no service has recorded a job there" in r.getMessage()]
    assert len(warned) == 1 and str(folder.resolve()) in warned[0]  # once: the journal exists after
    assert all(str(folder.resolve()) in r.getMessage() for r in caplog.records if "appended to" in r.getMessage())


def test_timeout_bounds_the_whole_request_not_each_read(tmp_path):
    """An outside run: a server sending its answer a byte every half second kept a client with
    timeout=1 and retries=0 for 19.5 s (the socket's timeout restarts at every byte). The
    timeout now bounds each request; with data_dir the job then goes to the journal."""

    def trickle(conn, stop):  # headers too, a byte at a time
        answer = b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{"job_id": "x"}'
        for byte in answer:
            if stop.wait(0.2):
                return
            conn.sendall(bytes([byte]))

    listener, stop = _one_answer_server(trickle)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        began = time.monotonic()
        assert LearningClient(url, timeout=1.0, retries=0).record_job(job("slow")) is None
        assert time.monotonic() - began < 3
        began = time.monotonic()
        client = LearningClient(url, data_dir=tmp_path / "learning", timeout=0.5, retries=1, backoff=0.01)
        assert client.record_job(job("slow"))["offline"] is True
        assert time.monotonic() - began < 4
    finally:
        stop.set()
        listener.close()
    assert [line["job_id"] for line in journal_lines(tmp_path / "learning" / "learning_log_v2.jsonl")] == ["slow"]


def test_a_large_batch_has_time_to_be_answered(live_server):
    """A review of this session's change: record_jobs' batches had the `timeout` of one job, so
    10,000 records (seconds of validation and one fsync) never came back within the default 2 s
    and all were reported unrecorded. A batch's time grows with its records."""
    records = [job(f"big-{n:05d}") for n in range(2_000)]
    client = LearningClient(live_server.url, timeout=0.1, retries=0, raise_errors=True)
    results = client.record_jobs(records)
    assert all(result is not None for result in results)
    assert len(journal_lines(live_server.settings.log_path)) == 2_000


def _one_answer_server(answer_for):
    """A socket server answering every request with answer_for(conn): (listener, stop)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                with contextlib.suppress(OSError):  # the client hung up: what it was sent is enough
                    answer_for(conn, stop)

    threading.Thread(target=serve, daemon=True).start()
    return listener, stop


@pytest.mark.parametrize("case", ["trickled_body", "huge_body", "redirect_302", "redirect_307"])
def test_an_answer_that_is_no_answer_falls_back_to_the_journal(tmp_path, case):
    """A hostile run: headers then a body a byte every half second kept the client 70 s and more
    (the deadline lost the socket once the headers were in); a 2 GB answer was read whole (3.8 GB
    of the pipeline's memory); a redirect lost the job (307: refused, nothing written; 302:
    followed as a GET, whose 200 looked like the job recorded). Each goes to the journal."""

    def answer(conn, stop):
        if case == "trickled_body":
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            while not stop.wait(0.2):
                conn.sendall(b" ")
        elif case == "huge_body":  # 100 MiB: past the 64 MiB an answer of this service may have
            size = 100 * 2**20
            conn.sendall(
                f"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode()
            )
            for _ in range(100):
                conn.sendall(b"[" * 2**20)
        else:  # to a server whose 200 to a GET looks like a job recorded
            code = case.rsplit("_", 1)[1]
            where = f"http://127.0.0.1:{elsewhere.getsockname()[1]}/api/jobs"
            conn.sendall(f"HTTP/1.1 {code} Moved\r\nLocation: {where}\r\nContent-Length: 0\r\n\r\n".encode())

    def recorded(conn, stop):
        body = b'{"job_id": "odd", "status": "completed"}'
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    elsewhere, stop_elsewhere = _one_answer_server(recorded)
    listener, stop = _one_answer_server(answer)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        began = time.monotonic()
        client = LearningClient(url, data_dir=tmp_path / "learning", timeout=1.0, retries=0)
        assert client.record_job(job("odd"))["offline"] is True
        assert time.monotonic() - began < 10
    finally:
        stop.set()
        stop_elsewhere.set()
        listener.close()
        elsewhere.close()
    assert [line["job_id"] for line in journal_lines(tmp_path / "learning" / "learning_log_v2.jsonl")] == ["odd"]


def test_an_offline_retry_that_gives_num_outputs_or_leaves_it_out_is_identical(tmp_path):
    """As online: `num_outputs` given or left out is the same input, and a record an earlier
    version stored with it (hashed as given) is identical to its retries either way."""
    import orjson

    from learning_svc import offline, records

    base = {"job_id": "n1", "completed_at": 1_764_000_000, "outputs": ["a.png", "b.png"]}
    assert offline.record_offline(tmp_path, orjson.dumps({**base, "num_outputs": 2})).status == "created"
    assert offline.record_offline(tmp_path, orjson.dumps(base)).status == "identical"
    job = records.parse(records.JobIn, {**base, "job_id": "legacy", "num_outputs": 2})
    line = {**records.stored_job(job), "input_hash": records.earlier_input_hash(job)}
    with open(tmp_path / offline.LOG_NAME, "ab") as journal:
        journal.write(records.dumps(line))
    for body in ({**base, "job_id": "legacy", "num_outputs": 2}, {**base, "job_id": "legacy"}):
        assert offline.record_offline(tmp_path, orjson.dumps(body)).status == "identical"
    assert (
        offline.record_offline(tmp_path, orjson.dumps({**base, "job_id": "legacy", "outputs": ["c.png"]})).status
        == "conflict"
    )
