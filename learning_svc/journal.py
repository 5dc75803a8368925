"""Append-only JSONL files: durable locked appends, scanning from an offset, tail repair.

The journal knows bytes and lines, not jobs: callers hand it encoded lines and a
predicate that says whether a line is sound.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from .osutil import fsync_dir

try:
    import fcntl
except ImportError:  # Windows: filelock (msvcrt) does it
    fcntl = None

CHUNK = 1 << 20
LOCK_POLL_SECONDS = 0.002
BACK_STEP = 1 << 16  # reading backwards for the last newline: lines are a few KB


class JournalWriteError(OSError):
    """The append or the fsync failed; nothing was acknowledged."""


class DamagedJournal(RuntimeError):
    """A damaged line in the middle of a journal file (never silently dropped)."""

    def __init__(self, path: Path, line_no: int, offset: int, reason: str):
        super().__init__(f"{path}: line {line_no} (byte {offset}) is damaged: {reason}")
        self.path, self.line_no, self.offset, self.reason = path, line_no, offset, reason


class Journal:
    def __init__(self, path: Path | str, lock_timeout: float = 30.0):
        self.path = Path(path)
        self._dir_ready = False
        lock_path = str(self.path) + ".lock"
        self._lock = FileLock(lock_path, timeout=lock_timeout) if fcntl is None else HeldFlock(lock_path, lock_timeout)

    @contextmanager
    def locked(self):
        """Cross-process lock around appends and repairs (flock on POSIX, filelock's msvcrt lock on Windows)."""
        if not self._dir_ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._dir_ready = True
        # filelock polls a lock held elsewhere; its default 50 ms would idle every waiting writer
        with self._lock.acquire(poll_interval=LOCK_POLL_SECONDS):
            yield self

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, data: bytes) -> int:
        """Write complete lines in one piece and fsync; returns the start offset. Hold the lock."""
        if not data.endswith(b"\n"):
            raise ValueError("append complete lines only (ending with a newline)")
        created = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
        except OSError as error:  # a file or folder made read-only, a file system remounted read-only
            raise JournalWriteError(
                error.errno, f"could not open {self.path.name} to write: {error.strerror or error}"
            ) from error
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            if start and _byte_at(fd, start - 1) != b"\n":
                # a crashed writer's torn line: gluing ours onto it would spoil both
                raise JournalWriteError(f"{self.path.name} ends with a torn line; repair_tail() it first")
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                self._fsync(fd)
            except OSError as error:
                _truncate_quietly(fd, start)
                raise JournalWriteError(
                    error.errno, f"could not write {self.path.name}: {error.strerror or error}"
                ) from error
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.path.parent)
        return start

    @staticmethod
    def _fsync(fd: int) -> None:
        os.fsync(fd)

    def scan(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield (offset, line without newline) for every complete line from `start`."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - a missing file is an empty journal; closed below
        except FileNotFoundError:
            return
        with f:
            f.seek(start)
            offset, pending = start, b""
            remaining = None if stop is None else stop - start
            while remaining is None or remaining > 0:
                chunk = f.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    yield offset, line
                    offset += len(line) + 1

    def count_lines(self, start: int, stop: int) -> int:
        """How many complete lines end in [start, stop) (their newlines)."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - a missing file is an empty journal; closed below
        except FileNotFoundError:
            return 0
        count, left = 0, stop - start
        with f:
            f.seek(start)
            while left > 0 and (chunk := f.read(min(CHUNK, left))):
                count += chunk.count(b"\n")
                left -= len(chunk)
        return count

    def complete_end(self) -> int:
        """Offset just past the last newline (the end of the last complete line)."""
        size = self.size()
        return self._after_newline_before(size) if size else 0

    def line_start(self, newline_pos: int) -> int:
        """Offset where the line ending at `newline_pos` begins."""
        return self._after_newline_before(newline_pos)

    def _after_newline_before(self, end: int) -> int:
        """Offset just past the last newline in bytes [0, end), or 0 if there is none."""
        with open(self.path, "rb") as f:
            pos = end
            while pos > 0:
                step = min(BACK_STEP, pos)
                f.seek(pos - step)
                nl = f.read(step).rfind(b"\n")
                if nl >= 0:
                    return pos - step + nl + 1
                pos -= step
        return 0

    def split(self, start: int, stop: int, size: int) -> Iterator[tuple[int, int]]:
        """[start, stop) cut into ranges of about `size` bytes that end at line ends."""
        with open(self.path, "rb") as f:
            begin = start
            while begin < stop:
                end = min(stop, begin + size)
                f.seek(end)
                while end < stop:
                    block = f.read(BACK_STEP)
                    nl = block.find(b"\n")
                    if nl >= 0:
                        end += nl + 1
                        break
                    if not block:
                        end = stop
                        break
                    end += len(block)
                end = min(end, stop)
                yield begin, end
                begin = end

    def read_at(self, offset: int, length: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    @contextmanager
    def reading(self) -> Iterator[Callable[[int, int], bytes]]:
        """read(offset, length) for many reads of one open file (a listing's lines): opening
        the file is most of the cost of one read_at (11 of 12 µs). A journal not made yet reads
        as empty, as in scan (a new data folder has nothing to read)."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            yield lambda offset, length: b""
            return
        with f:

            def read(offset: int, length: int) -> bytes:
                f.seek(offset)
                return f.read(length)

            yield read

    def first_line_hash(self) -> str | None:
        try:
            with open(self.path, "rb") as f:
                first = f.readline(1 << 22)
        except FileNotFoundError:
            return None
        return hashlib.sha256(first).hexdigest()[:32] if first.endswith(b"\n") else None

    def sound_end(self, is_sound: Callable[[bytes], bool]) -> int:
        """End of the last complete line, leaving out a last line that is not sound (garbage)."""
        end = self.complete_end()
        if end > 0:
            last_start = self.line_start(end - 1)
            if not is_sound(self.read_at(last_start, end - 1 - last_start)):
                return last_start
        return end

    def repair_tail(self, is_sound: Callable[[bytes], bool]) -> Path | None:
        """Move a torn or garbage last line to a side file and truncate. Hold the lock.

        Returns the side file's path, or None when the tail was sound.
        """
        cut = self.sound_end(is_sound)
        size = self.size()
        if cut == size:
            return None
        with open(self.path, "r+b") as f:
            f.seek(cut)
            damaged = f.read()
            side, out = self._new_side_file(cut)
            with out:
                out.write(damaged)
                out.flush()
                os.fsync(out.fileno())
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(self.path.parent)
        return side

    def _new_side_file(self, cut: int):
        """A side file no earlier repair used: two crashes at one offset within a second keep both tails."""
        base = f"{self.path.name}.torn-{time.strftime('%Y%m%dT%H%M%S')}-{cut}"
        for n in itertools.count():
            side = self.path.with_name(base if n == 0 else f"{base}.{n}")
            try:
                return side, open(side, "xb")
            except FileExistsError:
                continue


class HeldFlock:
    """The journal's lock file on POSIX: `flock` through a descriptor kept open, the same lock
    filelock takes (so processes using either exclude each other), at one system call a turn.

    filelock opens, checks and closes the file at every acquire (~95 µs and half a dozen calls
    that each let go of the GIL); with 8 request threads wanting the GIL the committer then
    waited ~1.5 ms for an uncontended lock at every commit. Reentrant within a thread, like
    filelock; a thread lock in front, as flock does not exclude threads sharing a descriptor."""

    def __init__(self, path: str, timeout: float):
        self.path, self.timeout = path, timeout
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = os.getpid()

    @contextmanager
    def acquire(self, poll_interval: float):
        if not self._threads.acquire(timeout=self.timeout):
            raise Timeout(self.path)
        try:
            if self._depth == 0:
                self._flock(poll_interval)
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _flock(self, poll_interval: float) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            if self._fd is not None and self._pid != os.getpid():  # a forked child: its own descriptor
                with contextlib.suppress(OSError):
                    os.close(self._fd)  # the parent's copy stays open, and its lock with it
                self._fd = None
            if self._fd is None:
                self._fd, self._pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), os.getpid()
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Timeout(self.path) from None
                time.sleep(poll_interval)
                continue
            # Locked the file this descriptor holds: still the one at the path (not deleted or
            # replaced since it was opened, when another process would lock the new one)?
            try:
                same = os.path.samestat(os.fstat(self._fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                return
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        with contextlib.suppress(Exception):  # also at interpreter exit, when os may be gone
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)


def _byte_at(fd: int, offset: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)  # O_APPEND still sends the write to the end
    return os.read(fd, 1)


def _truncate_quietly(fd: int, size: int) -> None:
    with contextlib.suppress(OSError):  # the torn tail is repaired before the next append or at start
        os.ftruncate(fd, size)
