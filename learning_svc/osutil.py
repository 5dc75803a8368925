"""Small portable operating-system and runtime helpers shared by the journal, the index
rebuild, the commands and the bench."""

from __future__ import annotations

import gc
import os
import uuid
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def fsync_dir(directory: Path) -> None:
    """Make a file's creation or rename durable (its directory entry)."""
    if os.name == "nt":
        return  # directories cannot be opened for fsync on Windows; NTFS journals metadata
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def shown(text) -> str:
    """A path or message as a person and JSON can take it: a file name that is not UTF-8 (Python
    keeps its bytes as surrogates) is shown with its bytes escaped, caf\\xe9, the same in
    /api/health, the import report and the log."""
    text = str(text)
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


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


# The cyclic garbage collector: a request (a facet count, a page of 500 jobs) makes tens of
# thousands of objects, and at CPython's default first threshold (700) they were collected
# several times while alive, promoted to the oldest generation and then swept with every
# object the service holds: a 40-50 ms pause every ~6 facet requests at 1,000,000 jobs, which
# made their p95 twice their median. A rebuild's processes are 5-10% faster with it too.
GC_THRESHOLDS = (10_000, 20, 100)


def tune_gc() -> None:
    """Call once a command's long-lived objects are built (the service before it serves;
    reindex and import, which make and drop millions of objects): those are frozen out of
    collections, and collections come less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class IndexInUse(RuntimeError):
    """A SQLite index file that a service holds open cannot be replaced by a reindex (or the reverse)."""


FOLDER_ID_FILE = "learning_svc_folder.id"


def data_folder_id(data_dir: Path) -> str:
    """The data folder's own id, made on first use: a server database's index records the id of
    the folder it indexes (index/sync.claim_index), so that a service or an import of another folder
    refuses it instead of rebuilding it from that folder's files under the first one."""
    path = data_dir / FOLDER_ID_FILE
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    made = data_dir / f".{FOLDER_ID_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    made.write_text(uuid.uuid4().hex + "\n", encoding="ascii")
    try:
        os.link(made, path)  # whole or not at all; another process's id wins a race
    except FileExistsError:
        pass
    except OSError:  # no hard links here (FAT, some network shares): a rename, whole but not exclusive
        if not path.exists():
            os.replace(made, path)
    finally:
        made.unlink(missing_ok=True)
    return path.read_text(encoding="ascii").strip()


def hold_index_file(index_path: Path, exclusive: bool) -> int | None:
    """A lock on `<index>.in-use` for as long as the returned descriptor stays open: shared by
    every process that writes the SQLite index in place (`serve`, its workers, `import`),
    exclusive for a reindex that replaces the file, which a running process would go on
    writing to (its own open, deleted copy). Raises IndexInUse; None where there is no flock
    (Windows: not guarded, as the README says)."""
    if fcntl is None:
        return None
    index_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(index_path.with_name(index_path.name + ".in-use"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise IndexInUse(
            f"{index_path} is open in a running service or import: stop it first"
            if exclusive
            else f"{index_path} is being rebuilt by `learning-svc reindex`: start when it has finished"
        ) from None
    return fd
