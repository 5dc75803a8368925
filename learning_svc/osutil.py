"""Small portable operating-system helpers shared by the journal, the index rebuild and the bench."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a file's creation or rename durable (its directory entry)."""
    if os.name == "nt":
        return  # directories cannot be opened for fsync on Windows; NTFS journals metadata
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def pid_alive(pid: int) -> bool:
    """Is there a process with this id? (one we may not signal counts as alive)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, not ours (or not checkable on this platform)
    return True
