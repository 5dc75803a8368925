"""The records of an NDJSON batch, validated into stored lines, in worker processes when the
batch is large: one interpreter validates ~5,000 records a second (~190 µs a 4 KB record), and
the service's own process also answers HTTP, appends and indexes under one GIL. With the
validation on the other cores it only takes the stored lines in.

The workers are spawned (never forked from a process with threads and open connections) on
the first large batch, and stay for the next ones; they end with the service's process,
however it ends (closed, or killed: then nothing tells the executor's workers, which would
wait for work for ever).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from . import records
from .index.project import UnprojectableLine, project_job
from .osutil import GC_THRESHOLDS
from .timezones import naive_timezone

log = logging.getLogger(__name__)

# Below this a batch is validated in the service's process: a round trip to a worker is ~1 ms,
# 50 lines ~10 ms of validation. (Batches of 100 from 2 clients, 40,000 jobs: all listed after
# 12.2-13.1 s through the workers, 16.4-17.3 s without.)
WORKER_MIN_LINES = 50
CHUNK_LINES = 250  # at most, a worker's share at a time: a batch is spread over all of them


def default_processes() -> int:
    """Validation processes for large batches: the cores beside the service's own (at most 4)."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def validate(lines: list[bytes], timezone: str, max_body_bytes: int, shipped: bool = False) -> list[tuple[bool, tuple]]:
    """Each line: (True, (its stored line, the line's journal bytes, its summary, its index
    rows)), or (False, (message, fields)) when it is refused; `timezone`: what a time without a
    zone means (Settings.naive_timezone). `shipped` (a worker's answer): the index rows are
    projected here too (placed at their offset once appended), and the stored line is left out:
    its bytes say it all, and unpickling a 5 KB line's objects took ~70 µs where the bytes and
    rows take ~25, without the ~35 µs of projecting them in the service's process."""
    naive_tz = naive_timezone(timezone)
    out: list[tuple[bool, tuple]] = []
    for raw in lines:
        try:
            if not raw.strip():
                raise records.InvalidRecord("the line is empty: one record a line", [{"loc": "body", "msg": "empty"}])
            if len(raw) > max_body_bytes:
                raise records.InvalidRecord(
                    f"the record is larger than {records.size_text(max_body_bytes)}",
                    [{"loc": "body", "msg": "too large"}],
                )
            line = records.stored_job(records.parse_json(records.JobIn, raw, naive_tz))
            data = records.dumps(line)
            rows = _rows(line, len(data)) if shipped else None
            out.append((True, (None if rows else line, data, records.new_job_summary(line), rows)))
        except records.InvalidRecord as error:
            message = str(error)  # the checks of a request's body, said of the line here
            out.append(
                (False, ("the line " + message[9:] if message.startswith("the body ") else message, error.fields))
            )
    return out


def _start_worker() -> None:
    """In each worker: the service's collector thresholds (osutil.GC_THRESHOLDS), and a thread
    that ends the worker once the process that spawned it has ended."""
    gc.set_threshold(*GC_THRESHOLDS)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_end_with, args=(parent,), name="end-with-the-service", daemon=True).start()


def _end_with(parent) -> None:
    parent.join()  # its sentinel: readable once the parent is gone
    os._exit(0)


def _rows(line: dict, length: int):
    try:
        return project_job(line, 0, length - 1)
    except UnprojectableLine:  # not from a validated record; the service's process says why
        return None


class Validator:
    """Validates batches, sending the large ones' lines to `processes` worker processes (0: none)."""

    def __init__(self, processes: int):
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def validate(self, lines: list[bytes], timezone: str, max_body_bytes: int) -> list[tuple[bool, tuple]]:
        if self.processes == 0 or len(lines) < WORKER_MIN_LINES:
            return validate(lines, timezone, max_body_bytes)
        pool = self._workers()
        size = min(CHUNK_LINES, -(-len(lines) // self.processes))
        chunks = [lines[i : i + size] for i in range(0, len(lines), size)]
        try:
            futures = [pool.submit(validate, chunk, timezone, max_body_bytes, True) for chunk in chunks]
            return [result for future in futures for result in future.result()]
        except (BrokenProcessPool, OSError) as error:  # a worker died (killed, out of memory) or could not
            # start (a process limit): this batch here, new workers next time
            log.warning("batch validation processes failed (%s); validating this batch in the service's process", error)
            self._discard(pool)
            return validate(lines, timezone, max_body_bytes)

    def _workers(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                )
            return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
