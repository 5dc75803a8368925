"""Large NDJSON batches validated in worker processes (batches.py): the same answers as in the
service's own process, a worker that dies costs no batch, and closing the service ends them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import orjson
import pytest
import requests

from learning_svc import batches
from learning_svc.batches import WORKER_MIN_LINES, Validator
from learning_svc.config import Settings
from learning_svc.gen import generate_records
from learning_svc.index.project import project_job
from learning_svc.service import Service

from conftest import LiveServer
from procs import ServerProcess, cli_env


def mixed_batch(count: int = 3 * WORKER_MIN_LINES) -> list[bytes]:
    lines = [orjson.dumps(record) for record in generate_records(count, seed=3)]
    lines[5] = b"{not json"
    lines[6] = orjson.dumps({"job_id": "bad-schema", "completed_at": 1, "schema": "mine"})
    lines[7] = orjson.dumps({"job_id": "too-big", "completed_at": 1, "extra": {"x": "y" * 20_000}})
    lines[8] = orjson.dumps({"job_id": "naive", "completed_at": "2025-11-24T10:00:00"})  # Berlin's 09:00 UTC
    lines[-1] = b"[1, 2]"
    return lines


def comparable(results: list[tuple[bool, tuple]]) -> list:
    """The outcomes without the stored line's logged_at (the time each was validated, which
    also sets the line's length), and the index rows a worker projected or the service would."""
    out = []
    for valid, outcome in results:
        if not valid:
            out.append(outcome)
            continue
        line, data, summary, rows = outcome
        stored = orjson.loads(data)
        assert (line is None) == (rows is not None)  # a worker ships the bytes and rows, not the line
        assert line is None or line == stored
        rows = rows or project_job(stored, 0, len(data) - 1)
        assert rows.job["line_length"] == len(data) - 1
        stored.pop("logged_at")
        rows.job.pop("line_length")
        out.append((stored, summary, rows))
    return out


def pool_pids(validator: Validator) -> list[int]:
    return list(validator._pool._processes) if validator._pool else []


@pytest.mark.parametrize("processes", [1, 3])
def test_workers_answer_a_batch_as_the_service_process_does(processes):
    lines = mixed_batch()
    here = Validator(0).validate(lines, "Europe/Berlin", 16 * 1024)
    workers = Validator(processes)
    try:
        shipped = workers.validate(lines, "Europe/Berlin", 16 * 1024)
        assert len(pool_pids(workers)) == processes, "a batch this large goes to the worker processes"
    finally:
        workers.close()
    assert comparable(shipped) == comparable(here)
    assert [valid for valid, _ in here[4:10]] == [True, False, False, False, True, True]
    assert "larger than 16 KiB" in here[7][1][0]
    assert here[8][1][0]["completed_at"] == pytest.approx(1_763_974_800)  # 2025-11-24T09:00:00Z
    assert not here[-1][0]


def test_a_small_batch_stays_in_the_service_process():
    validator = Validator(2)
    lines = mixed_batch(WORKER_MIN_LINES - 1)
    results = validator.validate(lines, "UTC", 2**20)
    assert validator._pool is None and len(results) == len(lines)
    assert results[0][1][0] is not None and results[0][1][3] is None  # the stored line itself, not shipped


def test_a_worker_that_dies_costs_no_batch_and_is_replaced():
    validator = Validator(1)
    lines = mixed_batch()
    try:
        expected = comparable(validator.validate(lines, "UTC", 2**20))
        (pid,) = pool_pids(validator)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and validator._pool._broken is False:  # the pool notices
            time.sleep(0.05)
        assert validator._pool._broken
        assert comparable(validator.validate(lines, "UTC", 2**20)) == expected  # in this process, this time
        assert comparable(validator.validate(lines, "UTC", 2**20)) == expected  # new workers
        (new_pid,) = pool_pids(validator)
        assert new_pid != pid
    finally:
        validator.close()


def test_a_service_ends_its_workers_when_it_closes(tmp_path):
    service = Service(Settings(data_dir=tmp_path / "data", batch_processes=1)).start()
    try:
        service.validator.validate(mixed_batch(), "UTC", 2**20)
        (pid,) = pool_pids(service.validator)
    finally:
        service.close()
    with pytest.raises(ChildProcessError):  # reaped: gone, not a zombie left behind
        os.waitpid(pid, os.WNOHANG)


def test_a_large_batch_over_http_is_written_once_with_its_answers_in_order(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", batch_processes=1)
    server = LiveServer(settings)
    try:
        lines = mixed_batch()
        response = server.http.post(
            server.url + "/api/jobs", data=b"\n".join(lines) + b"\n", headers={"Content-Type": "application/x-ndjson"}
        )
        answers = [orjson.loads(line) for line in response.content.splitlines()]
        assert [a["line"] for a in answers] == list(range(1, len(lines) + 1))
        statuses = [a["status"] for a in answers]
        assert statuses[4:10] == [201, 400, 400, 201, 201, 201]  # 1 MiB lines here: "too-big" is taken
        assert statuses[-1] == 400 and statuses.count(201) == len(lines) - 3
        assert pool_pids(server.app.extensions["learning_svc"].validator)
        stored = [orjson.loads(line) for line in settings.log_path.read_bytes().splitlines()]
        assert [line["job_id"] for line in stored] == [a["job_id"] for a in answers if a["status"] == 201]
        listed, cursor = {}, ""
        while cursor is not None:
            page = server.http.get(server.url + "/api/jobs", params={"limit": 200, "cursor": cursor or None}).json()
            listed.update((job["job_id"], job) for job in page["jobs"])
            cursor = page["next_cursor"]
        assert len(listed) == len(lines) - 3
        assert listed["naive"]["completed_at"] == 1_763_978_400  # naive times are UTC by default
        assert all(a["summary"] == listed[a["job_id"]] for a in answers if a["status"] == 201)
    finally:
        server.stop()


def test_the_default_leaves_a_core_to_the_service(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert batches.default_processes() == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert batches.default_processes() == 0
    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    assert batches.default_processes() == 4


def test_the_same_record_twice_in_a_worker_validated_batch_answers_its_summary_twice(tmp_path):
    """A worker's op carries only the job id and input hash in its payload: the second of two
    identical lines in one batch was answered with a summary made from those two keys."""
    from learning_svc import create_app

    app = create_app(Settings(data_dir=tmp_path / "data", batch_processes=1))
    try:
        lines = mixed_batch()
        lines[40] = lines[30]
        response = app.test_client().post(
            "/api/jobs", data=b"\n".join(lines) + b"\n", headers={"Content-Type": "application/x-ndjson"}
        )
        assert pool_pids(app.extensions["learning_svc"].validator)
        answers = [orjson.loads(line) for line in response.get_data().splitlines()]
        assert (answers[30]["status"], answers[40]["status"]) == (201, 200)
        assert answers[40]["summary"] == answers[30]["summary"]
        assert answers[40]["summary"]["completed_at"] is not None and answers[40]["summary"]["model"]
    finally:
        app.extensions["learning_svc"].close()


def test_workers_that_cannot_start_cost_no_batch(monkeypatch):
    """A process limit reached: the executor cannot start a worker (OSError on submit)."""

    class NoProcesses:
        def submit(self, *args, **kwargs):
            raise OSError(11, "Resource temporarily unavailable")

        def shutdown(self, **kwargs):
            pass

    validator = Validator(1)
    monkeypatch.setattr(validator, "_pool", NoProcesses())
    lines = mixed_batch()
    assert comparable(validator.validate(lines, "UTC", 2**20)) == comparable(Validator(0).validate(lines, "UTC", 2**20))
    assert validator._pool is None  # new workers are tried with the next batch


def worker_pids(pid: int) -> list[int]:
    """The batch validation processes among a process's children (from /proc: the suite runs on
    Linux, as its Debian Chromium and PostgreSQL do)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return [child for child in children if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


def gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True  # ended, waiting to be reaped
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_the_validation_workers_end_with_the_serve_process(tmp_path, how):
    """`kill` (SIGTERM) ended `serve` without closing the service, and a killed service's
    workers waited for work for ever: each stop left a process behind. SIGTERM now stops
    `serve` as Ctrl-C does, and a worker ends when the process that spawned it has ended."""
    server = ServerProcess(tmp_path / "data", env=cli_env(LEARNING_SVC_BATCH_PROCESSES="1")).start()
    try:
        body = b"\n".join(mixed_batch()) + b"\n"
        answer = requests.post(server.url + "/api/jobs", data=body, headers={"Content-Type": "application/x-ndjson"})
        assert answer.status_code == 200
        (worker,) = worker_pids(server.proc.pid)
        server.proc.send_signal(getattr(signal, how))
        code = server.proc.wait(timeout=30)
        if how == "SIGTERM":
            assert code == 0, server.output()
            assert "Traceback" not in server.output()
        assert gone(worker), f"the validation worker {worker} outlived the service"
    finally:
        server.kill()
