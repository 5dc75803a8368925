"""The server under hostile clients: connections held open or trickled, readers that stop reading,
bodies over waitress' own limit. The real waitress server on a free port (serving.py)."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

import orjson
import pytest
import requests

from conftest import LiveServer

pytestmark = pytest.mark.slow  # hundreds of sockets and real timeouts


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server's buffer fills
    return sock


def job(job_id: str) -> dict:
    return {"job_id": job_id, "completed_at": 1_764_000_000, "prompt": "a castle " * 50}


def test_300_idle_or_trickling_connections_do_not_lock_a_pipeline_out(settings):
    """waitress allowed 100 connections and kept trickled ones for ever: 98 idle sockets locked
    every client out. Now there is room, and half-sent requests are dropped after header_seconds."""
    server = LiveServer(replace(settings, header_seconds=2.0, idle_seconds=60))
    held = []
    try:
        for n in range(300):
            sock = connect(server.port)
            if n % 2:  # trickling: a request line and a header, never finished
                sock.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            held.append(sock)
        with requests.Session() as http:
            answer = http.post(
                server.url + "/api/jobs",
                data=orjson.dumps(job("still-answered")),
                headers={"Content-Type": "application/json"},
                timeout=5,
            )
        assert answer.status_code == 201
        time.sleep(4.0)  # past header_seconds: the tricklers are closed by the server
        for sock in held[1::2]:
            sock.sendall(b"X")
        closed = 0
        for sock in held[1::2]:
            try:
                closed += sock.recv(1) == b""
            except (ConnectionResetError, TimeoutError):
                closed += 1
        assert closed == 150
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_clients_that_never_read_an_export_do_not_stall_writes(settings):
    """8 clients asked for a big export and read nothing: they held all 8 threads and every POST
    timed out. Writes have threads of their own, and a stalled response is dropped in time."""
    server = LiveServer(replace(settings, stall_seconds=3.0))
    stalled = []
    try:
        batch = b"\n".join(orjson.dumps({**job(f"j{i}"), "extra": {"pad": "x" * 3000}}) for i in range(3000)) + b"\n"
        answer = server.http.post(
            server.url + "/api/jobs", data=batch, headers={"Content-Type": "application/x-ndjson"}, timeout=120
        )
        assert answer.status_code == 200
        for _ in range(8):  # more than 4 MiB each: past waitress' high watermark
            sock = connect(server.port)
            sock.sendall(b"GET /api/export?format=jsonl HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            stalled.append(sock)
        time.sleep(1.0)  # every read thread is now waiting on a client that does not read
        began = time.monotonic()
        posted = requests.post(
            server.url + "/api/jobs",
            data=orjson.dumps(job("during-the-stall")),
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert posted.status_code == 201
        assert requests.put(server.url + "/api/jobs/during-the-stall/rating", json={"rating": 4}, timeout=5).ok
        # once stall_seconds have passed the read threads are free again
        health = requests.get(server.url + "/api/health", timeout=15)
        assert health.status_code == 200 and time.monotonic() - began < 15
    finally:
        for sock in stalled:
            sock.close()
        server.stop()


def test_a_body_over_waitress_limit_gets_the_error_shape_and_headers(settings):
    """Bodies over the server's own limit were answered by waitress in text/plain."""
    server = LiveServer(replace(settings, max_batch_bytes=256 * 1024))
    try:
        response = requests.post(
            server.url + "/api/jobs",
            data=b"x" * (512 * 1024),
            headers={"Content-Type": "application/x-ndjson"},
            timeout=10,
        )
        assert response.status_code == 413
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "too_large"
        # said as the service's own 413 for a batch says it, not waitress' "exceeds max_body of 327680"
        assert response.json()["error"]["message"] == "the body is larger than 256 KiB"
        at_the_limit = requests.post(
            server.url + "/api/jobs",
            data=b"x" * (256 * 1024 + 1),  # over the service's limit, under waitress' (limit + 64 KiB)
            headers={"Content-Type": "application/x-ndjson"},
            timeout=10,
        )
        assert at_the_limit.status_code == 413
        assert at_the_limit.json()["error"]["message"] == response.json()["error"]["message"]
        assert (
            response.headers["X-Frame-Options"] == "DENY"
            and "frame-ancestors" in response.headers["Content-Security-Policy"]
        )
        assert not server.settings.log_path.exists()
    finally:
        server.stop()


def test_a_serving_process_freezes_its_start_up_objects_and_collects_garbage_less_often(tmp_path):
    """At CPython's default thresholds a facet request's objects were promoted to the oldest
    generation and swept with everything the service holds: a 40-50 ms pause every ~6 filtered
    facets at 1,000,000 jobs. `serve` freezes what start-up made and raises the thresholds."""
    import subprocess
    import sys

    program = f"""
import gc, json
from learning_svc import cli, serving
from learning_svc.config import Settings

class Stopped:
    def run(self):
        print(json.dumps({{"thresholds": gc.get_threshold(), "frozen": gc.get_freeze_count()}}))
    class task_dispatcher:
        @staticmethod
        def shutdown():
            pass

serving.make_server = lambda *args, **kwargs: Stopped()
cli._serve(Settings(data_dir=__import__("pathlib").Path({str(tmp_path / "data")!r})), quiet=True)
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert seen["thresholds"][0] >= 10_000
    assert seen["frozen"] > 10_000  # Flask, SQLAlchemy, the service: all made before serving


def test_a_worker_waking_a_stopped_server_cannot_write_into_a_file_that_took_its_pipe(settings, tmp_path):
    """A page test stopped its server while a worker was still answering an image request; the
    worker woke the loop by writing b"x" to the closed wake-up pipe, whose fd number the restarted
    service's SQLite index had taken: "file is not a database" (CI, test_page_live). A closed
    trigger is now never written to."""
    import os

    from learning_svc import create_app
    from learning_svc.serving import make_server

    app = create_app(settings)
    server = make_server(app, settings, host="127.0.0.1", port=0)
    try:
        pipe_end = server.trigger.trigger  # the write end of the wake-up pipe
        server.trigger.close()  # the test harness closes every channel, the trigger among them
        index = tmp_path / "index.bin"
        index.write_bytes(b"SQLite format 3\x00")
        fd = os.open(index, os.O_RDWR)
        try:
            if fd != pipe_end:
                os.dup2(fd, pipe_end)  # the next file opened takes the lowest free number: the pipe's
            server.pull_trigger()  # a worker thread finishing its response
        finally:
            os.close(fd)
            if fd != pipe_end:
                os.close(pipe_end)
        assert index.read_bytes() == b"SQLite format 3\x00"
    finally:
        server.close()
        app.extensions["learning_svc"].close()


def test_waitress_queue_depth_is_not_a_warning_in_the_log(tmp_path, monkeypatch):
    """A scale run counted 88 "Task queue depth is 2" warnings from ordinary page loads (a page's
    thumbnails queue a few requests behind the threads): the commands log them no more."""
    import logging

    from click.testing import CliRunner

    from learning_svc.cli import main

    monkeypatch.setattr(logging.getLogger("waitress.queue"), "level", logging.NOTSET)
    result = CliRunner().invoke(main, ["verify", "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 1, result.output  # no such data folder: the group's set-up ran
    assert not logging.getLogger("waitress.queue").isEnabledFor(logging.WARNING)


def test_a_damaged_line_in_the_middle_of_a_journal_stops_serve_and_says_how_to_go_on(tmp_path):
    """A durability run: the start refused with the file and line (as it must: nothing dropped
    silently) and "run `learning-svc verify` for details", which repeated it; neither said how
    to go on. It names what to do with that line."""
    import orjson
    from click.testing import CliRunner

    from learning_svc.cli import main

    data = tmp_path / "learning"
    data.mkdir()
    lines = [orjson.dumps({"job_id": f"j{i}", "completed_at": 1_764_000_000 + i}) + b"\n" for i in range(3)]
    from learning_svc import create_app
    from learning_svc.config import Settings

    client_app = create_app(Settings(data_dir=data))  # the lines as the service stores them
    client = client_app.test_client()
    for line in lines:
        assert client.post("/api/jobs", data=line, headers={"Content-Type": "application/json"}).status_code == 201
    client_app.extensions["learning_svc"].close()
    log = data / "learning_log_v2.jsonl"
    stored = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(stored[0] + stored[1][:20] + b"\n" + stored[2])
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(data), "--port", "0"])
    assert result.exit_code == 1, result.output
    assert "refusing to start:" in result.output and "line 2 (byte" in result.output
    assert "copy learning_log_v2.jsonl aside, then mend line 2 in the file or delete that line" in result.output
