"""The PostgreSQL fixtures of the tests: a throwaway server (tests/pgserver.py) for the
session, torn down at its end, and one of its own for a test that restarts it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pgserver import PostgresServer, postgres_bin

from conftest import free_port


def started() -> PostgresServer:
    bin_dir = postgres_bin()
    if bin_dir is None:  # a failure, never a skip: `make test` and .ci/run install it
        pytest.fail("PostgreSQL's binaries are missing: `make postgres` installs Debian's postgresql")
    return PostgresServer(bin_dir, free_port()).start()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = started()
    yield server
    server.stop()


@pytest.fixture
def postgres_of_its_own() -> Iterator[PostgresServer]:
    """A server for one test, which may restart it (the session's server stays up)."""
    server = started()
    yield server
    server.stop()
