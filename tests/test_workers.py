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

from learning_svc.config import Settings, SettingsError
from learning_svc.service import Service
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
    # by its pid: the workers' indexes need not follow pid order (pids wrap: CI saw worker 2's lower)
    assert f"(pid {workers[1]}) exited with -9; starting it again" in served.output()
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
    assert not (tmp_path / "d").exists()  # a new-user run: the folder and its index were made all the same


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        ((), {"LEARNING_SVC_NAIVE_TIMEZONE": "Mars/Olympus"}, "LEARNING_SVC_NAIVE_TIMEZONE: unknown time zone"),
        ((), {"LEARNING_SVC_PORT": "99999"}, "port 99999 is not a TCP port"),
        ((), {"LEARNING_SVC_PORT": "abc"}, "LEARNING_SVC_PORT='abc' is not a whole number"),
        ((), {"LEARNING_SVC_THREADS": "0"}, "LEARNING_SVC_THREADS is 0: it must be at least 1"),
        ((), {"LEARNING_SVC_WRITE_THREADS": "-3"}, "LEARNING_SVC_WRITE_THREADS is -3"),
        (("--port", "99999"), {}, "99999 is not in the range 0<=x<=65535"),
        (("--data-dir", "A_FILE"), {}, "is a file"),
        ((), {"LEARNING_SVC_DATA_DIR": "A_FILE"}, "is a file"),
        ((), {"LEARNING_SVC_TOKEN": "   "}, "LEARNING_SVC_TOKEN is blank"),  # every write was then a 401
        ((), {"LEARNING_SVC_WATCH_DELAY": "-5"}, "LEARNING_SVC_WATCH_DELAY is -5: seconds, 0 to 86400"),
        ((), {"LEARNING_SVC_WATCH_DELAY": "100000"}, "LEARNING_SVC_WATCH_DELAY is 100000: seconds, 0 to 86400"),
        ((), {"LEARNING_SVC_WATCH_DELAY": "abc"}, "LEARNING_SVC_WATCH_DELAY='abc' is not a whole number"),
        (("--watch-delay", "-1"), {}, "-1 is not in the range 0<=x<=86400"),
    ],
)
def test_a_setting_that_cannot_work_stops_serve_with_one_line(tmp_path, args, env, said):
    """Before, a bad time zone started a service that answered 500 to every POST (and `ok` on
    /api/health), port 99999 listened on a random port, 0 threads answered nothing, and a
    non-number or a data folder that is a file were tracebacks."""
    (tmp_path / "A_FILE").write_text("not a folder")
    env = {k: v.replace("A_FILE", str(tmp_path / "A_FILE")) for k, v in env.items()}
    args = tuple(a.replace("A_FILE", str(tmp_path / "A_FILE")) for a in args)
    if "--data-dir" not in args and "LEARNING_SVC_DATA_DIR" not in env:
        args += ("--data-dir", str(tmp_path / "d"))
    result = run_cli("serve", *args, env=cli_env(**env), timeout=30)
    assert result.returncode in (1, 2), result.stdout  # 2: click's own check of a flag
    assert said in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "d").exists()  # nothing made


def test_a_service_with_an_unknown_time_zone_is_refused_before_anything_is_opened(tmp_path):
    with pytest.raises(SettingsError, match="unknown time zone 'Mars/Olympus'"):
        Service(Settings(data_dir=tmp_path / "d", naive_timezone="Mars/Olympus"))
    assert not (tmp_path / "d").exists()
    result = run_cli(
        "import", "--data-dir", str(tmp_path / "d"), str(tmp_path), env=cli_env(LEARNING_SVC_NAIVE_TIMEZONE="x")
    )
    assert result.returncode == 1 and "unknown time zone 'x'" in result.stderr and "Traceback" not in result.stderr


def _ended(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie has ended
    except FileNotFoundError:
        return True


def test_workers_end_when_their_parent_is_killed_outright(tmp_path):
    """`kill -9` of the `serve --workers 2` parent left its workers answering on its port (and a
    batch process with them): a new `serve` there failed with "Address already in use"."""
    server = ServerProcess(tmp_path / "learning", args=("--workers", "2")).start()
    workers = wait_for(lambda: len(workers_of(server.proc.pid)) == 2 and workers_of(server.proc.pid))
    wait_for(lambda: "with 2 worker processes" in server.output())
    assert (
        requests.post(server.url + "/api/jobs", json={"job_id": "j", "completed_at": 1_764_000_000}).status_code == 201
    )
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    wait_for(lambda: all(_ended(pid) for pid in workers), seconds=20)
    again = ServerProcess(tmp_path / "learning", port=server.port).start()  # the port is free again
    try:
        assert requests.get(again.url + "/api/jobs/j", timeout=10).status_code == 200
    finally:
        again.kill()


def test_every_worker_answers_health_with_the_watch_state(tmp_path):
    """The folder watchers run in worker 0; /api/health on the other workers had no `watch` at
    all, so a monitor behind the one address saw the watched folders come and go."""
    from image_fixtures import a1111_infotext, save_png_text

    watched, scratch = tmp_path / "outputs", tmp_path / "tmp"
    watched.mkdir()
    scratch.mkdir()
    env = cli_env(TMPDIR=str(scratch))
    server = ServerProcess(tmp_path / "learning", env=env, args=("--workers", "3", "--watch", str(watched))).start()
    try:
        wait_for(lambda: "with 3 worker processes" in server.output())
        save_png_text(str(watched / "a.png"), {"parameters": a1111_infotext("a cat", "", {"Steps": 20, "Seed": 1})})
        wait_for(lambda: requests.get(server.url + "/api/count").json()["jobs"] == 1)

        def watch_states() -> list:
            # new connections each time: the kernel hands them to any of the three workers
            return [requests.get(server.url + "/api/health").json().get("watch") for _ in range(30)]

        states = wait_for(
            lambda: (states := watch_states()) and all(s and s[0]["imported"] == 1 for s in states) and states
        )
        assert {(s[0]["folder"], s[0]["state"]) for s in states} == {(str(watched), "watching")}
    finally:
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(timeout=20) == 0
    assert list(scratch.iterdir()) == []  # the workers' shared folder goes with them


def test_every_worker_shows_an_output_found_under_a_watched_folder(tmp_path):
    """Workers but the first were given no watched folders (they run no watchers): a job's image
    that worker 0's watcher passed over as that job's showed "image not found" whenever the
    request reached another worker."""
    import shutil

    import image_fixtures

    watched, images = tmp_path / "watched", tmp_path / "images"
    (watched / "run_1").mkdir(parents=True)
    image_fixtures.write_good(str(images))
    server = ServerProcess(tmp_path / "learning", env=cli_env(), args=("--workers", "3", "--watch", str(watched)))
    server.start()
    try:
        wait_for(lambda: "with 3 worker processes" in server.output())
        job = {"job_id": "pipe-1", "completed_at": 1_764_000_000, "outputs": ["D:\\SD\\output\\run_1\\IMG.png"]}
        assert requests.post(server.url + "/api/jobs", json=job, timeout=10).status_code == 201
        shutil.copy(images / "a1111_v110.png", watched / "run_1" / "img.png")
        image = (watched / "run_1" / "img.png").read_bytes()
        # new connections each time: the kernel hands them to any of the three workers
        answers = [requests.get(server.url + "/api/jobs/pipe-1/outputs/0", timeout=10) for _ in range(30)]
        assert {(a.status_code, a.content == image) for a in answers} == {(200, True)}
        time.sleep(1.5)  # the watcher's look, were it to make a job of the image
        assert requests.get(server.url + "/api/count", timeout=10).json()["jobs"] == 1  # no job of its own
    finally:
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(timeout=20) == 0
