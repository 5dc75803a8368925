"""The journal: durable appends, scanning from an offset, tail repair."""

import errno

import pytest

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
