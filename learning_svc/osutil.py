"""Small portable operating-system and runtime helpers shared by the journal, the index
rebuild, the commands and the bench."""

from __future__ import annotations

import gc
import os
import uuid
from pathlib import Path

from filelock import FileLock

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
    refuses it instead of rebuilding it from that folder's files under the first one.

    The file also holds where the folder is. A copy (`cp -a`, rsync) carries the id along, and two
    services of the original and its copy took one database's index for each one's own and rebuilt
    it from their own journals in turn: a folder whose file names another place, where a folder of
    the same id still is, is a copy and takes an id of its own (its database then refuses it, or a
    `reindex` gives it the index). A folder moved or restored keeps its id."""
    path = data_dir / FOLDER_ID_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
    here = os.path.realpath(data_dir)
    with FileLock(data_dir / f".{FOLDER_ID_FILE}.lock"):
        try:
            folder_id, _, where = path.read_text(encoding="utf-8").partition("\n")
        except FileNotFoundError:
            folder_id, where = "", ""
        folder_id, where = folder_id.strip(), where.strip()
        if folder_id and where == here:
            return folder_id
        if not folder_id or (where and _same_folder_elsewhere(where, here, folder_id)):
            folder_id = uuid.uuid4().hex  # new, or a copy: an id of its own
        made = data_dir / f".{FOLDER_ID_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        made.write_text(f"{folder_id}\n{here}\n", encoding="utf-8")
        os.replace(made, path)  # whole or not at all
        fsync_dir(data_dir)
        return folder_id


def _same_folder_elsewhere(where: str, here: str, folder_id: str) -> bool:
    """The folder the id file names (not this one) is there, with the same id: this is its copy."""
    if where == here:
        return False
    try:
        return (Path(where) / FOLDER_ID_FILE).read_text(encoding="utf-8").partition("\n")[0].strip() == folder_id
    except (OSError, UnicodeDecodeError):
        return False  # moved, deleted, on another machine: this one is the folder


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
