"""The index on PostgreSQL (issue 13), against a real server (tests/postgres.py): what is not
already covered by the modules that run on both backends (test_api, test_reviews, the query
oracle of test_queries): a rebuild, `verify`, a restart that catches up, and the commands
run as a user would, with LEARNING_SVC_DATABASE_URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from test_rebuild import _fill, _history, filled_history, history_after_restart, running

from learning_svc import records
from learning_svc.config import Settings
from learning_svc.index.plan import Filters, Page
from learning_svc.index.sync import ForeignIndex, rebuild
from learning_svc.journal import Journal
from learning_svc.osutil import data_folder_id
from learning_svc.service import Service
from learning_svc.verify import verify_index

pytestmark = pytest.mark.slow


@pytest.fixture
def backend() -> str:
    return "postgresql"


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LEARNING_SVC_DATABASE_URL": settings.database_url}
    return subprocess.run(
        [sys.executable, "-m", "learning_svc.cli", *args, "--data-dir", str(settings.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_the_live_index_verifies_and_a_rebuild_in_place_lists_the_same(settings):
    assert settings.database_url.startswith("postgresql+psycopg://")
    jobs, ratings = filled_history(settings, 120)  # live ingest, ratings, reviews, amendments
    assert verify_index(settings) == []
    report = rebuild(settings.db_url, Journal(settings.log_path), Journal(settings.ratings_path), None)
    assert report.jobs >= len(jobs)
    assert verify_index(settings) == []
    assert history_after_restart(settings) == (jobs, ratings)


def scratch_schemas(url: str) -> list[str]:
    with create_engine(url).connect() as conn:
        return list(conn.scalars(text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'learning_svc%'")))


def test_a_reindex_that_fails_leaves_the_old_index_listing_everything(settings):
    """The rebuild goes into a scratch schema and is swapped in only when complete: a damaged
    line met half-way stops it with one clear line, and the live index still lists every job
    (an in-place rebuild had wiped it first)."""
    jobs, ratings = filled_history(settings, 30)
    good = settings.log_path.read_bytes().splitlines(keepends=True)[-1]
    with settings.log_path.open("ab") as log:
        log.write(b"{this is not json\n" + good)  # a damaged line with a job after it
    result = cli(settings, "reindex")
    assert result.returncode == 1, result.stdout
    assert "reindex stopped, the old index is unchanged" in result.stderr and "not JSON" in result.stderr
    assert "Traceback" not in result.stderr
    with create_engine(settings.db_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == len(jobs)
    assert scratch_schemas(settings.db_url) == []


def test_a_reindex_swaps_the_new_tables_in_and_a_second_one_at_once_is_refused(settings):
    from learning_svc.index.sync import REBUILD_LOCK

    jobs, ratings = filled_history(settings, 30)
    with create_engine(settings.db_url).connect() as conn:
        before = conn.execute(text("SELECT value FROM index_meta WHERE key = 'generation'")).scalar()
        conn.execute(text(f"SELECT pg_advisory_lock({REBUILD_LOCK})"))  # as a running reindex holds it
        result = cli(settings, "reindex")
        assert result.returncode == 1 and "another reindex of this database is running" in result.stderr
        conn.execute(text(f"SELECT pg_advisory_unlock({REBUILD_LOCK})"))
    result = cli(settings, "reindex")
    assert result.returncode == 0, result.stderr
    with create_engine(settings.db_url).connect() as conn:
        after = conn.execute(text("SELECT value FROM index_meta WHERE key = 'generation'")).scalar()
        schemas = {
            row[0] for row in conn.execute(text("SELECT DISTINCT schemaname FROM pg_tables WHERE tablename = 'jobs'"))
        }
        indexes = set(conn.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename IN ('jobs', 'job_tags')")))
    assert after != before  # readers drop what they held of the old index (text_search.py)
    assert schemas == {"public"} and scratch_schemas(settings.db_url) == []
    assert {"ix_jobs_search_tsv", "ix_jobs_rating_hi", "ix_tags_listing"} <= indexes  # made again after the load
    assert verify_index(settings) == []
    assert history_after_restart(settings) == (jobs, ratings)


def test_a_reindex_swaps_in_while_a_reader_holds_some_tables_and_asks_for_more(settings):
    """A reader mid-request holds facet_values and then reads jobs, as a listing does. The swap
    took the tables one by one and deadlocked with it (and lost the rebuild); it now locks all
    of them with a timeout and tries again once the reader is done."""
    import contextlib
    import threading
    import time

    from sqlalchemy.exc import OperationalError

    jobs, ratings = filled_history(settings, 20)
    engine = create_engine(settings.db_url, isolation_level="REPEATABLE READ")
    outcome = {}
    with engine.connect() as reader:
        reader.execute(text("SELECT count(*) FROM facet_values")).scalar()
        worker = threading.Thread(target=lambda: outcome.setdefault("result", cli(settings, "reindex")))
        worker.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the swap waits for the reader's lock
            waiting = reader.execute(
                text("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'facet_values'::regclass")
            ).scalar()
            if waiting:
                break
            time.sleep(0.05)
        assert waiting, "the reindex never reached its swap"
        # It asks for another table; it may be the deadlock's victim (its request would be retried).
        with contextlib.suppress(OperationalError):
            reader.execute(text("SELECT count(*) FROM jobs")).scalar()
        reader.rollback()
    worker.join(timeout=120)
    engine.dispose()
    result = outcome["result"]
    assert result.returncode == 0, result.stderr
    assert scratch_schemas(settings.db_url) == []
    assert history_after_restart(settings) == (jobs, ratings)


def test_verify_reports_a_difference_and_reindex_repairs_it(settings):
    filled_history(settings, 10)
    with create_engine(settings.db_url).begin() as conn:
        conn.execute(
            text(
                "UPDATE jobs SET rating = 5, rating_hi = 5, rating_lo = 5 "
                "WHERE id = (SELECT min(id) FROM jobs WHERE rating IS NULL)"
            )
        )
        conn.execute(text("UPDATE jobs SET search_text = 'nothing' WHERE id = (SELECT max(id) FROM jobs)"))
    problems = verify_index(settings)
    assert problems and problems[0].startswith("jobs: 2 rows different in the index"), problems
    assert "search_text" in problems[0]
    result = cli(settings, "verify")
    assert result.returncode == 1 and "rows different" in result.stdout
    result = cli(settings, "reindex")
    assert result.returncode == 0 and "postgresql" in result.stdout, result.stderr
    result = cli(settings, "verify")
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stdout


def test_a_start_catches_up_with_lines_another_writer_appended(settings):
    """Start-up catch-up from the checkpoints: a line appended while the service was down
    (the offline client, another process) is indexed at the next start."""
    with running(settings) as server:
        _fill(server, 20)
        before, _ = _history(server)
    line = records.stored_job(records.parse(records.JobIn, {"job_id": "while-down", "completed_at": 1_864_000_000}))
    with settings.log_path.open("ab") as log:
        log.write(records.dumps(line))
    jobs, _ = history_after_restart(settings)
    assert [job["job_id"] for job in jobs] == ["while-down", *(job["job_id"] for job in before)]
    assert verify_index(settings) == []


def test_verify_agrees_on_a_database_whose_collation_is_not_code_point_order(postgres, tmp_path):
    """An en-US (ICU) database sorts 'a' < 'B' < '_x' unlike Python: verify compares in C order."""
    from learning_svc.config import Settings

    url = postgres.new_database("LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
    settings = Settings(data_dir=tmp_path / "learning", database_url=url)
    with running(settings) as server:
        for job_id in ("B-job", "a-job", "_x-job", "Z", "ä-job", "10", "9"):
            assert (
                server.post_job({"job_id": job_id, "completed_at": 1_764_000_000, "packs": [job_id]}).status_code == 201
            )
    with create_engine(url).connect() as conn:
        ordered = [row[0] for row in conn.execute(text("SELECT job_id FROM jobs ORDER BY job_id"))]
    assert ordered != sorted(ordered)  # the database's own order is not Python's
    assert verify_index(settings) == []


def test_a_read_sees_one_snapshot_while_the_writer_commits(postgres, tmp_path):
    """A reader's connection is one snapshot (REPEATABLE READ): a listing and its count or
    cursor in one request agree even when a commit lands between them. On READ COMMITTED,
    PostgreSQL's default, each statement would see the new job."""
    from learning_svc.config import Settings
    from learning_svc.service import Service

    settings = Settings(data_dir=tmp_path / "learning", database_url=postgres.new_database())
    service = Service(settings).start()
    try:
        first = records.parse(records.JobIn, {"job_id": "first", "completed_at": 1_764_000_000})
        assert service.record_job(first)[0]
        count = text("SELECT count(*) FROM jobs")
        with service.reader() as conn:
            assert conn.execute(count).scalar() == 1  # the snapshot is taken here
            later = records.parse(records.JobIn, {"job_id": "later", "completed_at": 1_764_000_001})
            assert service.record_job(later)[0]  # committed by the writer, on its own connection
            with service.reader() as other:
                assert other.execute(count).scalar() == 2  # a new read sees it
            assert conn.execute(count).scalar() == 1  # this one still sees its snapshot
            assert [row[0] for row in conn.execute(text("SELECT job_id FROM jobs"))] == ["first"]
        with service.reader() as conn:
            assert conn.execute(count).scalar() == 2
        with service.write_engine.connect() as conn:  # the writer stays on READ COMMITTED
            assert conn.execute(text("SHOW transaction_isolation")).scalar() == "read committed"
    finally:
        service.close()


@pytest.mark.parametrize("command", ["serve", "reindex", "verify"])
def test_a_wrong_database_url_is_one_line_on_stderr_and_exit_1(postgres, tmp_path, command):
    """A wrong password, a closed port, a database that does not exist: each is one line on
    stderr naming the URL (its password hidden) and PostgreSQL's reason, no traceback, exit 1."""
    from conftest import free_port
    from procs import cli_env, run_cli

    if not hasattr(postgres, "password_user"):  # once per session: a role that must give its password
        postgres.add_password_user("with_password", "right-password")
        postgres.password_user = "with_password"
    database = postgres.new_database().rsplit("/", 1)[1]
    with create_engine(postgres.url(), isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{database}" OWNER TO with_password'))  # its schema is the role's
    at = f"127.0.0.1:{postgres.port}"
    cases = {
        f"postgresql+psycopg://with_password:wrong-password@{at}/{database}": "password authentication failed",
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/{database}": "Connection refused",
        f"postgresql+psycopg://postgres@{at}/no_such_database": 'database "no_such_database" does not exist',
    }
    data_dir = str(tmp_path / "learning")
    Path(data_dir).mkdir()  # a reindex of a folder that is not there is refused before the URL is tried,
    (Path(data_dir) / "learning_log_v2.jsonl").write_bytes(b"")  # and of one that holds no journal
    extra = ["--port", str(free_port())] if command == "serve" else []
    for url, reason in cases.items():
        result = run_cli(
            command, "--data-dir", data_dir, *extra, env=cli_env(LEARNING_SVC_DATABASE_URL=url), timeout=30
        )
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1, (url, result.returncode, result.stderr)
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith("Error: cannot use the index database postgresql+psycopg://"), lines[0]
        assert reason in lines[0] and "wrong-password" not in result.stderr, lines[0]
    # The same role with its right password is let in: the refusal above was the password's.
    right = f"postgresql+psycopg://with_password:right-password@{at}/{database}"
    if command == "verify":
        result = run_cli("verify", "--data-dir", data_dir, env=cli_env(LEARNING_SVC_DATABASE_URL=right), timeout=60)
        assert result.returncode == 0 and result.stdout.startswith("ok"), result.stdout + result.stderr
    if command == "reindex":  # its last line named the database with its password
        result = run_cli("reindex", "--data-dir", data_dir, env=cli_env(LEARNING_SVC_DATABASE_URL=right), timeout=60)
        assert result.returncode == 0 and "right-password" not in result.stdout + result.stderr, result.stdout
        assert "into postgresql+psycopg://with_password:***@" in result.stdout, result.stdout
    # A driver that is not installed (psycopg2, MySQL's): it was a 34-line traceback.
    for url in (f"postgresql+psycopg2://postgres@{at}/{database}", "mysql://user@127.0.0.1/db"):
        result = run_cli(
            command, "--data-dir", data_dir, *extra, env=cli_env(LEARNING_SVC_DATABASE_URL=url), timeout=30
        )
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "is not usable" in lines[0] and "not installed" in lines[0], lines[0]


def test_a_copy_of_a_data_folder_is_another_folder_to_its_database(postgres, tmp_path):
    """An outside run: `cp -a` of a served folder carried its id file along, so a service of the
    copy on the same database was taken for the same folder. The two rebuilt the index from
    their own journals in turn; the copy answered 404 for its own acknowledged job and 500 for
    reading the other journal's offsets. A copy now has an id of its own: its database refuses
    it with one line until a `reindex` of the copy takes the index over."""
    import shutil

    from learning_svc.service import LostIndex

    url = postgres.new_database()
    original = Settings(data_dir=tmp_path / "original", database_url=url)
    service = Service(original).start()
    try:
        created, _ = service.record_job(records.parse(records.JobIn, {"job_id": "a", "completed_at": 1.7e9}))
        assert created
        shutil.copytree(original.data_dir, tmp_path / "copy", symlinks=True)  # cp -a while it serves
        copy = Settings(data_dir=tmp_path / "copy", database_url=url)
        with pytest.raises(
            ForeignIndex, match=r"indexes another data folder than .*\(a copy of a folder is another folder"
        ):
            Service(copy).start()
        created, _ = service.record_job(records.parse(records.JobIn, {"job_id": "b", "completed_at": 1.7e9 + 1}))
        assert created and service.count(Filters())["jobs"] == 2
        assert verify_index(original) == []
        moved = tmp_path / "moved"  # a folder moved (served no more where it was) keeps its id and index
        service.close()
        shutil.move(original.data_dir, moved)
        service = Service(Settings(data_dir=moved, database_url=url)).start()
        assert service.count(Filters())["jobs"] == 2
        rebuild(url, Journal(copy.log_path), Journal(copy.ratings_path), None, folder_id=data_folder_id(copy.data_dir))
        with pytest.raises(LostIndex, match="became the index of another data folder"):
            service.count(Filters())  # the copy's reindex took the index over: the original knows it
    finally:
        service.close()


def test_two_data_folders_on_one_database_do_not_take_each_others_index(postgres, tmp_path):
    """A second folder's service (or an import that forgot --data-dir) took the first folder's
    index for a replaced journal and rebuilt it from its own files: the first service then
    counted the other folder's jobs and its listing answered 500. Now the index is claimed by
    its folder; another is refused with one line, and `reindex` is how a folder takes it over."""
    from procs import cli_env, run_cli

    url = postgres.new_database()
    first, second = Settings(data_dir=tmp_path / "first", database_url=url), tmp_path / "second"
    service = Service(first).start()
    try:
        for i in range(5):
            service.record_job(records.parse(records.JobIn, {"job_id": f"first-{i}", "completed_at": 1.7e9 + i}))
        env = cli_env(LEARNING_SVC_DATABASE_URL=url)
        (tmp_path / "jobs.jsonl").write_text('{"job_id": "other", "completed_at": 1700000000}\n')
        for command in (
            ["import", "--data-dir", str(second), str(tmp_path / "jobs.jsonl")],
            ["verify", "--data-dir", str(second)],
        ):
            result = run_cli(*command, env=env, timeout=60)
            lines = [line for line in result.stderr.splitlines() if line.strip() and "import:" not in line]
            assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
            assert "indexes another data folder than" in lines[0] and "learning-svc reindex" in lines[0], lines[0]
            assert "id file learning_svc_folder.id was deleted or replaced" in lines[0]  # the other cause
        assert service.count(Filters())["jobs"] == 5  # untouched
        assert service.list_jobs(Page(Filters(), "completed_at", 10))[0][0]["job_id"] == "first-0"
    finally:
        service.close()
    assert verify_index(first) == []
    # The second folder has no history yet: its reindex would have wiped the first's index (so
    # would a journal of blank lines, which a size check let through).
    second.mkdir(exist_ok=True)
    for blank in (None, b"\n", b"\n\n"):
        if blank is not None:
            (second / "learning_log_v2.jsonl").write_bytes(blank)
        result = run_cli("reindex", "--data-dir", str(second), env=env, timeout=60)
        assert result.returncode == 1 and "reindex stopped, the old index is unchanged" in result.stderr, result.stderr
        assert "has no history to index" in result.stderr and "Traceback" not in result.stderr
    with create_engine(url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 5
    # With a history, a reindex of the second folder makes the database its index; the first is then refused.
    (second / "learning_log_v2.jsonl").write_bytes(first.log_path.read_bytes().splitlines(keepends=True)[0])
    result = run_cli("reindex", "--data-dir", str(second), env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    with pytest.raises(ForeignIndex):
        Service(first).start()


def test_a_service_whose_database_another_folder_took_over_stops_using_it(postgres, tmp_path):
    """`reindex --data-dir OTHER` (the README's restore into a new folder) while this folder's
    service ran: the service then listed the other folder's rows read at its own journal's
    offsets (500s), counted its jobs, and indexed its own new lines into the other's index.
    Now every read and write is a 503 saying what happened, and nothing is written."""
    from conftest import LiveServer

    url = postgres.new_database()
    first = Settings(data_dir=tmp_path / "first", database_url=url)
    second = Settings(data_dir=tmp_path / "second", database_url=url)
    second.data_dir.mkdir()
    other = [{"job_id": f"other-{i}", "completed_at": 1_764_000_000 + i} for i in range(3)]
    second.log_path.write_bytes(
        b"".join(records.dumps(records.stored_job(records.parse(records.JobIn, r))) for r in other)
    )
    server = LiveServer(first)
    try:
        for i in range(4):
            assert server.post_job({"job_id": f"first-{i}", "completed_at": 1_764_000_100 + i}).status_code == 201
        assert server.http.get(server.url + "/api/count", timeout=10).json()["jobs"] == 4
        size = first.log_path.stat().st_size
        from learning_svc.osutil import data_folder_id

        rebuild(
            url, Journal(second.log_path), Journal(second.ratings_path), None, folder_id=data_folder_id(second.data_dir)
        )
        for path in ("/api/jobs", "/api/count", "/api/health", "/api/jobs/first-0"):
            response = server.http.get(server.url + path, timeout=10)
            assert response.status_code == 503, (path, response.status_code, response.text)
            message = response.json()["error"]["message"]
            assert "became the index of another data folder" in message and "learning-svc reindex" in message
        response = server.post_job({"job_id": "first-9", "completed_at": 1_764_000_200})
        assert response.status_code == 503 and "another data folder" in response.json()["error"]["message"]
        assert first.log_path.stat().st_size == size
        assert verify_index(second) == []  # nothing of the first folder's went into it
        # The first folder takes its database back (the message's own advice): the service serves
        # again without a restart (it stayed 503 until one).
        rebuild(
            url, Journal(first.log_path), Journal(first.ratings_path), None, folder_id=data_folder_id(first.data_dir)
        )
        assert server.http.get(server.url + "/api/count", timeout=10).json()["jobs"] == 4
        assert server.post_job({"job_id": "first-9", "completed_at": 1_764_000_200}).status_code == 201
        assert server.http.get(server.url + "/api/jobs/first-9", timeout=10).status_code == 200
    finally:
        server.stop()
    assert verify_index(first) == []


@pytest.mark.parametrize("scheme", ["postgres://", "postgresql://"])
def test_a_url_without_a_driver_uses_psycopg(postgres, tmp_path, scheme):
    """`postgres://` and `postgresql://` are what libpq tools and hosting providers write; they
    failed with "Can't load plugin: sqlalchemy.dialects:postgres" (or a missing psycopg2)."""
    from procs import cli_env, run_cli

    url = postgres.new_database().replace("postgresql+psycopg://", scheme, 1)
    assert url.startswith(scheme)
    (tmp_path / "learning").mkdir()  # a data folder (verify refuses one that is not)
    (tmp_path / "learning" / "learning_log_v2.jsonl").write_bytes(b"")
    result = run_cli("verify", "--data-dir", str(tmp_path / "learning"), env=cli_env(LEARNING_SVC_DATABASE_URL=url))
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stdout + result.stderr


def test_a_postgresql_restart_under_load_loses_no_acknowledged_job(postgres_of_its_own, tmp_path):
    """`learning-svc serve` over a PostgreSQL index, 8 clients posting jobs and one reading,
    and PostgreSQL stopped for a second and started again mid-run: no answer but 503 (in the
    error shape) among the 5xx, every job answered 201 is in the JSONL, and once PostgreSQL is
    back the service catches up by itself: the API lists every job of the JSONL, health is ok."""
    import threading
    import time

    import requests

    from learning_svc.config import Settings

    from procs import ServerProcess, all_job_ids, cli_env, job, journal_lines

    url = postgres_of_its_own.new_database()
    settings = Settings(data_dir=tmp_path / "learning", database_url=url)
    server = ServerProcess(settings.data_dir, env=cli_env(LEARNING_SVC_DATABASE_URL=url)).start()
    stop, restarted_at = threading.Event(), []
    answers: list[tuple[float, str, int, dict]] = []  # (time, what, status, body)
    failures: list[str] = []

    def note(what: str, response: requests.Response) -> None:
        body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
        answers.append((time.monotonic(), what, response.status_code, body))

    def poster(n: int) -> None:
        with requests.Session() as session:
            for i in range(100_000):
                if stop.is_set():
                    return
                record = job(f"c{n}-{i}")
                for _attempt in range(100):  # a pipeline tries a 503 again
                    try:
                        response = server.post_job(session, record)
                    except requests.RequestException as error:
                        failures.append(f"{record['job_id']}: {error!r}")
                        return
                    note(record["job_id"], response)
                    if response.status_code != 503:
                        break
                    time.sleep(0.1)

    def reader() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                for path in ("/api/health", "/api/jobs?limit=20", "/api/count"):
                    try:
                        note(path, session.get(server.url + path, timeout=10))
                    except requests.RequestException as error:
                        failures.append(f"{path}: {error!r}")
                        return
                time.sleep(0.05)

    threads = [threading.Thread(target=poster, args=(n,)) for n in range(8)] + [threading.Thread(target=reader)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(2)
        restarted_at.append(time.monotonic())
        postgres_of_its_own.restart(down_seconds=1.0)
        restarted_at.append(time.monotonic())
        time.sleep(4)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert not failures, failures[:5]

        server_errors = [(what, status, body) for _, what, status, body in answers if status >= 500]
        assert all(status == 503 for _, status, _ in server_errors), [
            (what, status, body.get("error", {}).get("code")) for what, status, body in server_errors
        ]
        for _, _, body in server_errors:
            assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}, body
        posts = [(at, what, status) for at, what, status, _ in answers if not what.startswith("/")]
        assert {status for _, _, status in posts} <= {201, 503}, {status for _, _, status in posts}
        acknowledged = {what for _, what, status in posts if status == 201}
        assert any(at > restarted_at[1] and status == 201 for at, _, status in posts), "no write after the restart"

        in_journal = [line["job_id"] for line in journal_lines(settings.log_path)]
        assert len(in_journal) == len(set(in_journal))
        assert acknowledged <= set(in_journal), sorted(acknowledged - set(in_journal))[:5]

        deadline = time.monotonic() + 90  # the index is tried again after 2 s, 4 s, ... while failing
        while True:
            health = requests.get(server.url + "/api/health", timeout=10)
            body = health.json() if health.status_code == 200 else {}
            if body.get("status") == "ok" and not body["index"]["behind"]:
                break
            assert time.monotonic() < deadline, f"the index did not catch up: {health.status_code} {health.text}"
            time.sleep(0.2)
        assert body["index"]["problem"] is None and body["index"]["lag_bytes"] == 0, body
        assert body["index"]["jobs"] == len(in_journal), body
        assert sorted(all_job_ids(server.url)) == sorted(in_journal)
        print(
            f"{len(acknowledged)} jobs acknowledged, {len(server_errors)} answers 503 "
            f"({sum(1 for what, _, _ in server_errors if what.startswith('/'))} of them reads)"
        )
    finally:
        stop.set()
        server.kill()
    assert verify_index(settings) == []


def test_a_database_host_that_takes_the_connection_and_never_answers_is_one_line_after_a_timeout(tmp_path):
    """A new-user run: a host that accepts TCP and never answers (a firewall, a wrong address)
    left `serve` silent for as long as one waited (psycopg sets no connect timeout). It is one
    line after PG_CONNECT_ARGS' connect_timeout, exit 1."""
    import socket
    import threading

    from learning_svc.index import db

    from conftest import free_port
    from procs import cli_env, run_cli

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held = []
    threading.Thread(target=lambda: held.extend(silent.accept() for _ in range(4)), daemon=True).start()
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/learning"
        began = time.monotonic()
        result = run_cli(
            "serve", "--data-dir", str(tmp_path / "learning"), "--port", str(free_port()),
            env=cli_env(LEARNING_SVC_DATABASE_URL=url), timeout=db.PG_CONNECT_ARGS["connect_timeout"] * 4,
        )  # fmt: skip
        took = time.monotonic() - began
    finally:
        silent.close()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: cannot use the index database postgresql+psycopg://"), lines[0]
    assert "timeout" in lines[0] and took >= db.PG_CONNECT_ARGS["connect_timeout"] - 1, (took, lines[0])


def test_tag_numbers_do_not_run_out_where_each_upsert_draws_one(settings):
    """PostgreSQL's INSERT ... ON CONFLICT draws a number from the sequence for every value it
    is given, new or not (~22 a job): with 32-bit tag numbers, ingest would fail for good
    after ~100 million jobs. They are 64-bit; here the sequence starts just below 2**31."""
    with running(settings) as server:
        assert server.post_job(records_for_tags(0)).status_code == 201
        with create_engine(settings.database_url).begin() as conn:
            conn.execute(text("ALTER SEQUENCE facet_values_tag_seq RESTART WITH 2147483640"))
        for n in range(1, 11):  # new values in each: past 2**31 - 1, one job or ten a transaction
            response = server.post_job(records_for_tags(n))
            assert response.status_code == 201, response.text
        listed = server.http.get(server.url + "/api/jobs", params={"model": "tags_model_10"}).json()["jobs"]
        assert [job["job_id"] for job in listed] == ["tags-10"]
    with create_engine(settings.database_url).connect() as conn:
        assert conn.execute(text("SELECT max(tag) FROM facet_values")).scalar_one() > 2**31


def records_for_tags(n: int) -> dict:
    return {
        "job_id": f"tags-{n}",
        "completed_at": 1764000000.5 + n,
        "packs": [f"PACK_{n}"],
        "run_config": {"prompt": f"a castle <lora:detail_{n}:0.6>", "model": f"tags_model_{n}", "steps": 20 + n},
    }


def test_a_rebuild_is_vacuumed_so_that_listings_scan_only_the_indexes(settings):
    """Tables filled by COPY have no visibility map until vacuumed, and each index-only scan
    (every listing walk) then reads the table for every entry: at 1,000,000 jobs a page took
    55 ms right after a reindex, 2.4 ms once vacuumed. The rebuild vacuums before the swap."""
    filled_history(settings, 30)
    rebuild(settings.db_url, Journal(settings.log_path), Journal(settings.ratings_path), None)
    with create_engine(settings.database_url).connect() as conn:
        pages = conn.execute(
            text(
                "SELECT relname, relpages, relallvisible FROM pg_class WHERE relkind = 'r' "
                "AND relnamespace = current_schema()::regnamespace AND relname IN ('jobs', 'job_tags')"
            )
        ).all()
    assert len(pages) == 2
    assert all(relpages > 0 and visible == relpages for _, relpages, visible in pages), pages


def test_filtered_facets_send_their_sample_as_one_array_parameter(settings):
    """A filtered facet counts the tags of up to 2,000 sampled jobs: as 2,000 bound values the
    statement cost ~20 ms to render, send and parse before PostgreSQL counted anything; as one
    array parameter (`= ANY(...)`), a few. The counts stay those of the sample."""
    import dataclasses

    from sqlalchemy import Engine, event

    from learning_svc import create_app

    filled_history(settings, 120)
    small = dataclasses.replace(settings, facet_sample=40)
    seen: list[int] = []

    def count_parameters(conn, cursor, statement, parameters, context, executemany):
        if "job_tags" in statement and not executemany:
            seen.append(len(parameters) if isinstance(parameters, (dict, list, tuple)) else 0)

    app = create_app(small)
    event.listen(Engine, "before_cursor_execute", count_parameters)
    try:
        answer = app.test_client().get("/api/facets?status=completed").get_json()
    finally:
        event.remove(Engine, "before_cursor_execute", count_parameters)
        app.extensions["learning_svc"].close()
    assert answer["sampled"] == {"jobs": 40, "order": "-completed_at"}
    assert sum(entry["count"] for entry in answer["facets"]["status"]) == 40
    assert seen and max(seen) < 10, seen


def test_the_service_connections_run_without_jit(settings):
    """PostgreSQL compiles a statement it estimates as costly (JIT): our statements are index
    walks of milliseconds, and a filtered facet's count spent 10 ms of 130 compiling itself."""
    from learning_svc.index import db

    for writer in (False, True):
        with db.make_engine(settings.database_url, writer=writer).connect() as conn:
            assert conn.exec_driver_sql("SHOW jit").scalar() == "off"


def test_jobs_acknowledged_during_a_reindex_are_listed_after_its_swap(settings, monkeypatch):
    """The README: on PostgreSQL a running service may stay up during `reindex`. The rebuilt
    tables were swapped in holding only what the journal had when they were built: the jobs the
    service acknowledged meanwhile were 404 after the swap (it believed them indexed), and one
    of them posted again with other content was a 201 (a second line for its job id)."""
    from learning_svc.index import sync

    from conftest import LiveServer

    server = LiveServer(settings)
    try:
        for i in range(5):
            assert server.post_job({"job_id": f"before-{i}", "completed_at": 1_764_000_000 + i}).status_code == 201
        during = [{"job_id": f"during-{i}", "completed_at": 1_764_000_100 + i} for i in range(6)]
        build = sync._build_scratch

        def build_while_the_service_takes_jobs(*args, **kwargs):
            report = build(*args, **kwargs)
            for record in during:  # acknowledged after the scratch tables were filled
                assert server.post_job(record).status_code == 201
            assert server.rate("during-0", 4).status_code == 200
            for record in during:  # a read waits until the service has indexed them (in the old tables)
                assert server.http.get(f"{server.url}/api/jobs/{record['job_id']}", timeout=10).status_code == 200
            return report

        monkeypatch.setattr(sync, "_build_scratch", build_while_the_service_takes_jobs)
        report = rebuild(settings.db_url, Journal(settings.log_path), Journal(settings.ratings_path), None)
        for record in during:
            assert server.http.get(f"{server.url}/api/jobs/{record['job_id']}", timeout=10).status_code == 200
        assert report.jobs == 11 and report.ratings == 1
        assert server.http.get(f"{server.url}/api/jobs/during-0", timeout=10).json()["rating"] == 4
        assert server.post_job({**during[3], "completed_at": 1_764_009_999}).status_code == 409
        assert server.post_job(during[3]).status_code == 200
        assert len(settings.log_path.read_bytes().splitlines()) == 11
    finally:
        server.stop()
    assert verify_index(settings) == []


def _postgres_processes(server) -> list[int]:
    """The server's postmaster and its children (backends, background workers)."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


def _outcome_within(seconds: float, call):
    """What `call()` raised (or returned) if it ended within `seconds`; fails the test if it hangs."""
    outcome = []

    def run():
        try:
            outcome.append(call())
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still waiting after {seconds} s"
    return outcome[0]


def test_a_server_that_stops_answering_fails_requests_after_a_deadline_and_they_work_again_after(
    postgres_of_its_own, tmp_path, monkeypatch
):
    """A studio run: PostgreSQL up but not answering (SIGSTOP) held every request, and the
    committer, for as long as it stayed so. Each answer is now waited for PG_ANSWER_SECONDS
    (a new connection, PG_CONNECT_ARGS' connect_timeout); then the request fails as with a
    lost connection (503), and once the server answers again the service goes on without a
    restart."""
    import signal

    from sqlalchemy.exc import OperationalError

    from learning_svc.index import db
    from learning_svc.service import Unavailable

    from procs import job, journal_lines

    monkeypatch.setattr(db, "PG_ANSWER_SECONDS", 2.0)
    monkeypatch.setitem(db.PG_CONNECT_ARGS, "connect_timeout", 2)
    settings = Settings(data_dir=tmp_path / "learning", database_url=postgres_of_its_own.new_database())
    service = Service(settings).start()
    stopped = []
    try:
        service.record_job(records.parse(records.JobIn, job("before")))
        assert service.get_job("before")["record"]["job_id"] == "before"
        stopped = _postgres_processes(postgres_of_its_own)
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        read = _outcome_within(15, lambda: service.list_jobs(Page(filters=Filters(), limit=10)))
        assert isinstance(read, OperationalError), read
        written = _outcome_within(15, lambda: service.record_job(records.parse(records.JobIn, job("during"))))
        assert isinstance(written, Unavailable), written
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        stopped = []
        service.record_job(records.parse(records.JobIn, job("after")))
        assert [line["job_id"] for line in journal_lines(settings.log_path)] == ["before", "after"]
        deadline = time.monotonic() + 30  # the follower tries the index again after INDEX_RETRY_SECONDS
        while service.health()["index"]["behind"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert service.get_job("after")["record"]["job_id"] == "after"
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        service.close()


def test_a_rebuild_while_serving_empties_a_large_index_within_the_answer_deadline(settings):
    """A log cut (or replaced) while serving is indexed again from empty. The index was emptied
    row by row (DELETE): with millions of tag rows that outlasted a running service's deadline
    for an answer (db.PG_ANSWER_SECONDS), the rebuild was rolled back, tried again and again,
    and the new file was never indexed. Here the deadline is 1 s and the index 1,000,000 rows."""
    from test_follower import job_in

    from learning_svc.index import db

    service = Service(settings).start()
    try:
        for i in range(3):
            service.record_job(job_in(f"keep{i}"))
        assert service.get_job("keep2")["record"]["job_id"] == "keep2"
        with service.write_engine.begin() as conn:  # rows of a large index (of jobs long gone)
            conn.exec_driver_sql(
                "INSERT INTO job_tags (job, tag, completed_at, duration_key, rating_hi) "
                "SELECT g, mod(g, 1000), g, g, 0 FROM generate_series(1000001, 2000000) g"
            )
        for engine in (service.write_engine, service.read_engine):
            db.answer_within(engine, 1.0)
        lines = settings.log_path.read_bytes().splitlines(keepends=True)
        settings.log_path.write_bytes(b"".join(lines[:2]))  # cut: keep0, keep1
        created, _ = service.record_job(job_in("x"))
        assert created
        assert service.get_job("x")["record"]["job_id"] == "x"
        assert service.index_trouble is None
        with service.read_engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM job_tags WHERE job > 1000000").scalar() == 0
    finally:
        service.close()


def test_jobs_acknowledged_before_an_outage_are_listed_at_the_first_read_after_it(
    postgres_of_its_own, tmp_path, monkeypatch
):
    """An outside run: after PostgreSQL came back, jobs acknowledged just before it went away
    stayed unlisted ~20 s, until the end of the follower's current wait (2 s, 4 s, ... up to a
    minute while failing). A read that reaches the server has them indexed at once."""
    from sqlalchemy.exc import OperationalError

    from learning_svc import service as service_module

    from procs import job

    monkeypatch.setattr(service_module, "INDEX_RETRY_SECONDS", 60.0)  # a long outage's wait
    monkeypatch.setattr(service_module, "JOB_GATHER_SECONDS", 2.0)  # the server goes away before the follower
    settings = Settings(data_dir=tmp_path / "learning", database_url=postgres_of_its_own.new_database())
    service = Service(settings).start()
    try:
        created, _ = service.record_job(records.parse(records.JobIn, job("before")))
        assert created
        postgres_of_its_own.pause()
        deadline = time.monotonic() + 20
        while service.index_trouble is None:
            assert time.monotonic() < deadline, "the follower did not fail while the server was away"
            time.sleep(0.1)
        postgres_of_its_own.resume()
        back = time.monotonic()
        while True:
            try:
                listed = [summary["job_id"] for summary in service.list_jobs(Page(filters=Filters(), limit=10))[0]]
            except OperationalError:  # a pooled connection of before the restart
                listed = []
            if listed == ["before"]:
                break
            assert time.monotonic() < back + 10, f"not listed {time.monotonic() - back:.1f} s after the server is back"
            time.sleep(0.2)
        assert service.health()["index"]["problem"] is None
    finally:
        service.close()
