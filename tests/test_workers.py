"""`serve --workers N` (learning_svc/workers.py): N processes on one address over one data dir
and index, on both backends: every acknowledged write is seen by a read on any worker, a
worker that dies is started again, and SIGINT stops them all."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from learning_svc.verify import verify_index

from procs import ServerProcess, cli_env, run_cli

pytestmark = pytest.mark.slow


def workers_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sorted(int(child) for child in children)


def wait_for(condition, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def served(settings):
    env = cli_env(**({"LEARNING_SVC_DATABASE_URL": settings.database_url} if settings.database_url else {}))
    server = ServerProcess(settings.data_dir, env=env, args=("--workers", "3"))
    try:
        yield server.start()
    finally:
        survivors = workers_of(server.proc.pid) if server.proc.poll() is None else []
        server.kill()
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)


def test_every_worker_reads_what_any_worker_acknowledged(served, settings):
    workers = wait_for(lambda: len(workers_of(served.proc.pid)) == 3 and workers_of(served.proc.pid))
    wait_for(lambda: "with 3 worker processes" in served.output())  # once all three answer
    answered, failures = [], []

    def client(n: int) -> None:
        for i in range(40):
            job_id = f"c{n}-{i}"
            # New connections each time, so that the kernel hands them to any worker.
            posted = requests.post(served.url + "/api/jobs", json={"job_id": job_id, "completed_at": 1_764_000_000 + i})
            read = requests.get(served.url + f"/api/jobs/{job_id}")
            listed = requests.get(served.url + "/api/jobs", params={"limit": 1, "q": job_id})
            if (posted.status_code, read.status_code) != (201, 200) or [j["job_id"] for j in listed.json()["jobs"]] != [
                job_id
            ]:
                failures.append((job_id, posted.status_code, read.status_code, listed.text[:200]))
            answered.append(job_id)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and len(answered) == 160
    assert requests.get(served.url + "/api/count").json()["jobs"] == 160
    assert workers_of(served.proc.pid) == workers  # none died on the way

    os.kill(workers[1], signal.SIGKILL)  # a worker dies: it is started again, the others serve on
    restarted = wait_for(lambda: (now := workers_of(served.proc.pid)) != workers and len(now) == 3 and now)
    assert workers[1] not in restarted and {workers[0], workers[2]} <= set(restarted)
    assert "worker 1" in served.output() and "starting it again" in served.output()
    for _ in range(20):
        assert requests.get(served.url + "/api/count").json()["jobs"] == 160

    served.proc.send_signal(signal.SIGINT)  # stops all of them
    assert served.proc.wait(timeout=20) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in restarted)  # reaped before the parent exited
    assert verify_index(settings) == []


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line_and_exit_1(tmp_path, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_cli("serve", "--port", port, "--workers", workers, "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
