"""Never lose a record: torn tails, damage in the middle, kill -9, catch-up, disk faults, safe reindex.

Real files, real SQLite and the real server; the only fakes are injected failures (disk calls, an index
write, an interrupted reindex).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import itertools
import os
import random
import subprocess
import textwrap
import threading
import time

import orjson
import pytest
import requests
from sqlalchemy import create_engine, text

from learning_svc import create_app, records
from learning_svc import journal as journal_module
from learning_svc import service as service_module
from learning_svc.index import sync, text_search
from learning_svc.index.sync import read_checkpoint, rebuild
from learning_svc.journal import DamagedJournal, Journal, JournalWriteError
from learning_svc.service import Service
from learning_svc.verify import verify_index

from conftest import JSON
from procs import (
    PYTHON,
    ServerProcess,
    all_job_ids,
    cli_env,
    in_app,
    job,
    journal_lines,
    listing_pages,
    over_http,
    run_cli,
)

pytestmark = pytest.mark.slow  # subprocesses and fault injection

# ---------------------------------------------------------------- helpers


def fill(settings, n: int, prefix: str = "job") -> list[str]:
    """Record n jobs through a service that is then stopped; returns their ids."""
    app = create_app(settings)
    client = app.test_client()
    try:
        ids = [f"{prefix}-{i:04d}" for i in range(n)]
        for job_id in ids:
            assert client.post("/api/jobs", data=orjson.dumps(job(job_id)), headers=JSON).status_code == 201
        assert client.put(f"/api/jobs/{ids[0]}/rating", json={"rating": 4}).status_code == 200
    finally:
        app.extensions["learning_svc"].close()
    return ids


def listed(client, **filters) -> list[str]:
    return [job["job_id"] for page in listing_pages(in_app(client), filters) for job in page]


def side_files(settings, name: str = "learning_log_v2.jsonl") -> list:
    return sorted(settings.data_dir.glob(name + ".torn-*"))


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def append_directly(path, lines: list[dict]) -> None:
    """What another process does: lines appended under the journal lock, without the service."""
    with Journal(path).locked() as journal:
        journal.append(b"".join(records.dumps(line) for line in lines))


def stored(job_id: str) -> dict:
    return records.stored_job(records.parse(records.JobIn, job(job_id)))


@pytest.fixture
def running(settings):
    """A started service; yields (app, client)."""
    app = create_app(settings)
    yield app, app.test_client()
    app.extensions["learning_svc"].close()


# ---------------------------------------------------------------- torn tails

GOOD_TAIL = records.dumps(stored("torn-record"))
TAILS = {
    "cut": GOOD_TAIL[: len(GOOD_TAIL) // 2],
    "no_newline": GOOD_TAIL[:-1],
    "garbage_line": b"#!garbage that is not JSON\n",
    "nul_bytes": b"\x00" * 512,
    "nul_line": b"\x00" * 64 + b"\n",
    "cut_then_nul": GOOD_TAIL[:40] + b"\x00" * 100,
    "json_but_not_object": b"[1, 2, 3]\n",
}


@pytest.mark.both_backends
@pytest.mark.parametrize("tail", TAILS.values(), ids=TAILS.keys())
def test_torn_tail_is_moved_aside_at_start_and_every_complete_line_kept(settings, tail):
    ids = fill(settings, 5)
    good = settings.log_path.read_bytes()
    with open(settings.log_path, "ab") as f:
        f.write(tail)
    app = create_app(settings)
    try:
        client = app.test_client()
        assert settings.log_path.read_bytes() == good  # truncated to the last complete line
        [side] = side_files(settings)
        assert side.read_bytes() == tail  # the damaged bytes are kept, next to the log
        assert client.get("/api/health").json["damaged"]["torn_tails_moved"] == [side.name]
        assert sorted(listed(client)) == ids
        assert client.post("/api/jobs", data=orjson.dumps(job("after-repair")), headers=JSON).status_code == 201
    finally:
        app.extensions["learning_svc"].close()
    assert [line["job_id"] for line in journal_lines(settings.log_path)] == ids + ["after-repair"]
    assert verify_index(settings) == []


@pytest.mark.parametrize("tail", [b"\n", b"  \r\n", b"\n\n"], ids=["newline", "spaces_crlf", "two_newlines"])
def test_a_blank_last_line_is_not_a_torn_tail(settings, tail):
    """A text editor's extra line end at the end of a journal is whitespace, which every reader
    skips: it stays where it is, no side file is made and the next append goes after it."""
    ids = fill(settings, 2)
    with open(settings.log_path, "ab") as f:
        f.write(tail)
    kept = settings.log_path.read_bytes()
    app = create_app(settings)
    try:
        client = app.test_client()
        assert settings.log_path.read_bytes() == kept
        assert side_files(settings) == []
        assert client.get("/api/health").json["damaged"]["torn_tails_moved"] == []
        assert client.post("/api/jobs", data=orjson.dumps(job("after-blank")), headers=JSON).status_code == 201
        assert sorted(listed(client)) == sorted([*ids, "after-blank"])
    finally:
        app.extensions["learning_svc"].close()
    lines = settings.log_path.read_bytes().splitlines()
    assert [orjson.loads(line)["job_id"] for line in lines if line.strip()] == ids + ["after-blank"]
    assert verify_index(settings) == []


@pytest.mark.both_backends
@pytest.mark.parametrize("tail", [TAILS["cut"], TAILS["garbage_line"]], ids=["cut", "garbage_line"])
def test_torn_ratings_tail_is_moved_aside_too(settings, tail):
    ids = fill(settings, 2)
    good = settings.ratings_path.read_bytes()
    with open(settings.ratings_path, "ab") as f:
        f.write(tail)
    app = create_app(settings)
    try:
        assert settings.ratings_path.read_bytes() == good
        [side] = side_files(settings, "learning_ratings_v2.jsonl")
        assert side.read_bytes() == tail
        assert app.test_client().get("/api/ratings").json == {ids[0]: 4}
    finally:
        app.extensions["learning_svc"].close()


@pytest.mark.both_backends
def test_torn_tail_left_by_another_writer_is_repaired_before_the_next_append(running, settings):
    app, client = running
    assert client.post("/api/jobs", data=orjson.dumps(job("first")), headers=JSON).status_code == 201
    good = settings.log_path.read_bytes()
    with open(settings.log_path, "ab") as f:  # another process died half-way through its line
        f.write(TAILS["cut"])
    assert client.post("/api/jobs", data=orjson.dumps(job("second")), headers=JSON).status_code == 201
    assert settings.log_path.read_bytes().startswith(good)
    assert [line["job_id"] for line in journal_lines(settings.log_path)] == ["first", "second"]
    [side] = side_files(settings)
    assert side.read_bytes() == TAILS["cut"]
    assert sorted(listed(client)) == ["first", "second"]


def test_repeated_repairs_never_overwrite_an_earlier_side_file(settings):
    """Two crashes at the same offset within one second: both torn tails are kept."""
    fill(settings, 1)
    journal = Journal(settings.log_path)
    for tail in (b'{"first torn', b'{"second torn'):
        with open(settings.log_path, "ab") as f:
            f.write(tail)
        with journal.locked():
            assert journal.repair_tail(records.is_sound) is not None
    assert sorted(p.read_bytes() for p in side_files(settings)) == [b'{"first torn', b'{"second torn']


def test_an_append_never_glues_a_line_onto_a_torn_tail(settings):
    """A writer that skipped the repair is refused instead of spoiling its line and the torn one."""
    fill(settings, 1)
    with open(settings.log_path, "ab") as f:
        f.write(TAILS["cut"])
    before = settings.log_path.read_bytes()
    with Journal(settings.log_path).locked() as journal:
        with pytest.raises(JournalWriteError, match="torn line"):
            journal.append(records.dumps(stored("glued")))
        with pytest.raises(ValueError):
            journal.append(b'{"no newline": true}')
    assert settings.log_path.read_bytes() == before


# ---------------------------------------------------------------- damage in the middle


def _damage_middle(settings, garbage: bytes) -> tuple[bytes, int]:
    """Five good lines, a damaged one, two good ones; returns (file bytes, damaged line number)."""
    good = [records.dumps(stored(f"m-{i}")) for i in range(8)]
    data = b"".join(good[:5]) + garbage + b"".join(good[5:])
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.log_path.write_bytes(data)
    return data, 6


@pytest.mark.both_backends
@pytest.mark.parametrize(
    "garbage",
    [b"{not json}\n", b"\x00\x00\x00\n", b'{"schema":"learning_log_v2"}\n'],
    ids=["not_json", "nul", "no_job_id"],
)
def test_damage_in_the_middle_refuses_to_start_and_keeps_the_file(settings, garbage):
    data, line_no = _damage_middle(settings, garbage)
    with pytest.raises(DamagedJournal) as caught:
        create_app(settings)
    assert caught.value.line_no == line_no and caught.value.path == settings.log_path
    assert f"line {line_no}" in str(caught.value) and "learning_log_v2.jsonl" in str(caught.value)
    assert settings.log_path.read_bytes() == data  # nothing dropped, nothing moved
    assert side_files(settings) == []


def test_damage_in_the_middle_serve_exits_and_verify_reports_the_line(settings):
    data, line_no = _damage_middle(settings, b"{not json}\n")
    served = run_cli("serve", "--port", "1", "--data-dir", str(settings.data_dir))
    assert served.returncode == 1
    assert f"line {line_no}" in served.stderr and "learning-svc verify" in served.stderr
    verified = run_cli("verify", "--data-dir", str(settings.data_dir))
    assert verified.returncode == 1
    assert f"learning_log_v2.jsonl: line {line_no}" in verified.stdout
    assert settings.log_path.read_bytes() == data


def test_damage_appended_after_the_checkpoint_refuses_to_start(settings):
    fill(settings, 3)
    with open(settings.log_path, "ab") as f:
        f.write(b"garbage\n" + records.dumps(stored("later")))
    with pytest.raises(DamagedJournal, match="line 4"):
        create_app(settings)


def test_damage_inside_the_indexed_part_is_reported_by_verify(settings):
    fill(settings, 3)
    data = bytearray(settings.log_path.read_bytes())
    second = data.index(b"\n") + 1
    data[second : second + 2] = b"##"  # same length: the start-up checks cannot see it
    settings.log_path.write_bytes(bytes(data))
    problems = verify_index(settings)
    assert any("line 2" in problem for problem in problems), problems


# ---------------------------------------------------------------- kill -9

CLIENTS = 4


def _hammer(server: ServerProcess, name: str, acked_jobs: list, acked_ratings: list, stop: threading.Event):
    """Post jobs (and rate some) until the server dies; remember every 2xx."""
    session = requests.Session()
    n = 0
    try:
        while not stop.is_set():
            job_id = f"{name}-{n:05d}"
            n += 1
            record = job(job_id, extra={"pad": "x" * random.randrange(0, 4000)})
            response = server.post_job(session, record)
            if response.status_code // 100 == 2:
                acked_jobs.append(job_id)
                if n % 3 == 0:
                    rated = session.put(f"{server.url}/api/jobs/{job_id}/rating", json={"rating": n % 6}, timeout=10)
                    if rated.status_code == 200:
                        acked_ratings.append((job_id, rated.json()["rated_at"]))
    except requests.RequestException:
        pass  # the server was killed
    finally:
        session.close()


def test_kill_9_at_random_moments_loses_no_acknowledged_write(tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    data_dir = tmp_path / "learning"
    acked_jobs: list[str] = []
    acked_ratings: list[tuple[str, float]] = []
    server = ServerProcess(data_dir)
    for kill_point in range(4):
        server.start()
        missing = set(acked_jobs) - set(all_job_ids(server.url))
        assert not missing, f"seed {seed}: acknowledged jobs not indexed after restart {kill_point}: {missing}"
        before = len(acked_jobs)
        stop = threading.Event()
        threads = [
            threading.Thread(target=_hammer, args=(server, f"r{kill_point}c{c}", acked_jobs, acked_ratings, stop))
            for c in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        target, deadline = before + rng.randrange(1, 150), time.monotonic() + 10
        while len(acked_jobs) < target and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.02))  # somewhere inside the next requests
        server.kill()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert len(acked_jobs) > before, f"seed {seed}: no write was acknowledged before the kill"

    server.start()  # the last restart repairs and catches up; then everything is checked
    try:
        lines = journal_lines(data_dir / "learning_log_v2.jsonl")
        logged = {line["job_id"] for line in lines}
        missing = [job_id for job_id in acked_jobs if job_id not in logged]
        assert not missing, f"seed {seed}: acknowledged but not in the JSONL: {missing[:5]}"
        indexed = set(all_job_ids(server.url))
        assert indexed == logged, f"seed {seed}: index and JSONL differ"
        assert len(lines) == len(logged), f"seed {seed}: a job was written twice"
        rating_lines = journal_lines(data_dir / "learning_ratings_v2.jsonl")
        rated = {(line["job_id"], line["timestamp"]) for line in rating_lines}
        assert set(acked_ratings) <= rated, f"seed {seed}: an acknowledged rating is missing"
        for job_id, _ in acked_ratings[-5:]:
            history = requests.get(f"{server.url}/api/jobs/{job_id}", timeout=10).json()["rating_history"]
            assert history, f"seed {seed}: the rating of {job_id} is not indexed"
    finally:
        server.kill()
    for side in data_dir.glob("*.torn-*"):  # a torn tail is only ever an unacknowledged write
        assert not any(job_id.encode() in side.read_bytes() for job_id in acked_jobs), side.name
    verified = run_cli("verify", "--data-dir", str(data_dir))
    assert verified.returncode == 0, f"seed {seed}: {verified.stdout}{verified.stderr}"


# ---------------------------------------------------------------- catch-up


@pytest.mark.both_backends
def test_lines_appended_while_down_are_indexed_from_the_checkpoint(settings, monkeypatch):
    ids = fill(settings, 40)
    engine = create_engine(settings.db_url)
    with engine.connect() as conn:
        before = read_checkpoint(conn, "log")
    assert before.offset == settings.log_path.stat().st_size and before.line_count == 40
    # another process appends three records while the service is down
    script = textwrap.dedent(f"""
        from learning_svc import records
        from learning_svc.journal import Journal
        lines = [records.stored_job(records.parse(records.JobIn, {{"job_id": f"offline-{{i}}", "completed_at": 1.7e9}}))
                 for i in range(3)]
        with Journal({str(settings.log_path)!r}).locked() as journal:
            journal.append(b"".join(records.dumps(line) for line in lines))
    """)
    subprocess.run([PYTHON, "-c", script], check=True, env=cli_env(), timeout=60)

    scans = []
    real_scan = Journal.scan

    def counting_scan(self, start=0, stop=None):
        for item in real_scan(self, start, stop):
            scans.append((self.path.name, start))
            yield item

    monkeypatch.setattr(Journal, "scan", counting_scan)
    app = create_app(settings)
    try:
        assert app.extensions["learning_svc"].startup.rebuilt is None
        log_scans = [start for name, start in scans if name == "learning_log_v2.jsonl"]
        assert log_scans == [before.offset] * 3  # only the three new lines were read
        with engine.connect() as conn:
            after = read_checkpoint(conn, "log")
        assert after.offset == settings.log_path.stat().st_size and after.line_count == 43
        assert sorted(listed(app.test_client())) == sorted(ids + [f"offline-{i}" for i in range(3)])
    finally:
        app.extensions["learning_svc"].close()
        engine.dispose()


@pytest.mark.both_backends
def test_lines_appended_by_another_process_while_running_are_indexed_before_the_next_write(running, settings):
    app, client = running
    assert client.post("/api/jobs", data=orjson.dumps(job("mine")), headers=JSON).status_code == 201
    append_directly(settings.log_path, [stored("theirs")])
    # the same job id from the other process is now a conflict, decided under the lock
    response = client.post("/api/jobs", data=orjson.dumps(job("theirs", packs=["other"])), headers=JSON)
    assert response.status_code == 409
    assert sorted(listed(client)) == ["mine", "theirs"]
    assert len(journal_lines(settings.log_path)) == 2


def _rewrite(settings, keep: int, new: list[str] = ()) -> None:
    lines = settings.log_path.read_bytes().splitlines(keepends=True)[:keep]
    settings.log_path.write_bytes(b"".join(lines) + b"".join(records.dumps(stored(j)) for j in new))


@pytest.mark.both_backends
@pytest.mark.parametrize("how", ["truncated", "replaced", "rewritten_longer", "replaced_same_first_line"])
def test_truncated_or_replaced_jsonl_triggers_a_full_rebuild(settings, how, monkeypatch):
    ids = fill(settings, 20)
    # A text search's matches are held in memory (index/text_search.py): the ones of the old
    # file must not answer for the new one, whose lines start at the same offsets. Both
    # services share one MatchSets here, as one process's readers would over a rebuild.
    shared = text_search.MatchSets(background=False, fetch_up_to=-1)
    app = create_app(settings, Service(settings, shared).start())
    try:
        assert sorted(listed(app.test_client(), q="job")) == ids
        assert shared.entries  # held (on PostgreSQL too: a search alone)
    finally:
        app.extensions["learning_svc"].close()
    if how == "truncated":  # size below the checkpoint
        _rewrite(settings, 12)
        expected = ids[:12]
    elif how == "replaced":  # a different first line, and longer than before
        expected = [f"new-{i:03d}" for i in range(30)]
        settings.log_path.write_bytes(b"".join(records.dumps(stored(j)) for j in expected))
    elif how == "replaced_same_first_line":
        # Another history that began with the same line (both machines imported the same file
        # first), whose lines fall on the same offsets: only reading a line back tells them apart.
        lines = settings.log_path.read_bytes().splitlines(keepends=True)
        others = [line.replace(i.encode(), i.replace("job", "new").encode()) for line, i in zip(lines[1:], ids[1:])]
        expected = [ids[0]] + [i.replace("job", "new") for i in ids[1:]] + ["new-more"]
        settings.log_path.write_bytes(lines[0] + b"".join(others) + records.dumps(stored("new-more")))
        assert [len(line) for line in others] == [len(line) for line in lines[1:]]
    else:  # same first line, cut, then grown past the checkpoint with other lines
        expected = ids[:12] + [f"grown-with-a-longer-id-{i:03d}" for i in range(12)]
        _rewrite(settings, 12, expected[12:])
        engine = create_engine(settings.db_url)
        with engine.connect() as conn:
            assert settings.log_path.stat().st_size > read_checkpoint(conn, "log").offset
        engine.dispose()
    app = create_app(settings, Service(settings, shared).start())
    try:
        assert app.extensions["learning_svc"].startup.rebuilt, "no rebuild"
        client = app.test_client()
        assert sorted(listed(client)) == sorted(expected)
        assert sorted(listed(client, q="job")) == sorted(i for i in expected if i.startswith("job-"))
        assert client.get("/api/ratings").json == ({ids[0]: 4} if ids[0] in expected else {})
    finally:
        app.extensions["learning_svc"].close()
    assert verify_index(settings) == []


@pytest.mark.both_backends
def test_ratings_file_replaced_with_the_same_first_line_triggers_a_rebuild(settings):
    ids = fill(settings, 3)
    first = records.rating_event(ids[1], 2, "api")
    append_directly(settings.ratings_path, [first])
    app = create_app(settings)
    try:
        assert app.test_client().get("/api/ratings").json == {ids[0]: 4, ids[1]: 2}
    finally:
        app.extensions["learning_svc"].close()
    lines = settings.ratings_path.read_bytes().splitlines(keepends=True)
    other = records.rating_event(ids[2], 5, "api")
    other["timestamp"] = first["timestamp"]
    replaced = records.dumps(other)
    assert len(replaced) == len(lines[1]) and replaced != lines[1]
    settings.ratings_path.write_bytes(lines[0] + replaced)
    app = create_app(settings)
    try:
        assert "learning_ratings_v2.jsonl was replaced" in app.extensions["learning_svc"].startup.rebuilt
        assert app.test_client().get("/api/ratings").json == {ids[0]: 4, ids[2]: 5}
    finally:
        app.extensions["learning_svc"].close()
    assert verify_index(settings) == []


@pytest.mark.both_backends
def test_replaced_ratings_file_triggers_a_rebuild(settings):
    ids = fill(settings, 3)
    event = records.rating_event(ids[1], 2, "api")
    settings.ratings_path.write_bytes(records.dumps(event) + records.dumps(records.rating_event(ids[2], 5, "api")))
    app = create_app(settings)
    try:
        assert "learning_ratings_v2.jsonl" in app.extensions["learning_svc"].startup.rebuilt
        assert app.test_client().get("/api/ratings").json == {ids[1]: 2, ids[2]: 5}
    finally:
        app.extensions["learning_svc"].close()


# ---------------------------------------------------------------- disk faults


def _fail_fsync(monkeypatch):
    def broken(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Journal, "_fsync", staticmethod(broken))


class _DiskFillsUp:
    """os for the journal module, whose write stores half the data and then fails (ENOSPC)."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def write(self, fd, data):
        half = max(1, len(data) // 2)
        if len(data) > 1:
            return self._real.write(fd, bytes(data[:half]))
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.both_backends
@pytest.mark.parametrize("fault", ["fsync", "partial_write"])
def test_failed_append_is_503_writes_nothing_and_recovers(running, settings, monkeypatch, fault):
    app, client = running
    assert client.post("/api/jobs", data=orjson.dumps(job("before")), headers=JSON).status_code == 201
    log_before = settings.log_path.read_bytes()
    with monkeypatch.context() as m:
        if fault == "fsync":
            _fail_fsync(m)
        else:
            m.setattr(journal_module, "os", _DiskFillsUp(journal_module.os))
        response = client.post("/api/jobs", data=orjson.dumps(job("lost")), headers=JSON)
        assert response.status_code == 503
        error = response.json["error"]
        assert error["code"] == "unavailable"
        assert "could not write learning_log_v2.jsonl" in error["message"] and "No space left" in error["message"]
        assert settings.log_path.read_bytes() == log_before  # no partial line
        assert client.get("/api/jobs/lost").status_code == 404
        # /api/health says so (it said ok while every write was a 503: an outside run)
        health = client.get("/api/health").json
        assert health["status"] == "degraded", health
        assert "learning_log_v2.jsonl" in health["jsonl"]["problem"]["message"], health
        assert "No space left" in health["jsonl"]["problem"]["message"] and health["jsonl"]["problem"]["since"] > 0
    # the fault is gone: the same record goes in, on its own line
    assert client.post("/api/jobs", data=orjson.dumps(job("lost")), headers=JSON).status_code == 201
    health = client.get("/api/health").json
    assert (health["status"], health["jsonl"]["problem"]) == ("ok", None)
    assert [line["job_id"] for line in journal_lines(settings.log_path)] == ["before", "lost"]
    assert sorted(listed(client)) == ["before", "lost"]
    assert side_files(settings) == []


def test_a_journal_that_cannot_be_opened_is_a_503_and_health_says_which_until_it_is_written_again(
    running, settings, monkeypatch
):
    """A code review: a file system remounted read-only (or a file made read-only) failed in
    the journal's open, outside the write's error handling: the answer was "internal error while
    writing (OSError)" and /api/health stayed ok. And one journal's trouble was cleared by an
    append to the other (a rating refused, a job taken: health said ok)."""
    app, client = running
    assert client.post("/api/jobs", data=orjson.dumps(job("before")), headers=JSON).status_code == 201
    real_open = journal_module.os.open

    def refuse_ratings(path, flags, *args):
        if str(path).endswith("learning_ratings_v2.jsonl") and flags & os.O_APPEND:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args)

    monkeypatch.setattr(journal_module.os, "open", refuse_ratings)
    response = client.put("/api/jobs/before/rating", json={"rating": 3})
    assert response.status_code == 503
    assert (
        "could not open learning_ratings_v2.jsonl to write: Read-only file system" in response.json["error"]["message"]
    )
    assert client.post("/api/jobs", data=orjson.dumps(job("after")), headers=JSON).status_code == 201
    health = client.get("/api/health").json
    assert health["status"] == "degraded", health  # the job's append cured nothing of the ratings file's
    assert health["jsonl"]["problem"]["files"] == ["learning_ratings_v2.jsonl"], health
    assert "Read-only file system" in health["jsonl"]["problem"]["message"]
    monkeypatch.setattr(journal_module.os, "open", real_open)
    assert client.put("/api/jobs/before/rating", json={"rating": 3}).status_code == 200
    health = client.get("/api/health").json
    assert (health["status"], health["jsonl"]["problem"]) == ("ok", None)


@pytest.mark.both_backends
def test_failed_rating_append_is_503_and_keeps_the_old_rating(running, settings, monkeypatch):
    app, client = running
    client.post("/api/jobs", data=orjson.dumps(job("rated")), headers=JSON)
    assert client.put("/api/jobs/rated/rating", json={"rating": 3}).status_code == 200
    ratings_before = settings.ratings_path.read_bytes()
    with monkeypatch.context() as m:
        _fail_fsync(m)
        response = client.put("/api/jobs/rated/rating", json={"rating": 5})
        assert response.status_code == 503 and "No space left" in response.json["error"]["message"]
        assert client.delete("/api/jobs/rated/rating").status_code == 503
    assert settings.ratings_path.read_bytes() == ratings_before
    assert client.get("/api/jobs/rated").json["rating"] == 3
    assert client.put("/api/jobs/rated/rating", json={"rating": 5}).json["rating"] == 5


def in_thread(call):
    """Run call() in a thread; returns (the thread, a list that receives its result)."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    return thread, result


@pytest.mark.both_backends
def test_a_write_is_acknowledged_without_waiting_for_the_index_and_read_once_indexed(running, settings, monkeypatch):
    """Issue 15: the index update is off the acknowledgement path. With the index writer held up,
    a job, its retry, a conflict and a rating are answered (decided against the journal lines
    not indexed yet); a read waits until the index has them, then sees them (read-your-writes)."""
    app, client = running
    gate = threading.Event()
    insert_jobs = sync.insert_jobs

    def held(*args, **kwargs):
        assert gate.wait(30), "the test never opened the gate"
        return insert_jobs(*args, **kwargs)

    monkeypatch.setattr(sync, "insert_jobs", held)
    try:
        body = orjson.dumps(job("quick"))
        posting, posted = in_thread(lambda: client.post("/api/jobs", data=body, headers=JSON).status_code)
        posting.join(10)
        assert posted == [201], "the POST waited for the index"
        assert client.post("/api/jobs", data=body, headers=JSON).status_code == 200
        assert client.post("/api/jobs", data=orjson.dumps(job("quick", packs=["x"])), headers=JSON).status_code == 409
        assert client.put("/api/jobs/quick/rating", json={"rating": 5}).json["rating"] == 5
        assert [line["job_id"] for line in journal_lines(settings.log_path)] == ["quick"]
        reading, read = in_thread(lambda: client.get("/api/jobs/quick"))
        reading.join(0.5)
        assert reading.is_alive(), "the read did not wait for the index"
    finally:
        gate.set()
    reading.join(10)
    assert read[0].status_code == 200 and read[0].json["rating"] == 5
    assert listed(client) == ["quick"]
    app.extensions["learning_svc"].close()
    assert verify_index(settings) == []


def test_the_follower_indexes_writes_nobody_reads_yet_in_batches(running, settings, monkeypatch):
    """A rating rewrites ~95 index pages; indexed one by one as they came, 300 ratings a second
    wrote ~1 GB of WAL in 12 s and stalled the journal's fsyncs (rating PUT p99 24 ms). Unread
    writes are gathered for a moment and indexed together; a read has them indexed at once."""
    app, client = running
    service = app.extensions["learning_svc"]
    steps = []
    catch_up_to = sync.Indexer.catch_up_to

    def counted(self, conn, ends, *args, **kwargs):
        steps.append(ends)
        return catch_up_to(self, conn, ends, *args, **kwargs)

    monkeypatch.setattr(sync.Indexer, "catch_up_to", counted)
    assert client.post("/api/jobs", data=orjson.dumps(job("rated")), headers=JSON).status_code == 201
    for i in range(40):
        assert client.put("/api/jobs/rated/rating", json={"rating": i % 6}).status_code == 200
    assert client.get("/api/jobs/rated").json["rating"] == 39 % 6  # read-your-writes: indexed now
    assert len(journal_lines(settings.ratings_path)) == 40
    assert len(steps) <= 10, f"{len(steps)} index transactions for 41 writes"
    service.close()
    assert verify_index(settings) == []


@pytest.mark.both_backends
def test_index_failure_after_the_append_keeps_the_record_and_catches_up(running, settings, monkeypatch):
    app, client = running

    def broken(conn, batch, *args, **kwargs):
        raise RuntimeError("disk I/O error (injected)")

    with monkeypatch.context() as m:
        m.setattr(sync, "insert_jobs", broken)
        response = client.post("/api/jobs", data=orjson.dumps(job("durable")), headers=JSON)
        assert response.status_code == 201  # in the JSONL and fsynced: acknowledged
        assert client.get("/api/health").json["index"]["lag_bytes"] > 0
    assert [line["job_id"] for line in journal_lines(settings.log_path)] == ["durable"]
    assert client.post("/api/jobs", data=orjson.dumps(job("next")), headers=JSON).status_code == 201
    wait_until(lambda: sorted(listed(client)) == ["durable", "next"], "the index caught up by itself")
    assert client.get("/api/health").json["index"]["lag_bytes"] == 0


def wait_until(check, what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)


def test_a_full_index_disk_keeps_acknowledging_says_so_and_catches_up_once(running, settings, monkeypatch):
    """Index disk full: 600 jobs acknowledged, 590 then 404, each batch re-indexing the whole backlog
    and failing, and nothing told anyone. Now the journal goes on alone, /api/health says why the
    index is behind, the backlog is tried again on a timer (not per batch), and it catches up."""
    import sqlite3

    app, client = running
    tries = []

    def full(conn, batch, *args, **kwargs):
        tries.append(len(batch))
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as m:
        m.setattr(sync, "insert_jobs", full)
        for i in range(60):
            body = orjson.dumps(job(f"full-{i:02d}"))
            assert client.post("/api/jobs", data=body, headers=JSON).status_code == 201
        assert len(tries) <= 3  # not once per batch: the index is tried again after a while
        health = client.get("/api/health").json
        assert health["status"] == "degraded" and health["index"]["behind"]
        assert "disk is full" in health["index"]["problem"]["message"]
        assert health["index"]["problem"]["jobs_not_indexed"] == 60
        # the guarantees hold meanwhile: an identical retry writes nothing, a conflict is refused,
        # a job not yet in the index can be rated
        size = settings.log_path.stat().st_size
        assert client.post("/api/jobs", data=orjson.dumps(job("full-07")), headers=JSON).status_code == 200
        assert client.post("/api/jobs", data=orjson.dumps(job("full-07", packs=["x"])), headers=JSON).status_code == 409
        assert settings.log_path.stat().st_size == size
        assert client.put("/api/jobs/full-07/rating", json={"rating": 5}).status_code == 200
        assert client.put("/api/jobs/full-07/rating", json={"rating": 5}).json["rating"] == 5
        assert len(journal_lines(settings.ratings_path)) == 1
    wait_until(lambda: len(listed(client)) == 60, "the index caught up once it could be written")
    health = client.get("/api/health").json
    assert health["status"] == "ok" and health["index"]["problem"] is None and health["index"]["lag_bytes"] == 0
    assert client.get("/api/ratings").json == {"full-07": 5}
    app.extensions["learning_svc"].close()
    assert verify_index(settings) == []


def test_a_service_started_without_room_for_its_index_serves_from_the_journal_and_catches_up(settings, monkeypatch):
    """A durability run: with room on the disk for journal appends but not for the index's
    start-up catch-up, `serve` exited "database or disk is full", while a running service in that
    state acknowledged every write. It starts now, says so in /api/health, decides retries,
    conflicts and ratings of the jobs not indexed yet as ever, and catches up once there is room.
    The disk is full for real as SQLite sees it: its page limit (max_page_count), SQLITE_FULL."""
    import sqlite3

    from sqlalchemy import event

    from learning_svc.index import db as db_module

    fill(settings, 20)  # indexed; then 400 lines the index has not seen (another writer's, or the client's fallback)
    with settings.log_path.open("ab") as log:
        for i in range(400):
            log.write(records.dumps(stored(f"later-{i:03d}")))
        log.write(records.dumps(stored("torn"))[:100])  # and a writer's torn tail
    with sqlite3.connect(settings.index_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        room = {"pages": conn.execute("PRAGMA page_count").fetchone()[0] + 1}
    make_engine = db_module.make_engine

    def without_room(*args, **kwargs):
        engine = make_engine(*args, **kwargs)
        if kwargs.get("writer"):
            event.listen(
                engine,
                "connect",
                lambda dbapi, _: room["pages"] and dbapi.execute(f"PRAGMA max_page_count = {room['pages']}"),
            )
        return engine

    monkeypatch.setattr(db_module, "make_engine", without_room)
    app = create_app(settings)  # it exited with "database or disk is full"
    client = app.test_client()
    try:
        health = client.get("/api/health").json
        assert health["status"] == "degraded" and health["index"]["behind"], health
        problem = health["index"]["problem"]
        assert "database or disk is full" in problem["message"] and problem["jobs_not_indexed"] == 400, problem
        assert health["jsonl"]["jobs_lines"] == 420 and health["index"]["jobs"] == 20
        moved = health["damaged"]["torn_tails_moved"]  # by the catch-up, before it failed
        assert len(moved) == 1 and moved[0].startswith("learning_log_v2.jsonl.torn-"), moved
        assert len(listed(client)) == 20  # what the index holds; the rest once it can be written
        # a job known only from the journal is reviewed before any write took the backlog in (it was 404)
        assert client.post("/api/jobs/later-003/review", json={"flag": "pick"}).status_code == 200
        assert client.put("/api/jobs/later-004/outputs/0/rating", json={"rating": 2}).status_code == 200
        size = settings.log_path.stat().st_size
        later = orjson.dumps(job("later-007"))
        assert client.post("/api/jobs", data=later, headers=JSON).status_code == 200  # known from the journal
        assert (
            client.post("/api/jobs", data=orjson.dumps(job("later-007", packs=["x"])), headers=JSON).status_code == 409
        )
        assert settings.log_path.stat().st_size == size
        assert client.post("/api/jobs", data=orjson.dumps(job("new-000")), headers=JSON).status_code == 201
        assert client.put("/api/jobs/later-007/rating", json={"rating": 5}).status_code == 200
        assert client.get("/api/health").json["index"]["problem"]["jobs_not_indexed"] == 401
        room["pages"] = None  # room again: connections made from now on have no limit
        app.extensions["learning_svc"].write_engine.dispose()
        wait_until(lambda: len(listed(client)) == 421, "the index caught up once it could be written")
        health = client.get("/api/health").json
        assert health["status"] == "ok" and health["index"]["problem"] is None and health["index"]["lag_bytes"] == 0
        assert client.get("/api/ratings").json == {"job-0000": 4, "later-007": 5}
        assert listed(client, flag="pick") == ["later-003"] and listed(client, image_rating="2") == ["later-004"]
    finally:
        app.extensions["learning_svc"].close()
    assert verify_index(settings) == []


def test_an_index_to_be_made_anew_on_a_disk_without_room_is_not_served_as_current(settings, monkeypatch):
    """A code review: when the start-up's wipe of an index made by another version failed for
    want of room, the old rows were served with status "ok" (the text search without the new
    words) until a restart. Such an index is not served: `serve` says why, as before."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    from learning_svc.index import db as db_module

    fill(settings, 20)
    with sqlite3.connect(settings.index_path) as conn:
        conn.execute("UPDATE index_meta SET value = 'another version' WHERE key = 'projection'")
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    make_engine = db_module.make_engine

    def without_room(*args, **kwargs):
        engine = make_engine(*args, **kwargs)
        if kwargs.get("writer"):
            event.listen(engine, "connect", lambda dbapi, _: dbapi.execute(f"PRAGMA max_page_count = {pages}"))
        return engine

    wipe = sync.wipe

    def wipe_without_room(conn):  # the wipe's transaction needs room: it finds none (SQLite's own SQLITE_FULL)
        wipe(conn)
        conn.exec_driver_sql("CREATE TABLE more_room AS SELECT randomblob(200000) AS b")

    monkeypatch.setattr(db_module, "make_engine", without_room)
    monkeypatch.setattr(sync, "wipe", wipe_without_room)
    with pytest.raises(OperationalError, match="database or disk is full"):
        create_app(settings)
    with sqlite3.connect(settings.index_path) as conn:  # nothing half done: the old index, to be made anew
        assert conn.execute("SELECT value FROM index_meta WHERE key = 'projection'").fetchone() == ("another version",)


def test_what_says_the_index_disk_is_full_on_each_database():
    """SQLite's SQLITE_FULL (by its code, as the test above meets it) and its disk I/O errors
    (SQLITE_IOERR_WRITE and the like: what a real full file system gave a WAL write with 28 KB
    left, and `serve` exited; an outside run), PostgreSQL's disk_full (SQLSTATE 53100, by
    psycopg's class); nothing else."""
    import sqlite3

    import psycopg.errors

    from learning_svc.index import db as db_module

    full = sqlite3.connect(":memory:")
    full.execute("CREATE TABLE t (x)")
    full.execute("PRAGMA max_page_count = 2")
    with pytest.raises(sqlite3.OperationalError) as sqlite_full:
        full.executemany("INSERT INTO t VALUES (?)", [("x" * 4000,)] * 10)
    assert db_module.out_of_room(sqlite_full.value)
    assert db_module.out_of_room(psycopg.errors.DiskFull())
    io_error = sqlite3.OperationalError("disk I/O error")  # SQLite gives no way to make one on demand
    io_error.sqlite_errorcode = 778  # SQLITE_IOERR_WRITE, as the sqlite3 module sets it
    assert db_module.out_of_room(io_error)
    for other in (psycopg.errors.UniqueViolation(), OSError(errno.EIO, "I/O"), sqlite3.OperationalError("locked")):
        assert not db_module.out_of_room(other), other


def test_health_is_ok_as_soon_as_the_index_holds_everything_again(running, settings, monkeypatch):
    """After a full index disk, the follower commits the backlog and then clears the trouble:
    between the two, a listing already showed every job while /api/health still said
    "degraded" (a CI run caught it). Health now follows the index: nothing behind, no trouble."""
    import sqlite3

    app, client = running

    def full(conn, batch, *args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as m:
        m.setattr(sync, "insert_jobs", full)
        for i in range(5):
            assert client.post("/api/jobs", data=orjson.dumps(job(f"full-{i}")), headers=JSON).status_code == 201
        assert client.get("/api/health").json["status"] == "degraded"
    committed, go = threading.Event(), threading.Event()
    recovered = service_module.Service._index_recovered

    def slow_to_clear(self):
        if self.index_trouble is not None:
            committed.set()
            go.wait(10)
        recovered(self)

    monkeypatch.setattr(service_module.Service, "_index_recovered", slow_to_clear)
    try:
        assert committed.wait(30), "the follower did not try again"
        health = client.get("/api/health").json
        assert health["index"]["lag_bytes"] == 0 and health["index"]["jobs"] == 5
        assert health["status"] == "ok" and health["index"]["problem"] is None, health
    finally:
        go.set()


def test_journal_locked_by_a_stuck_process_is_503_and_writes_nothing(settings, monkeypatch):
    monkeypatch.setattr(service_module, "Journal", functools.partial(Journal, lock_timeout=0.3))
    app = create_app(settings)
    client = app.test_client()
    holder = None
    try:
        client.post("/api/jobs", data=orjson.dumps(job("before")), headers=JSON)
        holder = subprocess.Popen(
            [
                PYTHON,
                "-c",
                textwrap.dedent(f"""
                import sys
                from learning_svc.journal import Journal
                with Journal({str(settings.log_path)!r}).locked():
                    print("locked", flush=True)
                    sys.stdin.readline()
            """),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        assert holder.stdout.readline().strip() == "locked"
        response = client.post("/api/jobs", data=orjson.dumps(job("blocked")), headers=JSON)
        assert response.status_code == 503 and "locked by another process" in response.json["error"]["message"]
        holder.stdin.close()  # the stuck process lets go
        assert holder.wait(timeout=30) == 0
        assert client.post("/api/jobs", data=orjson.dumps(job("blocked")), headers=JSON).status_code == 201
        assert [line["job_id"] for line in journal_lines(settings.log_path)] == ["before", "blocked"]
    finally:
        if holder and holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        app.extensions["learning_svc"].close()


# ---------------------------------------------------------------- reindex


def settings_env(settings) -> dict:
    """A CLI child's environment for these settings' index."""
    return cli_env(**({"LEARNING_SVC_DATABASE_URL": settings.database_url} if settings.database_url else {}))


def scratch_schemas(settings) -> list[str]:
    """PostgreSQL: a reindex's scratch schemas left in the database (none on SQLite)."""
    if not settings.database_url:
        return []
    engine = create_engine(settings.db_url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'learning_svc%'")))
    finally:
        engine.dispose()


def _index_state(settings) -> dict:
    engine = create_engine(settings.db_url)
    try:
        with engine.connect() as conn:
            return {
                "jobs": conn.exec_driver_sql("SELECT job_id, rating FROM jobs ORDER BY id").all(),
                "checkpoint": read_checkpoint(conn, "log"),
            }
    finally:
        engine.dispose()


@pytest.mark.both_backends
@pytest.mark.parametrize("interruption", [RuntimeError("injected"), KeyboardInterrupt()], ids=["error", "ctrl_c"])
def test_interrupted_reindex_leaves_the_old_index_working(settings, monkeypatch, interruption):
    ids = fill(settings, 30)
    index_path = None if settings.database_url else settings.index_path  # PostgreSQL: a scratch schema
    state, index_bytes = _index_state(settings), index_path and sha(index_path)
    calls = []

    def fails_on_the_second_batch(conn, batch, *args, **kwargs):
        calls.append(len(batch))
        if len(calls) == 2:
            raise interruption
        return real_insert(conn, batch, *args, **kwargs)

    real_insert = sync.insert_jobs
    with monkeypatch.context() as m:
        m.setattr(sync, "BATCH_LINES", 10)
        m.setattr(sync, "insert_jobs", fails_on_the_second_batch)
        with pytest.raises(type(interruption)):
            rebuild(settings.db_url, Journal(settings.log_path), Journal(settings.ratings_path), index_path)
    assert calls == [10, 10]  # it was stopped half-way
    assert (index_path and sha(index_path)) == index_bytes and _index_state(settings) == state
    assert not list(settings.data_dir.glob("*.rebuild-*")) and not scratch_schemas(settings), "scratch left behind"
    app = create_app(settings)
    try:
        assert app.extensions["learning_svc"].startup.rebuilt is None
        assert sorted(listed(app.test_client())) == ids
    finally:
        app.extensions["learning_svc"].close()


@pytest.mark.both_backends
def test_reindex_over_a_damaged_journal_fails_and_keeps_the_old_index(settings):
    fill(settings, 5)
    state = _index_state(settings)
    with open(settings.log_path, "ab") as f:
        f.write(b"garbage\n" + records.dumps(stored("later")))
    result = run_cli("reindex", "--data-dir", str(settings.data_dir), env=settings_env(settings))
    assert result.returncode != 0 and "line 6" in result.stderr
    assert _index_state(settings) == state
    assert not list(settings.data_dir.glob("*.rebuild-*")) and not scratch_schemas(settings)


@pytest.mark.both_backends
def test_reindex_swaps_in_a_complete_index(settings):
    ids = fill(settings, 25)
    append_directly(settings.log_path, [stored("offline")])
    result = run_cli("reindex", "--data-dir", str(settings.data_dir), env=settings_env(settings))
    assert result.returncode == 0, result.stderr
    assert "indexed 26 job lines" in result.stdout
    assert [row[0] for row in _index_state(settings)["jobs"]] == ids + ["offline"]
    assert not list(settings.data_dir.glob("*.rebuild-*")) and not scratch_schemas(settings)
    assert run_cli("verify", "--data-dir", str(settings.data_dir), env=settings_env(settings)).returncode == 0


# ---------------------------------------------------------------- the index's WAL


def test_the_wal_is_copied_back_into_the_index_file_while_writes_go_on(running, settings):
    """The writer's commits never checkpoint (a checkpoint inside a commit held up every write
    queued behind it); the service's own checkpointer copies the WAL back within a second."""
    app, client = running
    index_file = settings.data_dir / "index.sqlite3"
    before = index_file.stat().st_size
    for i in range(150):
        assert client.post("/api/jobs", data=orjson.dumps(job(f"wal-{i:03d}")), headers=JSON).status_code == 201
    deadline = time.monotonic() + 10
    while index_file.stat().st_size <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert index_file.stat().st_size > before, "nothing was copied back from the WAL"
    assert len(listed(client)) == 150


@pytest.mark.parametrize("kind", ["database", "other"])
def test_a_failed_commit_answers_503_without_sql_or_other_clients_values(running, monkeypatch, kind):
    """A commit that fails in the index database (PostgreSQL away) or anywhere else: 503, and the
    message never carries the statement or its parameters (other clients' job ids)."""
    from sqlalchemy.exc import OperationalError

    app, client = running

    def broken(self, ops):
        if kind == "database":
            raise OperationalError("INSERT INTO jobs VALUES (?)", ("someone-elses-job",), ConnectionError("gone"))
        raise RuntimeError("values ('someone-elses-job')")

    monkeypatch.setattr(service_module.Service, "_commit", broken)
    response = client.post("/api/jobs", data=orjson.dumps(job("mine")), headers=JSON)
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "fields"}
    assert "someone-elses-job" not in response.get_data(as_text=True)
    assert "INSERT" not in error["message"]


@pytest.mark.both_backends
def test_another_writers_over_long_values_are_indexed_alike_on_both_backends(settings):
    """The index's column widths bind on PostgreSQL, not on SQLite: a line another writer made
    with a 300-character job id, status, input hash, rating id or model name is cut to the
    width (or, for a job id no API call could name, passed over and counted) the same way on
    both, instead of stopping the PostgreSQL index at that line."""
    fill(settings, 3)
    long_model = "m" * 700
    lines = [
        {**stored("long"), "job_id": "x" * 300},
        {**stored("wide-values"), "status": "s" * 300, "input_hash": "h" * 300, "model": long_model},
    ]
    append_directly(settings.log_path, lines)
    with open(settings.ratings_path, "ab") as ratings:
        ratings.write(records.dumps({**records.rating_event("wide-values", 4, "api"), "rating_id": "r" * 300}))
        ratings.write(records.dumps(records.rating_event("x" * 300, 5, "api")))
    app = create_app(settings)
    try:
        client = app.test_client()
        assert "x" * 300 not in listed(client) and "wide-values" in listed(client)
        assert client.get("/api/ratings").json["wide-values"] == 4
        assert client.get("/api/health").json["index"]["skipped_lines"] == 2  # the over-long id's job and rating
        models = {entry["value"] for entry in client.get("/api/facets?facet_size=100").json["facets"]["model"]}
        assert long_model[:512] in models
    finally:
        app.extensions["learning_svc"].close()
    assert verify_index(settings) == []


def test_reindex_refuses_a_sqlite_index_a_running_service_has_open(settings):
    """The README said "stop the server first", and nothing checked: a reindex replaced the file
    under a running server, which went on writing to its own open copy (a rating made after it
    was missing from the new index; `verify` found rating_events rows missing, /api/health said
    ok). A service, its workers and an import now hold the index file shared; a reindex takes it
    alone or stops at once with one line, and the old index stays."""
    ids = fill(settings, 5)
    service = Service(settings).start()
    try:
        before = sha(settings.index_path)
        result = run_cli("reindex", "--data-dir", str(settings.data_dir), env=settings_env(settings))
        assert result.returncode == 1
        assert "is open in a running service or import: stop it first" in result.stderr
        assert "reindex:" not in result.stderr  # one line, not an empty progress bar (twice) before it
        assert sha(settings.index_path) == before and not list(settings.data_dir.glob("*.rebuild-*"))
        service.rate_job(ids[0], 4, "api")
    finally:
        service.close()
    result = run_cli("reindex", "--data-dir", str(settings.data_dir), env=settings_env(settings))
    assert result.returncode == 0, result.stderr
    assert verify_index(settings) == []


def test_a_service_does_not_start_on_a_sqlite_index_being_rebuilt(settings):
    from learning_svc.osutil import IndexInUse, hold_index_file

    fill(settings, 3)
    hold = hold_index_file(settings.index_path, exclusive=True)  # what a running reindex holds
    try:
        with pytest.raises(IndexInUse, match="is being rebuilt"):
            Service(settings).start()
        result = run_cli("serve", "--port", "0", "--data-dir", str(settings.data_dir), env=settings_env(settings))
        assert result.returncode == 1 and "is being rebuilt by `learning-svc reindex`" in result.stderr
    finally:
        os.close(hold)
    service = Service(settings).start()  # and once it has finished
    service.close()


# ---------------------------------------------------------------- the index file deleted while serving


def _serving_rated_jobs(settings, prefix: str, count: int, rating: int):
    """A live server holding `count` jobs `<prefix>-<i>`, the first one rated: (server, session)."""
    from conftest import LiveServer

    server, http = LiveServer(settings), requests.Session()
    try:
        for i in range(count):
            assert http.post(f"{server.url}/api/jobs", json=job(f"{prefix}-{i}")).status_code == 201
        assert http.put(f"{server.url}/api/jobs/{prefix}-0/rating", json={"rating": rating}).status_code == 200
    except BaseException:
        server.stop()
        raise
    return server, http


def _delete_index(settings) -> None:
    for suffix in ("", "-wal", "-shm"):
        settings.index_path.with_name(settings.index_path.name + suffix).unlink(missing_ok=True)


def test_an_index_deleted_under_concurrent_writes_is_made_anew_and_nothing_is_lost(live_server):
    """SPEC §1: the index "may be deleted at any time". Under 16 writers, the pools' new
    connections made an empty file beside the old one still open: 80 of 320 POSTs were 503,
    then reads and writes failed by turns ("no such table") until a restart, and /api/health
    said ok all along."""
    settings = live_server.settings
    http = requests.Session()
    for i in range(80):
        assert http.post(f"{live_server.url}/api/jobs", json=job(f"before-{i}")).status_code == 201
    _delete_index(settings)
    statuses: list[int] = []

    def write(worker: int) -> None:
        session = requests.Session()
        for i in range(20):
            response = session.post(f"{live_server.url}/api/jobs", json=job(f"w{worker}-{i}"))
            statuses.append(response.status_code)
            if response.status_code != 201:  # a write the service could not take is sent again, as the client does
                assert response.status_code == 503, response.text
                assert session.post(f"{live_server.url}/api/jobs", json=job(f"w{worker}-{i}")).status_code in (200, 201)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(201) >= 300, sorted(set(statuses))  # a few 503s while the index is made anew
    expected = {f"before-{i}" for i in range(80)} | {f"w{n}-{i}" for n in range(16) for i in range(20)}
    for _ in range(6):  # every read answers, from the new file, with every job
        assert http.get(f"{live_server.url}/api/jobs?limit=1").status_code == 200
        listed = [j["job_id"] for page in listing_pages(over_http(http, live_server.url)) for j in page]
        assert sorted(listed) == sorted(expected)
        assert http.get(f"{live_server.url}/api/ratings").status_code == 200
    health = http.get(f"{live_server.url}/api/health").json()
    assert health["status"] == "ok" and health["index"]["jobs"] == len(expected), health
    assert settings.index_path.exists() and verify_index(settings) == []


def test_an_index_deleted_while_idle_is_made_anew_health_says_so_and_the_next_start_continues(settings):
    """No write after the deletion: a read waits for the new index (it was a 503 "lost its
    tables ... restart the service" until the follower noticed), /api/health says degraded at
    once; and the next start continues from the new index (it lacked the projection mark, and
    every later start rebuilt the whole index "for other fields")."""
    from conftest import LiveServer

    server, http = _serving_rated_jobs(settings, "idle", 5, rating=4)
    try:
        time.sleep(0.5)  # every line indexed, the pools' connections idle on the file
        _delete_index(settings)
        health = http.get(f"{server.url}/api/health")
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "degraded" or settings.index_path.exists(), health.json()
        listed = http.get(f"{server.url}/api/jobs")
        assert listed.status_code == 200, listed.text  # waited for the new file
        jobs = listed.json()["jobs"]
        assert sorted(j["job_id"] for j in jobs) == [f"idle-{i}" for i in range(5)]
        assert {j["job_id"]: j["rating"] for j in jobs}["idle-0"] == 4
        assert http.get(f"{server.url}/api/health").json()["status"] == "ok"
    finally:
        server.stop()
    again = LiveServer(settings)
    try:
        assert again.app.extensions["learning_svc"].startup.rebuilt is None
        assert again.http.get(f"{again.url}/api/count").json()["jobs"] == 5
    finally:
        again.stop()


def test_writes_refused_while_the_index_database_is_away_are_logged_once_a_while(app, monkeypatch, caplog):
    """A PostgreSQL stopped for 10 s under 8 clients wrote 342 "commit failed" lines, one a
    refused request (an outside run). Now one line at most every REFUSED_LOG_SECONDS, with how
    many were refused; each refused write still answers 503 and writes nothing."""
    from sqlalchemy.exc import OperationalError

    service = app.extensions["learning_svc"]
    client = app.test_client()
    size = service.jobs_journal.size()

    def away(ops):
        raise OperationalError("SELECT 1", {}, Exception("connection refused\n\tIs the server running?"))

    monkeypatch.setattr(service, "_commit", away)
    with caplog.at_level("WARNING", logger="learning_svc.service"):
        statuses = [client.post("/api/jobs", json=job(f"away-{i}")).status_code for i in range(40)]
        service.refused_writes.next_line = 0.0  # as if REFUSED_LOG_SECONDS had passed
        assert client.post("/api/jobs", json=job("away-last")).status_code == 503
    assert statuses == [503] * 40 and service.jobs_journal.size() == size
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines == [
        "1 write(s) refused (503, nothing written): the index database: connection refused",
        "40 write(s) refused (503, nothing written): the index database: connection refused",
    ], lines


def test_reads_answered_503_while_the_index_database_is_away_are_logged_once_a_while(app, monkeypatch, caplog):
    """A 60 s PostgreSQL outage under a few readers and an open page wrote ~900 WARNING lines,
    one a request (an outside run). Reads too are now one line at most every
    REFUSED_LOG_SECONDS, with how many were answered 503."""
    from sqlalchemy.exc import OperationalError

    service = app.extensions["learning_svc"]
    client = app.test_client()

    def away(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused\n\tIs the server running?"))

    monkeypatch.setattr(service, "count", away)
    with caplog.at_level("WARNING"):
        statuses = [client.get("/api/count").status_code for _ in range(30)]
        service.refused_reads.next_line = 0.0  # as if REFUSED_LOG_SECONDS had passed
        assert client.get("/api/count").status_code == 503
    assert statuses == [503] * 30
    lines = [r.getMessage() for r in caplog.records if "could not be read" in r.getMessage()]
    assert lines == [
        "1 request(s) answered 503: the index database could not be read: connection refused Is the server running?",
        "30 request(s) answered 503: the index database could not be read: connection refused Is the server running?",
    ], lines


def test_health_says_how_far_a_deleted_index_is_made_anew(settings, monkeypatch):
    """At a million jobs the new index takes minutes: /api/health said "being made anew" with a
    `since` of the moment it was asked (it moved at every call) and nothing of its progress.
    Now `since` stays, and `bytes_indexed` of `bytes_to_index` and the message say how far."""
    server, http = _serving_rated_jobs(settings, "far", 30, rating=5)
    try:
        service = server.app.extensions["learning_svc"]
        halfway, go_on = threading.Event(), threading.Event()
        catch_up = service.indexer.catch_up

        def paused_after_the_first_batch(progress=None, **kwargs):
            def step(done: int) -> None:
                if progress is not None:  # (the service passed none before)
                    progress(done)
                halfway.set()
                assert go_on.wait(20)

            return catch_up(progress=step, **kwargs)

        monkeypatch.setattr(service.indexer, "catch_up", paused_after_the_first_batch)
        begin = threading.Event()  # the renewal waits: health is asked before it began, too
        renew = service._renew_index

        def held_back():
            assert begin.wait(20)
            renew()

        monkeypatch.setattr(service, "_renew_index", held_back)
        time.sleep(0.5)
        deleted_at = time.time()
        _delete_index(settings)
        total = settings.log_path.stat().st_size + settings.ratings_path.stat().st_size
        before = [http.get(f"{server.url}/api/health").json() for _ in range(2)]
        begin.set()
        assert halfway.wait(10), "the follower did not begin making the index anew"
        first = http.get(f"{server.url}/api/health").json()
        time.sleep(0.05)
        second = http.get(f"{server.url}/api/health").json()
        go_on.set()
        # before it began: no progress yet, and a since that stays (it was the moment of each call)
        for health in before:
            problem = health["index"]["problem"]
            assert health["status"] == "degraded" and problem["bytes_to_index"] is None, health
            assert problem["since"] == first["index"]["problem"]["since"], (problem, first)
        for health in (first, second):
            problem = health["index"]["problem"]
            assert health["status"] == "degraded" and problem["jobs_not_indexed"] is None, health
            assert problem["bytes_to_index"] == total and 0 < problem["bytes_indexed"] < total, problem
            assert problem["message"].endswith(f"{problem['bytes_indexed'] * 100 // total}% done"), problem
        assert first["index"]["problem"]["since"] == second["index"]["problem"]["since"] >= deleted_at - 0.01
        listed = http.get(f"{server.url}/api/count")
        assert listed.status_code == 200 and listed.json()["jobs"] == 30, listed.text
        health = http.get(f"{server.url}/api/health").json()
        assert health["status"] == "ok" and health["index"]["problem"] is None, health
    finally:
        server.stop()


def test_an_index_deleted_under_several_worker_processes_is_made_anew_once_by_each(tmp_path):
    """`serve --workers 3`: each process notices the deletion; the one that comes second takes
    the index the first made anew (it does not remove it as a stray and make its own, which
    would send the others round again)."""
    server = ServerProcess(tmp_path / "learning", env=cli_env(), args=("--workers", "3")).start()
    index = tmp_path / "learning" / "index.sqlite3"
    try:
        for i in range(30):
            assert requests.post(server.url + "/api/jobs", json=job(f"pre-{i}")).status_code == 201
        for suffix in ("", "-wal", "-shm"):
            index.with_name(index.name + suffix).unlink(missing_ok=True)

        def write(n: int) -> None:
            for i in range(15):
                for _ in range(20):  # a 503 while the index is made anew: sent again, as the client does
                    if requests.post(server.url + "/api/jobs", json=job(f"post-{n}-{i}")).status_code in (200, 201):
                        break
                    time.sleep(0.2)
                else:
                    raise AssertionError(f"post-{n}-{i} was never taken")

        threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(2 * service_module.IDLE_CHECK_SECONDS + 1)  # every worker's follower has looked
        made = server.output().count("is made anew")
        assert made >= 1, server.output()[-3000:]
        for _ in range(30):  # new connections: any worker answers, each from the same new file
            count = requests.get(server.url + "/api/count").json()
            assert count["jobs"] == 90, count
        time.sleep(2 * service_module.IDLE_CHECK_SECONDS + 1)
        assert server.output().count("is made anew") == made  # settled: nobody made it anew again
    finally:
        server.kill()


def test_making_a_deleted_index_anew_that_fails_is_tried_again_later_not_at_every_read(settings, monkeypatch):
    """A full disk while the index is made anew: the reads waiting for it nudge the follower every
    20 ms; each nudge was an attempt (and two warnings in the log). One attempt, then again
    after INDEX_RETRY_SECONDS, and the index is made once the disk takes it."""
    from conftest import LiveServer

    attempts = []
    real_upgrade = service_module.db.upgrade

    def upgrade(engine):
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_upgrade(engine)

    server = LiveServer(settings)
    try:
        http = requests.Session()
        assert http.post(f"{server.url}/api/jobs", json=job("kept")).status_code == 201
        time.sleep(0.3)
        monkeypatch.setattr(service_module.db, "upgrade", upgrade)
        _delete_index(settings)
        first = http.get(f"{server.url}/api/jobs")  # waits READ_WAIT_SECONDS at most
        assert first.status_code in (200, 503), first.text
        assert len([t for t in attempts if t < attempts[0] + service_module.INDEX_RETRY_SECONDS - 0.5]) == 1
        deadline = time.monotonic() + 15
        while http.get(f"{server.url}/api/health").json().get("status") != "ok" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [j["job_id"] for j in http.get(f"{server.url}/api/jobs").json()["jobs"]] == ["kept"]
        assert 2 <= len(attempts) <= 4, attempts
    finally:
        server.stop()


def _wal_emptied(service) -> None:
    """Every page in the index file itself, the WAL emptied: a page the WAL holds is read from
    there, and damage to the file's copy of it would go unseen until a checkpoint."""
    raw = service.write_engine.raw_connection()
    try:
        raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        raw.close()


def _damage_index(settings, how: str) -> None:
    """The index file damaged in place (same inode): its header zeroed, or garbage over its pages."""
    with open(settings.index_path, "r+b") as file:
        if how == "header":
            file.write(b"\0" * 100)
        else:
            size = file.seek(0, 2)
            file.seek(max(4096, size // 2 // 4096 * 4096))
            file.write(os.urandom(64 * 1024))


def test_an_index_damaged_while_serving_is_made_anew_and_nothing_is_lost(settings):
    """An outside run zeroed the index file's header while the service ran: every write was a
    503 and every read a 500 ("file is not a database") for as long as it watched, until the file
    was deleted by hand. The index is derived (SPEC §1): a damaged file is made anew, as a deleted
    one is, and writes go on."""
    server, http = _serving_rated_jobs(settings, "dmg", 30, rating=4)
    try:
        time.sleep(0.5)  # every line indexed, the pools' connections idle on the file
        _wal_emptied(server.app.extensions["learning_svc"])
        _damage_index(settings, "header")
        deadline = time.monotonic() + 60
        while (response := http.post(f"{server.url}/api/jobs", json=job("after"))).status_code != 201:
            assert response.status_code == 503, response.text  # a moment's trouble, never a 500
            read = http.get(f"{server.url}/api/jobs?limit=5")  # reads too (they were 500s)
            assert read.status_code in (200, 503), read.text
            assert time.monotonic() < deadline, response.text
            time.sleep(0.2)
        rated = http.put(f"{server.url}/api/jobs/dmg-1/rating", json={"rating": 2})
        assert rated.status_code == 200, rated.text
        jobs = {j["job_id"]: j["rating"] for j in http.get(f"{server.url}/api/jobs?limit=100").json()["jobs"]}
        assert len(jobs) == 31 and jobs["dmg-0"] == 4 and jobs["dmg-1"] == 2 and jobs["after"] is None
        health = http.get(f"{server.url}/api/health").json()
        assert health["status"] == "ok" and health["index"]["jobs"] == 31, health
    finally:
        server.stop()
    assert verify_index(settings) == []


@pytest.mark.parametrize("how", ["header", "pages"])
def test_a_damaged_index_is_made_anew_at_the_start_and_verify_says_it_is_damaged(settings, how):
    """`serve` after a clean stop exited 1 with "cannot use the index database ...: file is not a
    database", and `verify` stopped with a traceback ("database disk image is malformed"). The
    start makes a damaged file anew; verify names the damage and the command that mends it."""
    from conftest import LiveServer

    server, http = _serving_rated_jobs(settings, "start", 400, rating=5)
    server.stop()
    _damage_index(settings, how)
    [problem] = verify_index(settings)
    assert problem.startswith("the index file is damaged (") and "`learning-svc reindex`" in problem, problem
    if how == "header":
        again = LiveServer(settings)
        try:
            counted = again.http.get(f"{again.url}/api/count").json()
            assert counted["jobs"] == 400 and counted["unrated"] == 399, counted
        finally:
            again.stop()
        assert verify_index(settings) == []


def test_an_index_made_anew_by_another_process_since_the_damage_was_met_is_not_removed(settings, monkeypatch):
    """A code review: the start removed a file found damaged without the journals' locks and
    without looking again, so a sibling process that had made the index anew meanwhile lost its
    new file (and made it again). The file is removed only if it is still damaged."""
    import sqlite3

    from sqlalchemy.exc import DatabaseError

    fill(settings, 30)
    with sqlite3.connect(settings.index_path) as conn:  # a mark of this very file (an inode number is reused)
        conn.execute("INSERT INTO index_meta (key, value) VALUES ('this file', 'kept')")
    opened = service_module.Service._open_index
    calls = []

    def met_damage_then_made_anew(self):  # this start met the damage; another had mended it since
        calls.append(1)
        if len(calls) == 1:
            damage = sqlite3.DatabaseError("file is not a database")
            damage.sqlite_errorcode = 26  # SQLITE_NOTADB, as the sqlite3 module sets it
            raise DatabaseError("SELECT 1", {}, damage)
        return opened(self)

    monkeypatch.setattr(service_module.Service, "_open_index", met_damage_then_made_anew)
    app = create_app(settings)
    try:
        assert len(calls) == 2 and app.test_client().get("/api/count").json["jobs"] == 30
    finally:
        app.extensions["learning_svc"].close()
    with sqlite3.connect(settings.index_path) as conn:  # the whole file kept, not made again
        assert conn.execute("SELECT value FROM index_meta WHERE key = 'this file'").fetchall() == [("kept",)]


def test_a_killed_reindex_s_scratch_files_are_removed_at_the_next_start(settings):
    """A durability run: `reindex` killed with SIGKILL left index.sqlite3.rebuild-<pid> and its
    -wal and -shm (each as large as the index) until the next reindex; `serve` left them."""
    from conftest import LiveServer

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()  # a process id that is gone
    scratch = [
        settings.index_path.with_name(f"{settings.index_path.name}.rebuild-{dead.pid}{end}")
        for end in ("", "-wal", "-shm")
    ]
    for path in scratch:
        path.write_bytes(b"x" * 1024)
    server = LiveServer(settings)
    try:
        assert [path.exists() for path in scratch] == [False, False, False]
        assert server.http.get(f"{server.url}/api/health").json()["status"] == "ok"
    finally:
        server.stop()


def test_a_connection_to_the_damaged_file_that_outlives_its_renewal_does_not_renew_the_new_one(settings):
    """A code review: a connection held past the renewal's wait (a long export) still read the
    old damaged file; its next statement flagged the damage again, and the new, whole index was
    deleted and made anew a second time."""
    server, http = _serving_rated_jobs(settings, "stale", 20, rating=3)
    try:
        service = server.app.extensions["learning_svc"]
        held = service.read_engine.connect()  # checked out: the renewal's wait does not close it
        try:
            time.sleep(0.3)
            damaged = service._index_file_id
            _wal_emptied(service)
            _damage_index(settings, "header")
            service.read_engine.dispose()  # new connections read the header
            deadline = time.monotonic() + 60
            taken = 0
            for n in itertools.count():  # writes and reads meet the damage; the file is made anew
                taken += http.post(f"{server.url}/api/jobs", json=job(f"stale-after-{n}")).status_code == 201
                http.get(f"{server.url}/api/jobs?limit=5")
                if service._index_file_id != damaged and service._index_damaged is None:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert http.get(f"{server.url}/api/count").status_code == 200
            made_anew = os.stat(settings.index_path).st_ino
            with pytest.raises(Exception, match="file is not a database|malformed"):
                held.exec_driver_sql("SELECT * FROM jobs").all()  # the old file's damage
        finally:
            held.close()
        time.sleep(3)  # the follower has looked at it
        assert os.stat(settings.index_path).st_ino == made_anew  # not made anew again
        assert service._index_damaged is None
        assert http.get(f"{server.url}/api/count").json()["jobs"] == 20 + taken
    finally:
        server.stop()
    assert verify_index(settings) == []
