"""The Makefile's targets a user runs: `make run PORT=…` and `make demo PORT=…` both serve on that port."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("target", ["run", "demo"])
def test_port_is_passed_to_the_server(target):
    """A new-user run: `make demo PORT=18103` served on 8765 all the same."""
    make = shutil.which("make")
    assert make, "make is needed (the README's two commands)"
    # Under `make test` the parent's MAKEFLAGS and MAKELEVEL would make this a sub-make (its
    # "Entering directory" lines); what a user types is a make of its own.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    shown = subprocess.run(
        [make, "-n", target, "PORT=18103"], cwd=ROOT, capture_output=True, text=True, check=True, env=env
    )
    (command,) = [line for line in shown.stdout.splitlines() if "bin/learning-svc " in line]
    assert command.split()[1:] == [target if target == "demo" else "serve", "--port", "18103"], command


@pytest.mark.parametrize("target", ["run", "reindex", "verify"])
def test_a_data_folder_is_passed_to_the_command(target):
    """A new-user run: `make run` had no way to name the data folder (only LEARNING_SVC_DATA_DIR,
    found much later in the settings table); DATA=… now gives --data-dir."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    shown = subprocess.run(
        [shutil.which("make"), "-n", target, "DATA=/srv/learning"],
        cwd=ROOT, capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    (command,) = [line for line in shown.stdout.splitlines() if "bin/learning-svc " in line]
    assert command.split()[-2:] == ["--data-dir", "/srv/learning"], command


def test_folders_to_watch_are_passed_to_serve():
    """A new-user run: `make run` took PORT and DATA but no folder to watch: watching meant
    calling .venv/bin/learning-svc by hand. WATCH=… gives --watch, one per folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    shown = subprocess.run(
        [shutil.which("make"), "-n", "run", "WATCH=/srv/a1111 /srv/comfy", "DATA=/srv/learning"],
        cwd=ROOT, capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    (command,) = [line for line in shown.stdout.splitlines() if "bin/learning-svc " in line]
    assert command.split()[1:] == [
        "serve", "--data-dir", "/srv/learning", "--watch", "/srv/a1111", "--watch", "/srv/comfy"
    ], command  # fmt: skip
