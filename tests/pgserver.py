"""A throwaway PostgreSQL server: Debian's `postgresql` binaries, initdb into a temporary
directory, a port on 127.0.0.1, torn down by stop(); a fresh database per new_database().
Used by the tests (tests/postgres.py: the fixtures) and by `make bench DB=postgresql`.

pytest-postgresql's process fixture does the same but runs initdb as the current user, and
PostgreSQL refuses to run as root (CI and these machines run the tests as root). So this one
runs the server as the unprivileged `postgres` user when it is root, and as itself otherwise.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from glob import glob
from pathlib import Path


def postgres_bin() -> Path | None:
    """The newest installed /usr/lib/postgresql/<version>/bin, or pg_ctl's folder on PATH."""
    versions = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


# Stops a server whose owner died without stop() (a pytest killed by SIGTERM runs no
# finalizers): waits until its parent is gone, then runs the stop command and removes the folder.
_WATCHDOG = """
import os, shutil, subprocess, sys, time
parent, root, command = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
while os.getppid() == parent:
    time.sleep(0.5)
subprocess.run(command, capture_output=True, cwd=root)
shutil.rmtree(root, ignore_errors=True)
"""


class PostgresServer:
    def __init__(self, bin_dir: Path, port: int, durable: bool = False):
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="learning-pg-"))
        self.data = self.root / "data"
        self.port = port
        self.user = None
        if os.geteuid() == 0:  # initdb refuses root: the server runs as `postgres`
            self.user = pwd.getpwnam("postgres")
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.names = itertools.count()
        self.watchdog: subprocess.Popen | None = None
        # The tests need no crash safety from it (fsync off); the bench measures a durable server.
        self.options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=300"
        if not durable:
            self.options += " -c fsync=off"

    def _command(self, *args: str) -> list[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        return command

    def _run(self, *args: str) -> None:
        subprocess.run(self._command(*args), check=True, capture_output=True, cwd=self.root)

    def start(self) -> PostgresServer:
        # C collation: ORDER BY sorts as Python and SQLite compare strings (verify merges both).
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--locale=C", "-E", "UTF8")
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", self.options, "-l", str(self.root / "server.log"), "-w", "start"
        )
        stop = self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.root), *stop],
            start_new_session=True,  # outlives a kill of the tests' process group too
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server (fast: open connections are closed), stay down `down_seconds`, and
        start it again on the same port, data and options."""
        self.pause()
        time.sleep(down_seconds)
        self.resume()

    def pause(self) -> None:
        """Stop the server (fast: open connections are closed) until resume()."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", self.options, "-l", str(self.root / "server.log"), "-w", "start"
        )

    def add_password_user(self, name: str, password: str) -> None:
        """A role that must give its password (scram-sha-256 from 127.0.0.1): the other roles
        stay on trust. Waits until the server has loaded the new pg_hba.conf."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"host all {name} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        self._run("pg_ctl", "-D", str(self.data), "reload")
        deadline = time.monotonic() + 10
        while True:  # the reload is asynchronous: until a wrong password is refused
            try:
                psycopg.connect(
                    f"host=127.0.0.1 port={self.port} user={name} password=not-{password} dbname=postgres"
                ).close()
            except psycopg.OperationalError:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not load the new pg_hba.conf")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait()
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, options: str = "") -> str:
        """A fresh, empty database (`options`: e.g. another collation); its SQLAlchemy URL."""
        import psycopg

        name = f"test_{next(self.names)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 {options}')
        return self.url(name)
