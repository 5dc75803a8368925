"""The tests' throwaway PostgreSQL server (tests/pgserver.py) does not outlive the tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pgserver import postgres_bin

from conftest import free_port

TESTS = Path(__file__).resolve().parent


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def test_a_server_whose_tests_were_killed_is_stopped_and_its_folder_removed():
    """pytest killed with SIGTERM runs no fixture finalizers: its server kept running, its
    folder stayed in /tmp, and the next run found the port's neighbours taken."""
    if postgres_bin() is None:  # a failure, never a skip: `make test` and .ci/run install it
        pytest.fail("PostgreSQL's binaries are missing: `make postgres` installs Debian's postgresql")
    port = free_port()
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time; sys.path.insert(0, {str(TESTS)!r}); from pgserver import PostgresServer, postgres_bin;"
            f" print(PostgresServer(postgres_bin(), {port}).start().root, flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        root = Path(owner.stdout.readline().strip())
        assert (root / "data" / "postmaster.pid").exists() and _answers(port)
        owner.send_signal(signal.SIGTERM)
        owner.wait(10)
        deadline = time.monotonic() + 30
        while (root.exists() or _answers(port)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not root.exists(), "the server's folder was left behind"
        assert not _answers(port), "the server was left running"
    finally:
        owner.kill()
