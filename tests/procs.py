"""Helpers for tests that run the real server (or the CLI) as a separate process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import requests

from conftest import free_port

PYTHON = sys.executable
JSON = {"Content-Type": "application/json"}


def cli_env(**extra: str) -> dict:
    """The environment of a child process: no LEARNING_SVC_* settings leak in from the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNING_SVC_")}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "learning_svc.cli", *args], capture_output=True, text=True, env=env or cli_env(), timeout=timeout
    )


class ServerProcess:
    """`learning-svc serve` in a child process, on 127.0.0.1 and a port of its own."""

    def __init__(self, data_dir: Path, port: int | None = None, env: dict | None = None, args: tuple[str, ...] = ()):
        self.data_dir, self.args = Path(data_dir), args
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or cli_env()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 30) -> ServerProcess:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # a file, not a pipe: a full pipe would block the server
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "learning_svc.cli", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
                + list(self.args),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"the server did not answer within {timeout} s:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a power cut of the process."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
            self.proc.wait(timeout=10)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def post_job(self, session: requests.Session, record: dict, **kwargs) -> requests.Response:
        return session.post(self.url + "/api/jobs", data=orjson.dumps(record), headers=JSON, timeout=10, **kwargs)


def listing_pages(fetch, params: dict | None = None, limit: int = 500):
    """Every page of GET /api/jobs (its jobs), following next_cursor to the end.

    `fetch(query)` returns the answer's body: see over_http and in_app.
    """
    cursor, pages = None, 0
    while True:
        body = fetch({**(params or {}), "limit": str(limit), **({"cursor": cursor} if cursor else {})})
        yield body["jobs"]
        cursor, pages = body["next_cursor"], pages + 1
        if cursor is None:
            return
        assert len(body["jobs"]) == limit, "a page with a next_cursor must be full"
        assert pages < 5000, "the walk does not end"


def over_http(http, url: str):
    """fetch() for listing_pages over a real server (`http`: requests or a Session)."""

    def fetch(query: dict) -> dict:
        response = http.get(url + "/api/jobs", params=query, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    return fetch


def in_app(client):
    """fetch() for listing_pages through a Flask test client."""

    def fetch(query: dict) -> dict:
        response = client.get("/api/jobs", query_string=query)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.json

    return fetch


def all_job_ids(url: str) -> list[str]:
    """Every job id the index lists, following the cursors."""
    return [job["job_id"] for page in listing_pages(over_http(requests, url)) for job in page]


def journal_lines(path: Path) -> list[dict]:
    """Every line of a JSONL file, parsed; fails on a line that is not a complete JSON object."""
    data = path.read_bytes() if path.exists() else b""
    assert not data or data.endswith(b"\n"), f"{path.name} ends with a torn line"
    lines = []
    for number, raw in enumerate(data.splitlines(), 1):
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise AssertionError(f"{path.name} line {number} does not parse: {error}: {raw[:80]!r}") from None
        assert isinstance(line, dict), f"{path.name} line {number} is not an object"
        lines.append(line)
    return lines


def job(job_id: str, **fields) -> dict:
    """A small valid record."""
    return {
        "job_id": job_id,
        "completed_at": 1_764_000_000.0,
        "packs": ["PACK_a"],
        "outputs": [f"out/{job_id}.png"],
        "run_config": {"prompt": f"a fox <lora:detail:0.5> {job_id}"},
        **fields,
    }
