"""`serve --workers N`: N service processes answering on one address (POSIX: fork).

The parent binds the listening socket and forks the workers; each accepts from it (the
kernel hands every connection to one of them) and runs a whole service of its own over the
shared data dir and index, as two `serve` processes would: the journals' lock orders their
appends, and every write is in the index before it is acknowledged, so a read from any
worker sees every acknowledged write. Worker 0 starts first (it does the start-up catch-up
and runs the folder watchers); the others follow once it answers. A worker that dies is
started again; SIGINT or SIGTERM to the parent stops them all.

Windows has no fork: run one `serve --port P` per process behind a reverse proxy there
(README, "Running for a studio").
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger(__name__)
RESTART_PAUSE = 1.0  # seconds before a worker that died is started again


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    sock.setblocking(False)
    return sock


def supervise(count: int, serve_one: Callable[[int, Callable[[], None]], None], announce: Callable[[], None]) -> int:
    """Fork `count` workers running serve_one(index, ready) and keep them running until SIGINT
    or SIGTERM; `announce` runs once all have called ready(). Returns the exit status."""
    stopping = False
    workers: dict[int, int] = {}  # pid -> worker index

    def stop(_signum, _frame):  # the wait below resumes by itself: tell the workers from here
        nonlocal stopping
        stopping = True
        _signal_all(workers)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    lifeline = os.pipe()  # the parent holds its write end until it ends, however it ends
    for index in range(count):
        pid, ready = _spawn(index, serve_one, lifeline)
        workers[pid] = index
        if not ready:
            log.error("worker %d did not start; stopping", index)
            _stop_all(workers)
            return 1
    announce()
    while workers:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            pid = 0
        if stopping:
            _stop_all(workers)
            continue
        if pid in workers:
            index = workers.pop(pid)
            log.warning(
                "worker %d (pid %d) exited with %d; starting it again", index, pid, os.waitstatus_to_exitcode(status)
            )
            time.sleep(RESTART_PAUSE)
            if not stopping:
                new_pid, _ = _spawn(index, serve_one, lifeline)
                workers[new_pid] = index
        if stopping:
            _stop_all(workers)
    return 0


def _signal_all(workers: dict[int, int]) -> None:
    for pid in list(workers):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def _stop_all(workers: dict[int, int]) -> None:
    _signal_all(workers)
    for pid in list(workers):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        workers.pop(pid, None)


def _spawn(index: int, serve_one, lifeline: tuple[int, int]) -> tuple[int, bool]:
    """Fork worker `index`; returns (pid, whether it said it was ready before exiting)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        os.close(read_end)
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the parent, which stops us
            signal.signal(signal.SIGTERM, _interrupt_once)
            _end_with_the_parent(lifeline)
            serve_one(index, lambda: os.write(write_end, b"1"))
            code = 0
        except KeyboardInterrupt:
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    try:
        ready = os.read(read_end, 1) == b"1"  # b"" when it exited first
    finally:
        os.close(read_end)
    return pid, ready


def _end_with_the_parent(lifeline: tuple[int, int]) -> None:
    """Stop (as on SIGTERM) once the parent is gone, also when it was killed outright: the
    workers went on answering on its port, and a new `serve` could not listen there."""
    read_end, write_end = lifeline
    os.close(write_end)  # this process's copy: only the parent's keeps the pipe open

    def watch() -> None:
        os.read(read_end, 1)  # b"" once no process holds the write end: the parent has ended
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="end-with-the-parent", daemon=True).start()


def _interrupt_once(_signum, _frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt
