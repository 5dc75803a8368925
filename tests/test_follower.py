"""The committer decides against the index plus the backlog the follower has not indexed yet
(service.py): the cases a review of that change found, each a write acknowledged and then
decided against the wrong state."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy.exc import OperationalError

from learning_svc import records
from learning_svc import service as service_module
from learning_svc.index import sync
from learning_svc.journal import Journal
from learning_svc.service import Conflict, NotFound, Service, Unavailable

from procs import job, journal_lines


def job_in(job_id: str, **fields) -> records.JobIn:
    return records.parse(records.JobIn, job(job_id, **fields))


def stop_follower(service: Service) -> None:
    service._follower_stop = True
    service._follow_wake.set()
    service._follow_now.set()
    service._follower.join()
    service._follower, service._follower_stop = None, False


def test_a_rating_indexed_before_its_job_is_the_state_a_clear_is_decided_against(settings, monkeypatch):
    """The follower takes a batch of each file: with a long log backlog the ratings file's
    checkpoint passes a rating whose job line is not indexed yet. The clear that follows must
    still see the rating (it was answered "unchanged" and never written)."""
    service = Service(settings).start()
    try:
        stop_follower(service)
        for i in range(6):
            service.record_job(job_in(f"j{i}"))
        service.rate_job("j5", 4, "api")
        monkeypatch.setattr(service_module, "FOLLOW_BATCH", 2)  # as a log backlog past 5,000 lines
        with service._index_lock:
            service._index_to((service.jobs_journal.size(), service.ratings_journal.size()))
        assert service.rate_job("j5", None, "api")["rating"] is None
        assert [line["rating"] for line in journal_lines(settings.ratings_path)] == [4, None]
        service.review_job("j5", {"tags_add": ["alpha"]}, "api")
        with service._index_lock:
            service._index_to((service.jobs_journal.size(), service.ratings_journal.size()))
        service.review_job("j5", {"tags_add": ["beta"]}, "api")
        assert journal_lines(settings.ratings_path)[-1]["set"]["tags"] == ["alpha", "beta"]
    finally:
        service.close()


def test_a_write_answered_503_because_its_caller_stopped_waiting_is_not_written(settings, monkeypatch):
    """The caller gives up (503) while the committer waits for a journal another process
    holds: the committer then skips it. Before, it was appended anyway and left out of the
    backlog, so the next decision was made against the index without it."""
    service = Service(settings).start()
    try:
        service.record_job(job_in("x"))
        service.rate_job("x", 2, "api")
        service.get_job("x")
        monkeypatch.setattr(service_module, "WAIT_SECONDS", 0.5)
        held, release = threading.Event(), threading.Event()

        def hold():
            with Journal(settings.ratings_path).locked():
                held.set()
                release.wait()

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait()
        with pytest.raises(Unavailable):
            service.rate_job("x", 3, "api")
        release.set()
        holder.join()
        time.sleep(0.05)
        monkeypatch.setattr(service_module, "WAIT_SECONDS", 60)
        assert [line["rating"] for line in journal_lines(settings.ratings_path)] == [2]
        assert service.rate_job("x", 3, "api")["rating"] == 3
        assert service.get_job("x")["rating"] == 3
        assert [line["rating"] for line in journal_lines(settings.ratings_path)] == [2, 3]
    finally:
        service.close()


def test_a_failed_indexed_commit_still_takes_in_another_writers_lines(settings, monkeypatch):
    service = Service(settings).start()
    try:
        service.record_job(job_in("a"))
        service.get_job("a")
        with Journal(settings.log_path).locked() as journal:  # another process's job
            journal.append(records.dumps(records.stored_job(job_in("theirs"))))

        def full_disk(*args, **kwargs):
            raise OperationalError("INSERT", None, Exception("database or disk is full"))

        monkeypatch.setattr(sync, "insert_jobs", full_disk)
        with pytest.raises(Unavailable):
            service.amend_job("a", {"run_id": "r"})
        with pytest.raises(Conflict):
            service.record_job(job_in("theirs", packs=["other"]))
    finally:
        monkeypatch.undo()
        service.close()


def test_a_log_cut_while_running_forgets_what_the_cut_lines_said(settings):
    service = Service(settings).start()
    try:
        for i in range(3):
            service.record_job(job_in(f"keep{i}"))
        service.record_job(job_in("x"))
        service.get_job("x")
        lines = settings.log_path.read_bytes().splitlines(keepends=True)
        settings.log_path.write_bytes(b"".join(lines[:2]))
        created, _ = service.record_job(job_in("x"))
        assert created
        assert service.get_job("x")["record"]["job_id"] == "x"
    finally:
        service.close()


def test_a_log_replaced_while_running_by_one_with_the_same_first_line_is_indexed_again(settings):
    """Another history put in the log's place (the same first line, its lines on the same
    offsets, and longer): the follower finds the lines changed under the index and starts over;
    before, the listing showed the new file's lines under the old jobs' ids."""
    service = Service(settings).start()
    try:
        for name in ("first", "mine1", "mine2"):
            service.record_job(job_in(name))
        assert service.get_job("mine2")["record"]["job_id"] == "mine2"
        lines = settings.log_path.read_bytes().splitlines(keepends=True)
        others = [line.replace(b"mine", b"alt_") for line in lines[1:]]
        more = records.dumps(records.stored_job(job_in("more")))
        settings.log_path.write_bytes(lines[0] + b"".join(others) + more)
        assert service.get_job("more")["record"]["job_id"] == "more"  # the follower took the new file in
        assert service.get_job("alt_2")["record"]["job_id"] == "alt_2"
        with pytest.raises(NotFound):
            service.get_job("mine2")
    finally:
        service.close()


def test_another_writers_lines_the_index_already_has_are_not_read_again(settings, monkeypatch):
    """Before a decision, the lines another process appended join the backlog; the ones the
    index already holds (before the snapshot's checkpoint) are not parsed again under the
    journals' locks (an import of a million lines would hold every writer for ~20 s)."""
    service = Service(settings).start()
    try:
        service.record_job(job_in("mine"))
        with Journal(settings.log_path).locked() as journal:  # another process's 200 jobs
            journal.append(b"".join(records.dumps(records.stored_job(job_in(f"theirs{i}"))) for i in range(200)))
        assert service.get_job("theirs199")["record"]["job_id"] == "theirs199"  # indexed by the follower
        taken = []
        original = Service._take_in
        monkeypatch.setattr(
            Service,
            "_take_in",
            lambda self, conn, line, offset: taken.append(offset) or original(self, conn, line, offset),
        )
        service.record_job(job_in("mine2"))
        assert taken == []
        assert service.get_job("mine2")["record"]["job_id"] == "mine2"
    finally:
        service.close()


def test_a_job_and_its_rating_in_one_commit_are_both_written(settings):
    """Writes of many clients share a commit: a rating of a job posted in the same commit finds
    the job (it was NotFound: the job joined the backlog only after the whole commit)."""
    service = Service(settings).start()
    try:
        ops = [service_module.job_op(job_in("new")), service_module.rating_op("new", 4, "api")]
        service.submit_many(ops, together=True)
        assert [op.error for op in ops] == [None, None]
        assert service.get_job("new")["rating"] == 4
    finally:
        service.close()


def test_a_read_waits_for_what_was_acknowledged_before_it_not_for_every_write_since(settings, monkeypatch):
    """Under sustained writes the follower never reaches the end of the journals: a read is let
    go once the index holds what was written before the read began (it waited the whole 5 s,
    and then read an index without its job)."""
    monkeypatch.setattr(service_module, "FOLLOW_BATCH", 2)
    slow = Service._index_to

    def slow_index_to(self, ends, thorough=True):
        time.sleep(0.02)
        return slow(self, ends, thorough)

    monkeypatch.setattr(Service, "_index_to", slow_index_to)
    service = Service(settings).start()
    stop = threading.Event()

    def write():
        n = 0
        while not stop.is_set():
            service.record_job(job_in(f"w{n}"))
            n += 1

    try:
        for i in range(10):
            service.record_job(job_in(f"first{i}"))
        writer = threading.Thread(target=write)
        writer.start()
        started = time.monotonic()
        assert service.get_job("first9")["record"]["job_id"] == "first9"
        assert time.monotonic() - started < 3
    finally:
        stop.set()
        writer.join()
        service.close()


def test_the_lines_handed_to_the_follower_are_bounded_in_bytes_not_in_lines(settings, monkeypatch):
    """While the follower lags, the committer keeps the lines it appended for it in memory up
    to a bound. It counted lines (20,000): at up to 1 MB a record that held gigabytes. Past the
    bound in bytes the follower reads the lines back from the journal, and indexes them all."""
    monkeypatch.setattr(service_module, "HANDED_MAX_BYTES", 64 * 1024)
    service = Service(settings).start()
    try:
        stop_follower(service)
        pad = "x" * 20_000
        for i in range(12):  # ~240 KB of lines, 12 lines: far under a bound of 20,000 lines
            service.record_job(job_in(f"big{i}", extra={"pad": pad}))
        handed = service._handed[service_module.LOG]
        assert 0 < sum(length for _, _, length in handed) <= 64 * 1024
        assert len(handed) < 12
        with service._index_lock:
            service._index_to((service.jobs_journal.size(), service.ratings_journal.size()))
        assert not handed
        assert [service.get_job(f"big{i}")["record"]["extra"]["pad"] == pad for i in range(12)] == [True] * 12
    finally:
        service.close()


def test_a_rating_is_decided_in_two_reads_of_the_index(settings):
    """Each read is a round trip on a database server: a rating PUT read the two checkpoints
    apart and every rating id of the job (only an importer's own rating ids can be known
    already; the service's are new uuids). Now: the checkpoints together, and the job's row."""
    from sqlalchemy import Engine, event

    service = Service(settings).start()
    try:
        service.record_job(job_in("r"))
        service.rate_job("r", 3, "api")
        stop_follower(service)
        statements: list[str] = []

        def seen(conn, cursor, statement, parameters, context, executemany):
            statements.append(statement)

        event.listen(Engine, "before_cursor_execute", seen)
        try:
            assert service.rate_job("r", 4, "api")["rating"] == 4
        finally:
            event.remove(Engine, "before_cursor_execute", seen)
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(reads) == 2, reads
        assert not [s for s in reads if "rating_events" in s]
        # an importer's rating id seen before still writes nothing
        written = journal_lines(settings.ratings_path)
        again = service_module.rating_op("r", 5, "import", 1.0, rating_id=written[-1]["rating_id"])
        assert service.submit_many([again])[0].result[0] is False
    finally:
        service.close()


def test_an_amendment_waits_for_the_follower_instead_of_indexing_its_backlog_under_the_locks(settings, monkeypatch):
    """An amendment is decided against the index itself, so its commit indexes whatever the
    follower has not yet, holding both journals' locks: behind a large import that was every
    write of the service stopped for seconds (~1.9 s at 60,000 lines). It now waits for the
    follower first (as a read does), and its commit finds nothing left to index."""
    gate = threading.Event()
    index_backlog = Service._index_backlog

    def gated(self):
        gate.wait()
        index_backlog(self)

    monkeypatch.setattr(Service, "_index_backlog", gated)
    indexed_in_commit = []
    catch_up_locked = sync.Indexer.catch_up_locked

    def counted(self, conn, with_ratings=True):
        log_cp, ratings_cp, report = catch_up_locked(self, conn, with_ratings)
        indexed_in_commit.append(report.jobs)
        return log_cp, ratings_cp, report

    monkeypatch.setattr(sync.Indexer, "catch_up_locked", counted)
    service = Service(settings).start()
    try:
        service.submit_many([service_module.job_op(job_in(f"j{i}")) for i in range(300)])
        amended = []
        amending = threading.Thread(target=lambda: amended.append(service.amend_job("j0", {"run_id": "r"})))
        amending.start()
        time.sleep(0.3)  # the amendment is under way while the follower is held
        gate.set()
        amending.join()
        assert amended[0][0] == ["run_id"]
        assert indexed_in_commit == [0]
        assert service.get_job("j0")["record"]["run_id"] == "r"
    finally:
        gate.set()
        service.close()


def test_an_index_database_gone_away_is_one_log_line_not_a_traceback(settings, caplog):
    """Every PostgreSQL restart put a multi-exception traceback at ERROR in the serve log."""
    service = Service(settings).start()
    try:
        gone = OperationalError("SELECT 1", {}, Exception("terminating connection due to administrator command\nmore"))
        with caplog.at_level("ERROR", logger="learning_svc.service"):
            service._index_failed(gone, [])
        [record] = [r for r in caplog.records if "could not be updated" in r.getMessage()]
        assert record.exc_info is None
        assert "terminating connection due to administrator command" in record.getMessage()
        assert "more" not in record.getMessage()
    finally:
        service.close()


def test_jobs_committed_one_after_another_are_indexed_together(settings, monkeypatch):
    """Each job commit (~4 jobs at 8 clients) woke the follower at once: one index transaction a
    commit, writing the same index pages again each time. They are gathered for
    JOB_GATHER_SECONDS (a read that waits still wakes the follower at once)."""
    monkeypatch.setattr(service_module, "JOB_GATHER_SECONDS", 2.0)
    service = Service(settings).start()
    try:
        turns = []
        real = service._index_to
        monkeypatch.setattr(service, "_index_to", lambda *a, **k: turns.append(a[0]) or real(*a, **k))
        for i in range(20):
            service.record_job(job_in(f"g{i}"))
        time.sleep(2.5)
        assert 1 <= len(turns) <= 3, turns
        assert service.get_summary("g19")["job_id"] == "g19"
        service.record_job(job_in("read-at-once"))
        began = time.monotonic()
        assert service.get_job("read-at-once")["summary"]["job_id"] == "read-at-once"
        assert time.monotonic() - began < 1.0  # not after the gather: the read woke the follower
    finally:
        service.close()


def test_a_job_handed_while_ratings_are_gathered_is_not_held_for_the_ratings_gather(settings, monkeypatch):
    """A review: the gather's length was chosen when it began, so a job committed while the
    follower gathered a rating waited out the ratings' FOLLOW_GATHER_SECONDS too."""
    monkeypatch.setattr(service_module, "FOLLOW_GATHER_SECONDS", 30.0)
    monkeypatch.setattr(service_module, "JOB_GATHER_SECONDS", 0.05)
    service = Service(settings).start()
    try:
        service.record_job(job_in("first"))
        service.get_job("first")  # indexed (the read woke the follower)
        service.rate_job("first", 4, "api")  # the follower starts gathering ratings for 30 s
        time.sleep(0.3)
        service.record_job(job_in("second"))
        end = service.jobs_journal.size()
        deadline = time.monotonic() + 10
        while service._synced[0] < end:  # no read: nothing else wakes the follower
            assert time.monotonic() < deadline, "the job waited for the ratings' gather"
            time.sleep(0.02)
    finally:
        service.close()


def test_close_does_not_wait_long_for_a_committer_stuck_on_the_database(settings, monkeypatch):
    """A new-user run: with PostgreSQL suspended (it took connections and never answered) a
    Ctrl-C took 100 s and more: close() gave the committer 30 s and the follower 60. Each gets
    STOP_SECONDS; what they did not finish is in the journal, or was never answered."""
    monkeypatch.setattr(service_module, "STOP_SECONDS", 0.5)
    service = Service(settings).start()
    stuck, release = threading.Event(), threading.Event()

    def hung_commit(ops):
        stuck.set()
        release.wait(120)  # a database that does not answer

    monkeypatch.setattr(service, "_commit", hung_commit)
    writer = threading.Thread(target=lambda: service.submit_many([service_module.job_op(job_in("waits"))]), daemon=True)
    writer.start()
    assert stuck.wait(10)
    began = time.monotonic()
    try:
        service.close()
        assert time.monotonic() - began < 5
    finally:
        release.set()


def test_health_counts_the_jsonl_s_lines_not_the_index_s(settings):
    """A new-user run: while the index was behind (PostgreSQL away), `jsonl.jobs_lines` stayed
    at the index's count as the log grew: a monitor comparing it with `index.jobs` saw nothing."""
    service = Service(settings).start()
    try:
        service.record_job(job_in("indexed"))
        service.get_job("indexed")
        stop_follower(service)
        for i in range(3):
            service.record_job(job_in(f"behind{i}"))
        service.rate_job("behind0", 4, "api")
        health = service.health()
        assert health["jsonl"]["jobs_lines"] == len(journal_lines(settings.log_path)) == 4
        assert health["jsonl"]["rating_lines"] == len(journal_lines(settings.ratings_path)) == 1
        assert health["index"]["jobs"] == 1 and health["index"]["behind"]
    finally:
        service.close()


def _hold_read_connection_returns(service: Service, once):
    """A read connection of the service given back once `once()` is true waits until released:
    a database that stopped answering after the committer's last query (PostgreSQL suspended:
    the connection's rollback never returns)."""
    from sqlalchemy import event

    returning, release = threading.Event(), threading.Event()

    def reset(*_):
        if once():
            returning.set()
            release.wait(30)

    event.listen(service.read_engine.pool, "reset", reset)
    return returning, release


@pytest.mark.parametrize("together", [False, True], ids=["one", "batch"])
def test_a_write_is_answered_once_it_is_durable_not_when_the_database_lets_go(settings, together):
    """A studio run: with PostgreSQL suspended mid-commit, jobs already appended and fsynced
    were answered only when the database came back (the committer answered after its read
    connection was given back), so the clients timed out and reported them "not recorded"."""
    service = Service(settings).start()
    try:
        service.record_job(job_in("warm"))
        names = ["durable", "durable2"] if together else ["durable"]  # one commit either way
        ops = [service_module.job_op(job_in(name)) for name in names]
        # Not the commit of "warm", which may still be giving its connection back.
        returning, release = _hold_read_connection_returns(service, lambda: ops[0].result is not None)
        answered = threading.Event()
        writer = threading.Thread(target=lambda: (service.submit_many(ops, together=together), answered.set()))
        writer.start()
        try:
            assert returning.wait(10)
            assert answered.wait(5), "the write was answered only after the database let go"
            assert [op.result[0] for op in ops] == [True] * len(names)
            assert [line["job_id"] for line in journal_lines(settings.log_path)] == ["warm", *names]
        finally:
            release.set()
            writer.join(10)
        assert service.get_job(names[-1])["record"]["job_id"] == names[-1]
    finally:
        service.close()


def test_the_same_job_twice_in_one_commit_is_not_answered_recorded_when_its_append_failed(settings, monkeypatch):
    """Two clients send the same job into one group commit and the append fails (a full disk):
    the second copy was answered 200 "already recorded" from the first copy's plan, for a job
    that is in no file."""
    service = Service(settings).start()
    try:

        def full_disk(data):
            raise service_module.JournalWriteError("No space left on device")

        monkeypatch.setattr(service.jobs_journal, "append", full_disk)
        ops = [service_module.job_op(job_in("twice")), service_module.job_op(job_in("twice"))]
        service.submit_many(ops, together=True)
        assert [type(op.error) for op in ops] == [Unavailable, Unavailable]
        assert [op.result for op in ops] == [None, None]
    finally:
        service.close()


def test_the_same_rating_twice_in_one_commit_is_not_answered_unchanged_when_its_append_failed(settings, monkeypatch):
    """As for jobs: the second of two equal ratings in one commit was answered "unchanged" from
    the first one's plan, although the append failed and the job's rating never changed."""
    service = Service(settings).start()
    try:
        service.record_job(job_in("rated"))

        def full_disk(data):
            raise service_module.JournalWriteError("No space left on device")

        monkeypatch.setattr(service.ratings_journal, "append", full_disk)
        ops = [service_module.rating_op("rated", 4, "api"), service_module.rating_op("rated", 4, "api")]
        service.submit_many(ops, together=True)
        assert [type(op.error) for op in ops] == [Unavailable, Unavailable]
        monkeypatch.undo()
        assert service.get_job("rated")["rating"] is None
    finally:
        service.close()
