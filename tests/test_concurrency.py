"""Several writers on the same files: processes appending through the journal lock, and two servers."""

from __future__ import annotations

import hashlib
import subprocess
import textwrap
import threading
from collections import defaultdict

import orjson
import pytest
import requests

from procs import PYTHON, ServerProcess, all_job_ids, cli_env, job, journal_lines, run_cli

pytestmark = pytest.mark.slow  # subprocesses and fault injection

WRITERS, RECORDS = 8, 1000

# Each writer waits for the go file, then appends RECORDS lines of 1 to 64 KiB, one locked
# append (write + fsync) each: mostly 1-8 KiB, one in ten 16-64 KiB (far above PIPE_BUF, so
# that only the lock keeps them whole), while the total stays small enough to fsync quickly.
WRITER = textwrap.dedent("""
    import hashlib, math, os, random, sys, time
    import orjson
    from learning_svc.journal import Journal

    path, writer, count, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    rng = random.Random(writer)
    journal = Journal(path)
    while not os.path.exists(go):
        time.sleep(0.001)
    for seq in range(count):
        low, high = (16 * 1024, 64 * 1024 - 160) if rng.random() < 0.1 else (1024, 8 * 1024)
        size = int(math.exp(rng.uniform(math.log(low), math.log(high))))
        stamp = f"w{writer}s{seq}-"
        pad = (stamp * (size // len(stamp) + 1))[:size]
        line = {"writer": writer, "seq": seq, "pad": pad, "sha": hashlib.sha256(pad.encode()).hexdigest()}
        with journal.locked():
            journal.append(orjson.dumps(line) + b"\\n")
""")


def test_eight_processes_append_through_the_lock_without_interleaving(tmp_path):
    path, go = tmp_path / "learning_log_v2.jsonl", tmp_path / "go"
    writers = [
        subprocess.Popen([PYTHON, "-c", WRITER, str(path), str(w), str(RECORDS), str(go)], env=cli_env())
        for w in range(WRITERS)
    ]
    go.touch()  # all start together, for the most contention
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    data = path.read_bytes()
    assert data.endswith(b"\n")
    raw_lines = data.split(b"\n")[:-1]
    assert len(raw_lines) == WRITERS * RECORDS
    seqs = defaultdict(list)
    sizes = [len(raw) + 1 for raw in raw_lines]
    assert 1024 <= min(sizes) < 2048 and 60 * 1024 < max(sizes) <= 64 * 1024
    for number, raw in enumerate(raw_lines, 1):
        line = orjson.loads(raw)  # an interleaved line would not parse, or fail the checks below
        assert set(line) == {"writer", "seq", "pad", "sha"}, f"line {number}"
        assert hashlib.sha256(line["pad"].encode()).hexdigest() == line["sha"], f"line {number} is mixed"
        assert line["pad"].startswith(f"w{line['writer']}s{line['seq']}-"), f"line {number} is mixed"
        seqs[line["writer"]].append(line["seq"])
    assert dict(seqs) == {w: list(range(RECORDS)) for w in range(WRITERS)}  # all there, each in order


def _post_all(server: ServerProcess, records: list[dict], results: dict) -> None:
    session = requests.Session()
    for record in records:
        results[record["job_id"]] = server.post_job(session, record).status_code
    session.close()


@pytest.mark.both_backends
def test_two_servers_on_one_data_directory(settings):
    data_dir = settings.data_dir
    env = cli_env(**({"LEARNING_SVC_DATABASE_URL": settings.database_url} if settings.database_url else {}))
    first = ServerProcess(data_dir, env=env).start()
    second = ServerProcess(data_dir, env=env).start()
    try:
        own = {server.port: [job(f"s{server.port}-{i:03d}") for i in range(40)] for server in (first, second)}
        # both servers also get the same 30 job ids: identical for some, different content for others
        shared_same = [job(f"same-{i:02d}") for i in range(15)]
        shared_diff = [(job(f"diff-{i:02d}", packs=["A"]), job(f"diff-{i:02d}", packs=["B"])) for i in range(15)]
        plans = {
            first: own[first.port][:20] + shared_same + [a for a, _ in shared_diff] + own[first.port][20:],
            second: own[second.port][:20] + shared_same + [b for _, b in shared_diff] + own[second.port][20:],
        }
        results = {first: {}, second: {}}
        results_same = {first: {}, second: {}}
        threads = []
        for server, plan in plans.items():
            # two client threads per server: the unique jobs and the shared ones race separately
            threads.append(threading.Thread(target=_post_all, args=(server, plan, results[server])))
            threads.append(threading.Thread(target=_post_all, args=(server, shared_same, results_same[server])))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

        for server in (first, second):
            assert {results[server][r["job_id"]] for r in own[server.port]} == {201}
        for record in shared_same:  # exactly one server created it; every other post was a retry
            codes = sorted(
                [results[s][record["job_id"]] for s in (first, second)]
                + [results_same[s][record["job_id"]] for s in (first, second)]
            )
            assert codes == [200, 200, 200, 201], (record["job_id"], codes)
        for a, _ in shared_diff:
            codes = sorted(results[s][a["job_id"]] for s in (first, second))
            assert codes == [201, 409], (a["job_id"], codes)

        lines = journal_lines(data_dir / "learning_log_v2.jsonl")
        logged = [line["job_id"] for line in lines]
        expected = (
            {r["job_id"] for rs in own.values() for r in rs}
            | {r["job_id"] for r in shared_same}
            | {a["job_id"] for a, _ in shared_diff}
        )
        assert sorted(logged) == sorted(expected)  # both sets, each job once
        assert sorted(all_job_ids(first.url)) == sorted(all_job_ids(second.url)) == sorted(expected)
        rated = requests.put(
            f"{second.url}/api/jobs/{own[first.port][0]['job_id']}/rating", json={"rating": 5}, timeout=10
        )
        assert rated.status_code == 200  # a job recorded by the first server, rated through the second
        assert requests.get(first.url + "/api/ratings", timeout=10).json() == {own[first.port][0]["job_id"]: 5}
    finally:
        first.kill()
        second.kill()
    verified = run_cli("verify", "--data-dir", str(data_dir), env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.both_backends
def test_a_second_service_decides_with_the_firsts_lines_before_they_are_indexed(settings, monkeypatch):
    """Two service processes on one data dir (serve --workers): each takes in the lines the
    other appended since its own last commit, so that with no index caught up yet (both
    followers held here) a retry is a retry, a conflict a conflict, and a rating already
    given is not written twice. Before, such a commit indexed everything first, under the lock."""
    from learning_svc import records
    from learning_svc.index import sync
    from learning_svc.service import Conflict, Service
    from learning_svc.verify import verify_index

    gate = threading.Event()
    insert_jobs, insert_ratings = sync.insert_jobs, sync.insert_ratings

    def held(real):
        def call(*args, **kwargs):
            assert gate.wait(30), "the test never opened the gate"
            return real(*args, **kwargs)

        return call

    def parsed(record: dict):
        return records.parse(records.JobIn, record)

    first, second = Service(settings).start(), Service(settings).start()
    monkeypatch.setattr(sync, "insert_jobs", held(insert_jobs))
    monkeypatch.setattr(sync, "insert_ratings", held(insert_ratings))
    outcomes: list = []

    def race() -> None:
        outcomes.append(first.record_job(parsed(job("shared")))[0])
        outcomes.append(second.record_job(parsed(job("shared")))[0])  # an identical retry
        try:
            second.record_job(parsed(job("shared", packs=["other"])))
        except Conflict:
            outcomes.append("conflict")
        outcomes.append(first.rate_job("shared", 4, "api")["rating"])
        outcomes.append(second.rate_job("shared", 4, "api")["rating"])  # already so: nothing written

    worker = threading.Thread(target=race, daemon=True)
    try:
        worker.start()
        worker.join(15)
        assert outcomes == [True, False, "conflict", 4, 4], "a commit waited for the index, or decided wrong"
        assert [line["job_id"] for line in journal_lines(settings.log_path)] == ["shared"]
        assert len(journal_lines(settings.ratings_path)) == 1
    finally:
        gate.set()
        worker.join(15)
        first.close()
        second.close()
    assert verify_index(settings) == []
