"""The journal: durable appends, scanning from an offset, tail repair."""

import errno
import subprocess
import sys
import threading
import time

import pytest
from filelock import FileLock, Timeout

from learning_svc.journal import Journal, JournalWriteError
from learning_svc.records import is_sound


@pytest.fixture
def journal(tmp_path):
    return Journal(tmp_path / "log.jsonl")


def test_append_returns_offsets_and_scan_reads_back(journal):
    with journal.locked():
        assert journal.append(b'{"a":1}\n') == 0
        assert journal.append(b'{"a":2}\n{"a":3}\n') == 8
    assert list(journal.scan()) == [(0, b'{"a":1}'), (8, b'{"a":2}'), (16, b'{"a":3}')]
    assert list(journal.scan(8)) == [(8, b'{"a":2}'), (16, b'{"a":3}')]
    assert list(journal.scan(8, 16)) == [(8, b'{"a":2}')]
    assert journal.read_at(16, 7) == b'{"a":3}'


def test_scan_across_chunk_boundaries(journal, monkeypatch):
    monkeypatch.setattr("learning_svc.journal.CHUNK", 5)
    lines = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * i) for i in range(20)]
    with journal.locked():
        journal.append(b"".join(line + b"\n" for line in lines))
    assert [line for _, line in journal.scan()] == lines


def test_scan_leaves_out_an_incomplete_last_line(journal):
    journal.path.write_bytes(b'{"a":1}\n{"a":')
    assert list(journal.scan()) == [(0, b'{"a":1}')]
    assert journal.complete_end() == 8


def test_missing_file_is_empty(journal):
    assert journal.size() == 0 and list(journal.scan()) == [] and journal.first_line_hash() is None


@pytest.mark.parametrize("tail", [b'{"a":', b'{"a":2}', b"\x00\x00\x00\x00", b"\x00\x00\n", b"garbage\n"])
def test_repair_moves_a_torn_or_garbage_tail_aside(journal, tail):
    journal.path.write_bytes(b'{"a":1}\n' + tail)
    with journal.locked():
        side = journal.repair_tail(is_sound)
    assert side is not None and side.parent == journal.path.parent
    assert side.name.startswith("log.jsonl.torn-")
    assert side.read_bytes() == tail
    assert journal.path.read_bytes() == b'{"a":1}\n'


def test_repair_leaves_a_sound_file_alone(journal):
    journal.path.write_bytes(b'{"a":1}\n{"a":2}\n')
    with journal.locked():
        assert journal.repair_tail(is_sound) is None
    assert journal.path.read_bytes() == b'{"a":1}\n{"a":2}\n'


def test_failed_fsync_truncates_back_and_raises(journal, monkeypatch):
    with journal.locked():
        journal.append(b'{"a":1}\n')

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Journal, "_fsync", staticmethod(broken))
    with journal.locked(), pytest.raises(JournalWriteError, match="could not write"):
        journal.append(b'{"a":2}\n')
    assert journal.path.read_bytes() == b'{"a":1}\n'


def test_first_line_hash_changes_when_replaced(journal):
    journal.path.write_bytes(b'{"a":1}\n')
    first = journal.first_line_hash()
    journal.path.write_bytes(b'{"a":9}\n')
    assert first and journal.first_line_hash() != first


# ---------------------------------------------------------------- the lock


def _hold_filelock(lock_path, seconds: float):
    """Another process holding the journal's lock through filelock (an older learning_svc, a tool)."""
    code = (
        "import sys, time, filelock\n"
        f"with filelock.FileLock({str(lock_path)!r}):\n"
        "    print('held', flush=True)\n"
        f"    time.sleep({seconds})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_the_lock_excludes_a_process_holding_it_through_filelock(tmp_path):
    journal = Journal(tmp_path / "log.jsonl", lock_timeout=0.3)
    proc = _hold_filelock(tmp_path / "log.jsonl.lock", 30)
    try:
        began = time.monotonic()
        with pytest.raises(Timeout), journal.locked():
            pass
        assert time.monotonic() - began >= 0.3
    finally:
        proc.kill()
        proc.wait()
    with journal.locked():  # let go by the process's end
        journal.append(b'{"a":1}\n')


def test_filelock_waits_while_the_journal_holds_its_lock(tmp_path):
    journal = Journal(tmp_path / "log.jsonl")
    with journal.locked(), pytest.raises(Timeout):
        FileLock(str(tmp_path / "log.jsonl.lock"), timeout=0.2).acquire()
    with FileLock(str(tmp_path / "log.jsonl.lock"), timeout=0.2):
        pass


def test_a_deleted_lock_file_is_not_locked_in_place_of_the_new_one(tmp_path):
    """The lock's descriptor stays open between turns: when the file is deleted meanwhile and
    another process locks the new file at its path, this journal must wait for that lock, not
    take the old file's."""
    journal = Journal(tmp_path / "log.jsonl", lock_timeout=0.3)
    with journal.locked():
        pass
    (tmp_path / "log.jsonl.lock").unlink()
    proc = _hold_filelock(tmp_path / "log.jsonl.lock", 30)
    try:
        with pytest.raises(Timeout), journal.locked():
            pass
    finally:
        proc.kill()
        proc.wait()
    with journal.locked():
        journal.append(b'{"a":1}\n')


def test_the_lock_is_reentrant_in_a_thread_and_excludes_other_threads_and_objects(tmp_path):
    journal = Journal(tmp_path / "log.jsonl", lock_timeout=0.2)
    other = Journal(tmp_path / "log.jsonl", lock_timeout=0.2)  # another object on the same file
    outcomes = []

    def try_lock(j):
        try:
            with j.locked():
                outcomes.append("locked")
        except Timeout:
            outcomes.append("timeout")

    with journal.locked(), journal.locked():
        for j in (journal, other):
            t = threading.Thread(target=try_lock, args=(j,))
            t.start()
            t.join()
    assert outcomes == ["timeout", "timeout"]
    for j in (journal, other):
        try_lock(j)
    assert outcomes[2:] == ["locked", "locked"]
