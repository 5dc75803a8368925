"""Shared fixtures: a temporary data directory, the Flask app, and the real waitress server."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import orjson
import pytest
import requests

from learning_svc import create_app
from learning_svc.config import Settings
from learning_svc.serving import make_server

pytest_plugins = ["pages", "postgres"]  # the browser fixtures of the page tests; a PostgreSQL server

# The tests that exercise SQL run on both index backends: SQLite (embedded) and PostgreSQL.
BOTH_BACKENDS = {"test_api", "test_reviews", "test_workers"}


def pytest_generate_tests(metafunc):
    both = metafunc.module.__name__.rsplit(".", 1)[-1] in BOTH_BACKENDS or metafunc.definition.get_closest_marker(
        "both_backends"
    )
    if "settings" in metafunc.fixturenames and both:
        metafunc.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


DATA = Path(__file__).parent / "data"
JSON = {"Content-Type": "application/json"}


def sample_records() -> list[dict]:
    """The 40 real-shaped pack jobs and the 2 edge shapes (copied from shared/samples)."""
    lines = (DATA / "sample_jobs.jsonl").read_bytes().splitlines() + (
        DATA / "edge_shapes.jsonl"
    ).read_bytes().splitlines()
    return [orjson.loads(line) for line in lines]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def backend(request) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def settings(tmp_path, backend, request) -> Settings:
    database_url = request.getfixturevalue("postgres").new_database() if backend == "postgresql" else None
    return Settings(data_dir=tmp_path / "learning", output_root=tmp_path / "outputs", database_url=database_url)


@pytest.fixture
def app(settings):
    app = create_app(settings)
    yield app
    app.extensions["learning_svc"].close()


@pytest.fixture
def client(app):
    return app.test_client()


class LiveServer:
    """The real waitress server on a free port, in a thread of the test process."""

    def __init__(self, settings: Settings, port: int | None = None):
        self.settings = settings
        self.port = port or free_port()  # a port again: the same server restarted
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        self.server = make_server(self.app, settings, host="127.0.0.1", port=self.port)
        # The loop looks at its map this often: stop() ends it at once, not at its next 1 s poll
        # timeout (about a second of every test that stopped a server it had not asked anything since).
        self.server.adj.asyncore_loop_timeout = 0.05
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        self.http = requests.Session()
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                self.http.get(self.url + "/api/health", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def _serve(self) -> None:
        try:
            self.server.run()
        except OSError:
            if not self.stopping:  # closing the listening socket from another thread races with poll()
                raise

    def post_job(self, record: dict) -> requests.Response:
        return self.http.post(self.url + "/api/jobs", data=orjson.dumps(record), headers=JSON, timeout=10)

    def post_jobs(self, records: list[dict]) -> list[int]:
        """One NDJSON batch POST; the status of each record."""
        body = b"".join(orjson.dumps(record) + b"\n" for record in records)
        response = self.http.post(
            self.url + "/api/jobs", data=body, headers={"Content-Type": "application/x-ndjson"}, timeout=30
        )
        assert response.status_code == 200, response.text
        return [orjson.loads(line)["status"] for line in response.content.splitlines()]

    def rate(self, job_id: str, rating: int) -> requests.Response:
        return self.http.put(f"{self.url}/api/jobs/{job_id}/rating", json={"rating": rating}, timeout=10)

    def stop(self) -> None:
        self.stopping = True
        self.http.close()
        # The listener and the connections, then the workers (one may still be finishing a
        # response, and wakes the loop through the trigger), then the trigger: the loop ends when
        # its map is empty (the recipe of webtest's StopableWSGIServer).
        trigger = self.server.trigger
        while others := [channel for channel in list(self.server._map.values()) if channel is not trigger]:
            for channel in others:
                channel.handle_close()
        self.server.task_dispatcher.shutdown()
        trigger.handle_close()
        self.thread.join(timeout=5)
        self.app.extensions["learning_svc"].close()


@pytest.fixture
def live_server(settings):
    server = LiveServer(settings)
    yield server
    server.stop()
