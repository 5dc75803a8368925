"""The index built live equals the index rebuilt from the JSONL, row for row; restarts keep everything."""

import subprocess
import sys
from contextlib import contextmanager

import orjson
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect

from learning_svc.gen import generate_ratings, generate_records
from learning_svc.index import db
from learning_svc.index.sync import rebuild
from learning_svc.journal import Journal
from learning_svc.verify import TABLES, comparable, compare_table, verify_index

from conftest import LiveServer, sample_records
from history_oracle import review_events
from procs import listing_pages, over_http


def _fill(server: LiveServer, n_generated: int = 150) -> list[str]:
    bodies = sample_records() + list(generate_records(n_generated, seed=3))
    for body in bodies:
        assert server.post_job(body).status_code == 201
    ids = [b["job_id"] for b in bodies]
    # Amendments (PATCH): a pack added, a model replaced, new text and a new time, one job twice.
    amend = [
        (ids[0], {"packs": ["ADDED_PACK"], "extra": {"note": "enriched"}}, True),
        (ids[1], {"model": "replaced.safetensors [0123456789]", "vae": "new_vae.pt"}, True),
        (ids[2], {"prompt": "a lighthouse <lora:harbour:0.6>", "completed_at": 1764000123.5}, True),
        (ids[2], {"status": "failed", "extra": {"error": "re-run failed"}}, True),
    ]
    for job_id, patch, replace in amend:
        response = server.http.patch(
            f"{server.url}/api/jobs/{job_id}", params={"replace": str(replace).lower()}, json=patch
        )
        assert response.status_code == 200 and response.json()["amended"], response.text
    for job_id, rating in generate_ratings(ids, seed=3, fraction=0.5):
        if rating is None:
            assert server.http.delete(f"{server.url}/api/jobs/{job_id}/rating").status_code == 200
        else:
            assert server.rate(job_id, rating).status_code == 200
    # Reviews: flags, tags, notes, scores and image ratings; then a reviewed job is amended
    # (its review's rows move with its new time) and rated again (their facet sums move).
    reviewed = [(ids[3], None, {"flag": "pick", "tags": ["bad hands", "blurry"]})]
    reviewed += review_events([b for b in bodies if b["job_id"] != ids[3]], seed=3)
    for job_id, output, changes in reviewed:
        if output is None:
            response = server.http.post(f"{server.url}/api/jobs/{job_id}/review", json=changes)
        elif changes["rating"] is None:
            response = server.http.delete(f"{server.url}/api/jobs/{job_id}/outputs/{output}/rating")
        else:
            response = server.http.put(f"{server.url}/api/jobs/{job_id}/outputs/{output}/rating", json=changes)
        assert response.status_code == 200, response.text
    response = server.http.patch(
        f"{server.url}/api/jobs/{ids[3]}", params={"replace": "true"}, json={"completed_at": 1764000999.5}
    )
    assert response.status_code == 200 and response.json()["amended"], response.text
    assert server.rate(ids[3], 5).status_code == 200
    return ids


@contextmanager
def running(settings):
    server = LiveServer(settings)
    try:
        yield server
    finally:
        server.stop()


def filled_history(settings, n_generated: int) -> tuple[list, dict]:
    """Fill a fresh service with the samples and n generated jobs plus ratings; its history."""
    with running(settings) as server:
        _fill(server, n_generated)
        return _history(server)


def history_after_restart(settings) -> tuple[list, dict]:
    with running(settings) as server:
        return _history(server)


def delete_index(settings) -> None:
    for suffix in ("", "-wal", "-shm"):
        settings.index_path.with_name(settings.index_path.name + suffix).unlink(missing_ok=True)


def _history(server: LiveServer) -> tuple[list, dict]:
    jobs = [job for page in listing_pages(over_http(server.http, server.url), limit=100) for job in page]
    return jobs, server.http.get(server.url + "/api/ratings").json()


def test_live_index_equals_rebuilt_index_row_for_row(settings, tmp_path):
    filled_history(settings, 150)
    rebuilt = tmp_path / "rebuilt.sqlite3"
    rebuild("unused", Journal(settings.log_path), Journal(settings.ratings_path), rebuilt)
    live_engine, rebuilt_engine = create_engine(settings.db_url), create_engine(f"sqlite:///{rebuilt}")
    with live_engine.connect() as live, rebuilt_engine.connect() as fresh:
        for table in TABLES:
            # Rows as the journal determines them (tag numbers depend on the order values were
            # first indexed; facet values whose jobs all moved away may linger at 0 live).
            statement, key_len = comparable(table)
            order = list(statement.selected_columns)[:key_len]
            live_rows = live.execute(statement.order_by(*order)).all()
            fresh_rows = fresh.execute(statement.order_by(*order)).all()
            assert live_rows == fresh_rows, table.name
            assert len(live_rows) > 0, table.name
            assert compare_table(table, live, fresh) == []
    assert verify_index(settings) == []


def test_restart_keeps_history_and_ratings(settings):
    before = filled_history(settings, 60)
    assert history_after_restart(settings) == before
    assert len(before[1]) > 10


def test_deleted_index_and_reindex_give_back_the_same_history(settings):
    before = filled_history(settings, 60)
    delete_index(settings)
    result = subprocess.run(
        [sys.executable, "-m", "learning_svc.cli", "reindex", "--data-dir", str(settings.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "indexed 102 job lines" in result.stdout
    assert history_after_restart(settings) == before


def test_index_deleted_while_stopped_is_rebuilt_at_start(settings):
    before = filled_history(settings, 20)
    assert settings.index_path.exists()
    delete_index(settings)
    assert history_after_restart(settings) == before


def test_verify_reports_a_difference(settings):
    filled_history(settings, 10)
    engine = create_engine(settings.db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE jobs SET rating = 5, rating_hi = 5, rating_lo = 5 WHERE id = "
            "(SELECT min(id) FROM jobs WHERE rating IS NULL)"
        )
    problems = verify_index(settings)
    assert problems and problems[0].startswith("jobs: 1 rows different in the index")
    result = subprocess.run(
        [sys.executable, "-m", "learning_svc.cli", "verify", "--data-dir", str(settings.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "rows different" in result.stdout


def test_verify_says_first_that_an_index_is_behind_the_jsonl(settings):
    """A new-user run: an index that had not read lines appended while the folder was served
    from another database listed them as rows missing, and nothing said that the service
    catches up by itself."""
    filled_history(settings, 10)
    extra = {"schema": "learning_log_v2", "job_id": "appended-elsewhere", "completed_at": 1_764_000_000.0}
    with open(settings.log_path, "ab") as log:  # as another writer appends while this index is not used
        log.write(orjson.dumps(extra) + b"\n")
    problems = verify_index(settings)
    assert problems[0].startswith("the index is behind the JSONL files (it holds learning_log_v2.jsonl to byte ")
    assert "catch it up at their next start" in problems[0]
    assert any(p.startswith("jobs: 1 rows missing from the index") for p in problems[1:]), problems


def test_rebuild_with_worker_processes_equals_the_live_index(settings, tmp_path):
    filled_history(settings, 120)
    rebuilt = tmp_path / "parallel.sqlite3"
    # any backlog parsed and projected in workers, in many small ranges (several in flight)
    report = rebuild(
        "unused",
        Journal(settings.log_path),
        Journal(settings.ratings_path),
        rebuilt,
        parallel_above=0,
        range_bytes=64 << 10,
    )
    assert (report.jobs - report.amendments, report.amendments) == (162, 5)
    live_engine, rebuilt_engine = create_engine(settings.db_url), create_engine(f"sqlite:///{rebuilt}")
    with live_engine.connect() as live, rebuilt_engine.connect() as fresh:
        for table in TABLES:
            assert compare_table(table, live, fresh) == [], table.name


def downgraded(settings, revision: str):
    """The settings' index taken down to an older schema revision (as an older version left it)."""
    config = Config()
    config.set_main_option("script_location", str(db.migrations_dir()))
    engine = db.make_engine(settings.db_url, writer=True)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
    return engine


@pytest.mark.both_backends
def test_an_index_of_the_schema_before_tag_numbers_is_emptied_by_the_upgrade_and_rebuilt(settings):
    """Migration 0010 (job_tags keyed by tag numbers, no rating_lo copy, no summary in jobs)
    empties an older index, and the next start indexes the journal again: the same history.
    Its downgrade gives the older shapes back, empty, for an older version to rebuild."""
    before = filled_history(settings, 20)
    engine = downgraded(settings, "0009")
    with engine.begin() as conn:
        assert {"field", "value", "rating_lo"} <= {c["name"] for c in inspect(conn).get_columns("job_tags")}
        assert "summary" in {c["name"] for c in inspect(conn).get_columns("jobs")}
        assert conn.exec_driver_sql("SELECT count(*) FROM jobs").scalar_one() == 0
        # what an older version had indexed (one job of the journal, with its tag rows)
        conn.exec_driver_sql(
            "INSERT INTO jobs (id, job_id, input_hash, line_length, status, completed_at, duration_key, "
            "rating_hi, rating_lo, summary, amendments) VALUES (0, 'old', '', 10, 'completed', 1.5, -1, -1, 6, '{}', 0)"
        )
        conn.exec_driver_sql(
            "INSERT INTO job_tags (job, field, value, completed_at, duration_key, rating_hi, rating_lo) "
            "VALUES (0, 'model', 'old', 1.5, -1, -1, 6)"
        )
    engine.dispose()
    with running(settings) as server:
        startup = server.app.extensions["learning_svc"].startup  # emptied: indexed from the start
        lines = [orjson.loads(line) for line in settings.log_path.read_bytes().splitlines()]
        assert startup.jobs == len(lines)  # every line of the log: jobs and amendments
        assert startup.amendments == sum(line["schema"] == "learning_amend_v2" for line in lines) > 0
        assert _history(server) == before
    assert verify_index(settings) == []


@pytest.mark.both_backends
def test_an_index_of_the_schema_before_job_outputs_is_rebuilt_with_them(settings):
    """Migration 0011 adds job_outputs, empty: an index an older version made (its jobs indexed,
    its projection the one stored) is rebuilt at the next start, so every job's outputs are in it."""
    before = filled_history(settings, 20)
    engine = downgraded(settings, "0010")
    with engine.begin() as conn:
        assert "job_outputs" not in inspect(conn).get_table_names()
        assert conn.exec_driver_sql("SELECT count(*) FROM jobs").scalar_one() > 0
    engine.dispose()
    with running(settings) as server:
        assert server.app.extensions["learning_svc"].startup.rebuilt
        assert _history(server) == before
    engine = db.make_engine(settings.db_url, writer=False)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM job_outputs").scalar_one() > 0
    engine.dispose()
    assert verify_index(settings) == []


def test_an_index_made_by_another_projection_is_rebuilt_at_start(settings):
    """A version that indexes other fields (a field added to the registry) starts over from the
    journal, so older jobs get the new field's rows too; the history stays the same."""
    before = filled_history(settings, 20)
    engine = create_engine(settings.db_url)
    with engine.begin() as conn:  # as an older version left it: no vae rows, another projection
        conn.exec_driver_sql("DELETE FROM job_tags WHERE tag IN (SELECT tag FROM facet_values WHERE field = 'vae')")
        conn.exec_driver_sql("UPDATE index_meta SET value = 'older' WHERE key = 'projection'")
    engine.dispose()
    with running(settings) as server:
        assert server.app.extensions["learning_svc"].startup.rebuilt == (
            "this version indexes other fields than the one that built the index"
        )
        assert _history(server) == before
        vaes = server.http.get(server.url + "/api/facets").json()["facets"]["vae"]
        assert vaes and sum(v["count"] for v in vaes) > 0
    assert verify_index(settings) == []
    with running(settings) as server:  # once rebuilt, a start continues from the checkpoints
        assert server.app.extensions["learning_svc"].startup.rebuilt is None


def test_verify_checks_the_text_search_and_the_index_s_version(settings):
    """An emptied FTS5 table, or an index made before the projection changed (CJK words), passed
    `verify`: "ok", while `q=` found nothing."""
    filled_history(settings, 10)
    assert verify_index(settings) == []
    engine = create_engine(settings.db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO jobs_fts(jobs_fts) VALUES ('delete-all')")
        conn.exec_driver_sql("UPDATE index_meta SET value = 'an-older-one' WHERE key = 'projection'")
    engine.dispose()
    problems = verify_index(settings)
    assert problems[0].startswith("the index was made by another version (projection an-older-one")
    assert any(p.startswith("jobs_fts (text search): ") for p in problems), problems


def test_verify_says_when_the_files_grew_while_it_ran(settings, monkeypatch):
    """`verify` beside a service taking writes reported thousands of rows "in the index but not
    in the journal" (the rebuild stops where the files ended; the live index went on) and nothing
    else: it now says the files grew, so that the differences are read as what they are."""
    from learning_svc import verify

    server = LiveServer(settings)
    try:
        assert server.post_job({"job_id": "a", "completed_at": 1_764_000_000}).status_code == 201
        assert server.http.get(server.url + "/api/jobs/a", timeout=10).status_code == 200  # indexed (not gathered)
        assert verify_index(settings) == []

        class RebuiltWhileAServiceWrites(verify.Indexer):
            def catch_up(self, *args, **kwargs):
                report = super().catch_up(*args, **kwargs)
                assert server.post_job({"job_id": "b", "completed_at": 1_764_000_001}).status_code == 201
                assert server.http.get(server.url + "/api/jobs/b", timeout=10).status_code == 200  # indexed
                return report

        monkeypatch.setattr(verify, "Indexer", RebuiltWhileAServiceWrites)
        problems = verify_index(settings)
    finally:
        server.stop()
    assert any(problem.startswith("jobs: 1 rows in the index but not in the journal") for problem in problems)
    assert "learning_log_v2.jsonl grew while verifying" in problems[-1], problems
    assert "run `learning-svc verify` again" in problems[-1]
