"""`serve --watch`: images written into a watched folder are imported once complete, a folder that
goes away is looked for again, and nothing stops the service."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest

from learning_svc.importers import images

import image_fixtures
from conftest import LiveServer

WAIT = 15.0  # the watcher imports within a second or two; this only bounds a failing test


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("source")
    image_fixtures.write_good(str(folder))
    return folder


def wait_for(predicate, what: str):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {WAIT} s: {what}")


def listed(server: LiveServer) -> dict[str, dict]:
    jobs = server.http.get(server.url + "/api/jobs?limit=500", timeout=10).json()["jobs"]
    return {Path(job["outputs"][0]).name: job for job in jobs if job["outputs"]}


def serve_watching(settings, watched: Path, root: Path) -> LiveServer:
    """A server watching `watched` (outputs under `root`), once its watch is "watching"."""
    server = LiveServer(replace(settings, watch=(watched,), output_root=root))
    wait_for(lambda: server.http.get(server.url + "/api/health").json()["watch"][0]["state"] == "watching", "watching")
    return server


pytestmark = pytest.mark.slow  # real timers: settle times and folder retries


@pytest.mark.parametrize("poll", [False, True], ids=["notified", "polling"])
def test_an_image_is_imported_once_it_is_complete(settings, tmp_path, pngs, poll):
    watched = tmp_path / "outputs" / "txt2img-images"
    watched.mkdir(parents=True)
    server = LiveServer(replace(settings, watch=(watched,), watch_poll=poll, output_root=tmp_path / "outputs"))
    try:
        wait_for(
            lambda: server.http.get(server.url + "/api/health").json()["watch"][0]["state"] != "starting", "watching"
        )
        data = (pngs / "a1111_v110.png").read_bytes()
        target = watched / "00001-1234567890.png"
        with open(target, "wb") as f:  # a UI writing the file in two goes
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(1.0)
            assert "00001-1234567890.png" not in listed(server)  # half a PNG is not imported
            f.write(data[len(data) // 2 :])
        job = wait_for(lambda: listed(server).get("00001-1234567890.png"), "the finished image listed")
        assert job["job_id"] == images.content_id(data) and job["sampler"] == "DPM++ 2M"
        assert job["outputs"] == ["txt2img-images/00001-1234567890.png"]
        shutil.copy(pngs / "comfyui.png", watched / "sub" if (watched / "sub").mkdir() is None else watched)
        wait_for(lambda: "sub" in {Path(j["outputs"][0]).parent.name for j in listed(server).values()}, "a sub-folder")
        shutil.copy(target, watched / "copy-of-the-same.png")  # the same image again: the same job
        (watched / "not-an-image.png").write_bytes(b"hello")
        health = wait_for(
            lambda: (h := server.http.get(server.url + "/api/health").json()["watch"][0])["recent_problems"] and h,
            "the bad file reported",
        )
        assert "not-an-image.png" in health["recent_problems"][0] and health["imported"] == 2
        assert len(listed(server)) == 2
    finally:
        server.stop()


def test_a_folder_that_comes_and_goes_is_looked_for_again(settings, tmp_path, pngs):
    share = tmp_path / "share"  # not there when the service starts (a network share not mounted yet)
    server = LiveServer(replace(settings, watch=(share,), output_root=tmp_path))
    try:
        wait_for(
            lambda: server.http.get(server.url + "/api/health").json()["watch"][0]["state"] == "missing", "missing"
        )
        assert server.http.get(server.url + "/api/health").status_code == 200  # the service is up meanwhile
        share.mkdir()
        shutil.copy(pngs / "fooocus.png", share / "first.png")
        wait_for(lambda: "first.png" in listed(server), "the image in the folder that appeared")
        (share / "bad.png").write_bytes(b"hello")
        wait_for(lambda: server.http.get(server.url + "/api/health").json()["watch"][0]["recent_problems"], "reported")
        shutil.rmtree(share)  # the share goes away...
        wait_for(lambda: server.http.get(server.url + "/api/health").json()["watch"][0]["state"] == "missing", "gone")
        share.mkdir()  # ...and comes back with an image written meanwhile
        shutil.copy(pngs / "novelai.png", share / "second.png")
        wait_for(lambda: "second.png" in listed(server), "the image written while the folder was away")
        # the problems of files that went with it went too (they still said bad.png)
        assert server.http.get(server.url + "/api/health").json()["watch"][0]["recent_problems"] == []
    finally:
        server.stop()


def test_a_folder_deleted_and_made_again_at_once_is_watched_again(settings, tmp_path, pngs):
    """Deleted and made again between two looks (RETRY apart): it was always there to is_dir(),
    so the observer of the deleted folder was kept, and nothing written since was ever imported
    while health said "watching"."""
    watched = tmp_path / "outputs"
    watched.mkdir()
    server = serve_watching(settings, watched, tmp_path)
    try:
        shutil.rmtree(watched)
        watched.mkdir()
        shutil.copy(pngs / "fooocus.png", watched / "after.png")
        wait_for(lambda: "after.png" in listed(server), "the image in the folder made again")
        time.sleep(0.5)
        os.rename(watched, tmp_path / "moved-away")  # a folder moved aside and another put in its place
        watched.mkdir()
        shutil.copy(pngs / "novelai.png", watched / "later.png")
        wait_for(lambda: "later.png" in listed(server), "the image in the folder put in its place")
        assert server.http.get(server.url + "/api/health").json()["watch"][0]["state"] == "watching"
    finally:
        server.stop()


@pytest.mark.parametrize("poll", [False, True], ids=["notified", "polling"])
def test_a_watched_folder_that_is_a_link_is_watched_where_it_points(settings, tmp_path, pngs, poll):
    """A review: `--watch outputs` with outputs a link to the real folder got no new images by
    inotify (watchdog watched the link itself); only the start-up sweep found them."""
    (tmp_path / "real").mkdir()
    link = tmp_path / "outputs"
    link.symlink_to(tmp_path / "real", target_is_directory=True)
    server = LiveServer(replace(settings, watch=(link,), watch_poll=poll, output_root=tmp_path))
    try:
        wait_for(
            lambda: server.http.get(server.url + "/api/health").json()["watch"][0]["state"] != "starting", "watching"
        )
        shutil.copy(pngs / "fooocus.png", link / "new.png")
        job = wait_for(lambda: listed(server).get("new.png"), "the image written through the link")
        assert job["outputs"] == ["outputs/new.png"]  # said by the path watched, as a sweep says it
    finally:
        server.stop()


def test_a_folder_numbered_anew_at_one_look_is_not_watched_anew_until_a_second_look_agrees(tmp_path, monkeypatch):
    """A review: some file systems number a folder anew when its inode leaves their cache (CIFS
    with noserverino, FUSE without use_ino); taken for a replaced folder at each look, it would
    be watched again and swept every 3 s. A new number counts once two looks agree; a delete
    the observer saw counts at once."""
    from learning_svc import watch

    watcher = watch.FolderWatcher(None, [tmp_path], tmp_path)
    folder = watcher.folders[0]
    rewatched = []
    monkeypatch.setattr(watcher, "_unwatch", lambda f: None)
    monkeypatch.setattr(watcher, "_watch", lambda f: rewatched.append(seen) or setattr(f, "identity", seen))
    monkeypatch.setattr(watcher, "_sweep", lambda f: None)
    folder.observer, folder.identity, folder.state = object(), (1, 1), "watching"
    for seen in [(1, 2), (1, 3), (1, 1), (1, 4), (1, 5), (1, 5), (1, 5)]:
        monkeypatch.setattr(watch, "_identity", lambda path, seen=seen: seen)
        folder.last_look = 0.0
        watcher._look_after_folders()
    assert rewatched == [(1, 5)]
    watcher.look_again(folder)  # inotify said the folder itself was deleted
    watcher._look_after_folders()
    assert rewatched == [(1, 5), (1, 5)]  # a folder made again may get the old number


def test_a_bad_file_seen_again_is_one_problem_line_not_one_per_look(tmp_path):
    """`recent_problems` listed the same bad file again after each rewrite or restart, pushing
    the other problems out of the five shown."""
    from learning_svc.watch import FolderWatcher

    watcher = FolderWatcher(None, [tmp_path], tmp_path)
    for name in ("a.png", "b.png", "a.png", "a.png", "c.png", "a.png"):
        watcher._problem(tmp_path / name, "not an image")
    assert watcher.describe()[0]["recent_problems"] == [
        f"{tmp_path / 'b.png'}: not an image",
        f"{tmp_path / 'c.png'}: not an image",
        f"{tmp_path / 'a.png'}: not an image",
    ]


def test_a_file_name_that_is_not_utf8_does_not_break_health_and_a_fixed_file_leaves_the_problems(
    settings, tmp_path, pngs, caplog
):
    """A watched folder with a file named in another encoding (its bytes kept as surrogates)
    made every GET /api/health a 500 until restart; a file reported empty and then filled and
    imported stayed in `recent_problems`. Its log line held the surrogates too: a handler
    writing UTF-8 (pytest-xdist's report, a plain StreamHandler) failed on it."""
    import os

    outputs = tmp_path / "outputs"
    outputs.mkdir()
    server = LiveServer(replace(settings, watch=(outputs,), output_root=outputs, watch_poll=True))
    try:
        odd = os.fsdecode(os.fsencode(str(outputs)) + b"/latin1-\xe9\xff.png")
        shutil.copy(next(pngs.glob("*.png")), odd)
        (outputs / "later.png").write_bytes(b"")  # empty: a problem, until it is written
        health = wait_for(
            lambda: (
                (h := server.http.get(server.url + "/api/health", timeout=10)).status_code == 200
                and len(h.json()["watch"][0]["recent_problems"]) == 2
                and h.json()
            ),
            "both problems in /api/health",
        )
        problems = health["watch"][0]["recent_problems"]
        assert any("latin1-\\xe9\\xff.png" in p and "not valid UTF-8" in p for p in problems), problems
        shutil.copy(sorted(pngs.glob("*.png"))[1], outputs / "later.png")
        wait_for(
            lambda: (
                [
                    p
                    for p in server.http.get(server.url + "/api/health", timeout=10).json()["watch"][0][
                        "recent_problems"
                    ]
                ]
                == [p for p in problems if "latin1" in p]
            ),
            "the filled file's problem gone",
        )
        said = [r.getMessage() for r in caplog.records if r.name == "learning_svc.watch"]
        assert any("latin1-\\xe9\\xff.png" in message for message in said), said
        for message in said:
            message.encode("utf-8")  # no lone surrogate
    finally:
        server.stop()


def test_a_file_made_empty_and_written_a_moment_later_is_no_problem(settings, tmp_path, pngs, caplog):
    """A UI makes the file, then writes it: seen in between, it was logged "not importing ...:
    empty file" and put in recent_problems (a new-user run), though imported a moment later.
    Empty is unfinished, as truncated is: a problem only once it stays so. And a file reported
    before and imported once complete is said to be in the log."""
    caplog.set_level("INFO", logger="learning_svc.watch")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    server = LiveServer(replace(settings, watch=(outputs,), output_root=outputs, watch_poll=True))
    try:
        wait_for(
            lambda: server.http.get(server.url + "/api/health").json()["watch"][0]["state"] == "polling", "polling"
        )
        (outputs / "made.png").write_bytes(b"")
        time.sleep(2.0)  # seen empty, more than once
        assert server.http.get(server.url + "/api/health").json()["watch"][0]["recent_problems"] == []
        shutil.copy(pngs / "a1111_v110.png", outputs / "made.png")
        wait_for(lambda: "made.png" in listed(server), "the written file imported")
        said = [r.getMessage() for r in caplog.records if r.name == "learning_svc.watch"]
        assert not [m for m in said if "not importing" in m], said

        (outputs / "stays.png").write_bytes(b"")  # one that stays empty is said, after a while
        wait_for(lambda: server.http.get(server.url + "/api/health").json()["watch"][0]["recent_problems"], "reported")
        shutil.copy(pngs / "comfyui.png", outputs / "stays.png")
        wait_for(lambda: "stays.png" in listed(server), "imported once written")
        said = [r.getMessage() for r in caplog.records if r.name == "learning_svc.watch"]
        assert any("stays.png: empty file" in m for m in said) and any(
            "imported" in m and "stays.png" in m and "reported before" in m for m in said
        ), said
    finally:
        server.stop()


def test_the_outputs_of_a_recorded_job_are_not_jobs_of_their_own(settings, tmp_path, pngs):
    """`serve --watch` over the folder a pipeline's jobs (or an imported StableNew history) name
    their images in made each of those images a second job when it swept the folder."""
    outputs = tmp_path / "outputs"
    run = outputs / "20260318_035123_pack-model"
    run.mkdir(parents=True)
    shutil.copy(pngs / "a1111_v110.png", run / "txt2img_p01_v01.png")
    shutil.copy(pngs / "sdnext.png", run / "txt2img_p02_v01.png")
    shutil.copy(pngs / "fooocus.png", run / "by_hand.png")  # named by no job
    settings = replace(settings, output_root=outputs)
    first = LiveServer(settings)
    try:  # the pipeline's jobs, recorded before any watching: one relative to the root, one absolute
        job = {"job_id": "pipe-1", "completed_at": 1_764_000_000, "outputs": [f"{run.name}/txt2img_p01_v01.png"]}
        assert first.post_job(job).status_code == 201
        job = {**job, "job_id": "pipe-2", "outputs": [str(run / "txt2img_p02_v01.png")]}
        assert first.post_job(job).status_code == 201
    finally:
        first.stop()
    server = LiveServer(replace(settings, watch=(outputs,)))
    try:
        health = lambda: server.http.get(server.url + "/api/health").json()["watch"][0]  # noqa: E731
        wait_for(lambda: health()["imported"] == 1, "the one image no job names imported")
        time.sleep(1.0)  # the sweep's other images had time to be imported too, were they to be
        jobs = server.http.get(server.url + "/api/jobs").json()["jobs"]
        assert sorted(j["job_id"] for j in jobs) == sorted(
            ["pipe-1", "pipe-2", images.content_id((run / "by_hand.png").read_bytes())]
        )
        assert health()["imported"] == 1
    finally:
        server.stop()


def test_the_service_s_own_thumbnails_are_not_imported(settings, tmp_path, pngs):
    """`serve --watch .` in a folder that holds the data folder (the default `logs/learning` is
    under the working directory) imported each thumbnail the page asked for as a new job, and
    that job's thumbnail as another, as long as the page was open."""
    folder = tmp_path / "sd"
    (folder / "output").mkdir(parents=True)
    shutil.copy(pngs / "a1111_v110.png", folder / "output" / "a.png")
    server = LiveServer(
        replace(settings, data_dir=folder / "logs" / "learning", output_root=folder, watch=(folder,), watch_poll=True)
    )
    try:
        health = lambda: server.http.get(server.url + "/api/health").json()["watch"][0]  # noqa: E731
        wait_for(lambda: health()["imported"] == 1, "the image imported")
        for _ in range(3):  # the page showing the newest card, as it comes
            newest = server.http.get(server.url + "/api/jobs?limit=1").json()["jobs"][0]["job_id"]
            assert server.http.get(f"{server.url}/api/jobs/{newest}/outputs/0/thumbnail").status_code == 200
            time.sleep(1.5)  # a poll and a settle
        assert list((folder / "logs" / "learning" / "thumbnails").rglob("*.*"))  # thumbnails were written there
        assert len(server.http.get(server.url + "/api/jobs").json()["jobs"]) == 1
        assert health()["imported"] == 1
    finally:
        server.stop()


def test_a_watch_delay_lets_a_pipeline_record_its_job_first(settings, tmp_path, pngs):
    """A watched folder that a pipeline writes into: each image was imported within a second,
    before the pipeline (an upscale stage still running) POSTed the job naming it, so it stayed
    a job of its own beside that job. LEARNING_SVC_WATCH_DELAY holds new images back that long."""
    outputs = tmp_path / "outputs"
    run = outputs / "run_1"
    run.mkdir(parents=True)
    old = outputs / "old.png"
    shutil.copy(pngs / "fooocus.png", old)
    os.utime(old, (time.time() - 3600, time.time() - 3600))  # written long ago: imported at the start's sweep
    server = LiveServer(replace(settings, output_root=outputs, watch=(outputs,), watch_delay=3))
    try:
        health = lambda: server.http.get(server.url + "/api/health").json()["watch"][0]  # noqa: E731
        wait_for(lambda: health()["imported"] == 1, "the old image imported at once")
        assert health()["delay_seconds"] == 3  # which delay is in force
        began = time.monotonic()
        shutil.copy(pngs / "a1111_v110.png", run / "img_1.png")  # the pipeline's image...
        shutil.copy(pngs / "sdnext.png", run / "by_hand.png")  # ...and one no job will name
        time.sleep(1.5)
        assert health()["imported"] == 1  # both held back
        job = {"job_id": "pipe-1", "completed_at": 1_764_000_000, "outputs": ["run_1/img_1.png"]}
        assert server.post_job(job).status_code == 201  # ...and its job, a while later
        wait_for(lambda: health()["imported"] == 2, "the image no job names imported after the delay")
        assert time.monotonic() - began >= 3.0
        time.sleep(0.5)
        jobs = server.http.get(server.url + "/api/jobs").json()["jobs"]
        by_hand = images.content_id((run / "by_hand.png").read_bytes())
        assert sorted(j["job_id"] for j in jobs) == sorted(["pipe-1", by_hand, images.content_id(old.read_bytes())])
    finally:
        server.stop()


def test_an_image_of_a_job_the_index_does_not_hold_yet_is_not_a_job_of_its_own(tmp_path, pngs, monkeypatch):
    """While the index could not be written (a full disk), a job the service had acknowledged was
    in the journal but not in the index, and the watcher, asking the index whose images it saw,
    imported that job's image as a job of its own: a second job, for good."""
    import sqlite3

    from learning_svc import records
    from learning_svc.config import Settings
    from learning_svc.index import sync
    from learning_svc.service import Service, Unavailable
    from learning_svc.watch import Folder, FolderWatcher

    outputs = tmp_path / "outputs"
    (outputs / "run").mkdir(parents=True)
    service = Service(Settings(data_dir=tmp_path / "learning", output_root=outputs)).start()
    try:
        image = outputs / "run" / "img.png"
        with monkeypatch.context() as patched:

            def full(*args, **kwargs):
                raise sqlite3.OperationalError("database or disk is full")

            patched.setattr(sync, "insert_jobs", full)
            job = {"job_id": "pipe-1", "completed_at": 1_764_000_000, "outputs": ["run/img.png"]}
            assert service.record_job(records.parse(records.JobIn, job))[0]
            wait_for(
                lambda: service.index_trouble is not None, "the index failing (the follower applies after the ack)"
            )
            shutil.copy(pngs / "a1111_v110.png", image)
            with pytest.raises(Unavailable):
                service.output_owners([str(image)], {})
            watcher = FolderWatcher(service, [outputs], outputs)
            watcher._sweep(Folder(outputs))
            watcher._import_settled()
            assert image in watcher.pending  # asked again later, not imported
        service.index_trouble["next_try"] = 0  # the disk has room again

        def owners():
            try:
                return service.output_owners([str(image)], {})
            except Unavailable:
                return None

        wait_for(lambda: owners() == {str(image): "pipe-1"}, "the job indexed")
        watcher._import_settled()
        assert image not in watcher.pending
        with service.reader() as conn:
            assert [row[0] for row in conn.exec_driver_sql("SELECT job_id FROM jobs")] == ["pipe-1"]
    finally:
        service.close()


def test_the_database_away_while_watching_is_said_once_not_ten_times_a_second(tmp_path, pngs, monkeypatch, caplog):
    """PostgreSQL restarting (or SQLite locked) while the watcher asked whose images it saw: the
    error reached the watcher's loop, which logged a traceback at every tick (0.1 s) for as long
    as the database was away, and the images waited all the same."""
    from sqlalchemy.exc import OperationalError

    from learning_svc.config import Settings
    from learning_svc.index import queries
    from learning_svc.service import Service
    from learning_svc.watch import FolderWatcher

    outputs = tmp_path / "outputs"
    outputs.mkdir()
    shutil.copy(pngs / "a1111_v110.png", outputs / "img.png")
    service = Service(Settings(data_dir=tmp_path / "learning", output_root=outputs)).start()
    watcher = FolderWatcher(service, [outputs], outputs, poll=True)
    try:
        with monkeypatch.context() as patched:

            def away(*args, **kwargs):
                raise OperationalError("SELECT", {}, Exception("connection refused"))

            patched.setattr(queries, "jobs_naming_outputs", away)
            watcher.start()
            time.sleep(1.5)
            assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
            assert watcher.pending  # waiting, not imported
        wait_for(lambda: not watcher.pending, "the image imported once the database is back")
    finally:
        watcher.stop()
        service.close()


def test_a_job_s_image_the_watcher_passes_over_is_shown_for_that_job_without_an_output_root(settings, tmp_path, pngs):
    """`serve --watch DIR` without LEARNING_SVC_OUTPUT_ROOT: the watcher took
    DIR/run_1/img.png for the output a pipeline's job names from Windows
    (`D:\\SD\\output\\run_1\\IMG.png`) and made no job of it, but the job showed "image not
    found": its output was looked for under the working directory only."""
    watched = tmp_path / "watched"
    watched.mkdir()
    server = LiveServer(replace(settings, output_root=None, watch=(watched,)))
    try:
        job = {"job_id": "pipe-1", "completed_at": 1_764_000_000, "outputs": ["D:\\SD\\output\\run_1\\IMG.png"]}
        assert server.post_job(job).status_code == 201
        (watched / "run_1").mkdir()
        shutil.copy(pngs / "a1111_v110.png", watched / "run_1" / "img.png")
        health = lambda: server.http.get(server.url + "/api/health").json()["watch"][0]  # noqa: E731
        time.sleep(1.5)  # long enough for the image to have become a job, were it to (within 2 s)
        assert [j["job_id"] for j in server.http.get(server.url + "/api/jobs").json()["jobs"]] == ["pipe-1"]
        assert health()["imported"] == 0
        served = server.http.get(server.url + "/api/jobs/pipe-1/outputs/0")
        assert served.status_code == 200
        assert served.content == (watched / "run_1" / "img.png").read_bytes()
    finally:
        server.stop()


def test_the_log_names_a_file_that_is_not_utf8_as_health_does(tmp_path, pngs):
    """The log wrote such a name with Python's surrogates (latin1-\\udce9\\udcff.png) while
    /api/health and the import report show its bytes (latin1-\\xe9\\xff.png): one file, two names."""
    import requests

    from procs import ServerProcess

    outputs = tmp_path / "outputs"
    outputs.mkdir()
    with open(os.fsencode(str(outputs)) + b"/latin1-\xe9\xff.png", "wb"):
        pass  # empty: a problem the watcher reports
    server = ServerProcess(tmp_path / "data", args=("--watch", str(outputs))).start()
    try:
        problems = wait_for(
            lambda: requests.get(server.url + "/api/health", timeout=10).json()["watch"][0]["recent_problems"],
            "the file's problem in /api/health",
        )
        assert any("latin1-\\xe9\\xff.png" in p for p in problems), problems
        wait_for(lambda: "not importing" in server.output(), "the problem in the log")
        logged = [line for line in server.output().splitlines() if "not importing" in line]
        assert logged and all("latin1-\\xe9\\xff.png" in line for line in logged), logged
        assert "udc" not in server.output()
    finally:
        server.kill()


def test_an_image_moved_or_renamed_in_a_watched_folder_takes_its_job_along(settings, tmp_path, pngs):
    """mv into a sub-folder, a rename: nothing was written, and the job's card and viewer showed
    "image not found" for good, restarts included."""
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    server = LiveServer(replace(settings, watch=(outputs,), output_root=outputs))
    try:
        for name in ("a1111_v110.png", "comfyui.png"):
            shutil.copy(pngs / name, outputs / name)
        jobs = wait_for(lambda: len(found := listed(server)) == 2 and found, "both imported")
        (outputs / "keepers").mkdir()
        (outputs / "a1111_v110.png").rename(outputs / "keepers" / "a1111_v110.png")
        (outputs / "comfyui.png").rename(outputs / "renamed.png")
        wait_for(
            lambda: (
                sorted(job["outputs"][0] for job in listed(server).values())
                == ["keepers/a1111_v110.png", "renamed.png"]
            ),
            "both jobs following their images",
        )
        for job in jobs.values():
            image = server.http.get(f"{server.url}/api/jobs/{job['job_id']}/outputs/0/thumbnail", timeout=10)
            assert image.status_code == 200 and "X-Learning-Placeholder" not in image.headers
        assert len(listed(server)) == 2
    finally:
        server.stop()


def test_a_damaged_image_nothing_writes_is_reported_within_seconds(settings, tmp_path):
    """A new-user run: a cut PNG dropped into a watched folder was waited for as "still being
    written" for 30 s before health named it; one that does not change for QUIET (5 s) is not
    being written."""
    watched = tmp_path / "outputs"
    watched.mkdir()
    server = serve_watching(settings, watched, tmp_path)
    try:
        (watched / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnotreally")
        dropped = time.monotonic()
        health = wait_for(
            lambda: (h := server.http.get(server.url + "/api/health").json()["watch"][0])["recent_problems"] and h,
            "the damaged file reported",
        )
        assert time.monotonic() - dropped < 15, "waited for as if it were being written"
        assert "broken.png" in health["recent_problems"][0] and "truncated" in health["recent_problems"][0]
    finally:
        server.stop()


def test_the_watcher_takes_what_import_takes_and_refuses_what_it_refuses(settings, tmp_path, caplog):
    """A new-user run: `serve --watch` stored a PNG's 50 MiB text chunk as a 52 MB record (the
    server at 512 MB, the page unable to show the job, an export that would not import again),
    which `import` refused as over the API's 1 MiB. Both now take the image without that chunk
    (as one Pillow refuses), say so (the report; the watcher's log), and make the same jobs."""
    import orjson

    from procs import cli_env, run_cli

    bad = tmp_path / "bad"
    bad.mkdir()
    image_fixtures.write_bad(str(bad))
    imported = tmp_path / "imported"
    done = run_cli("import", "--data-dir", str(imported), str(bad), env=cli_env())
    assert done.returncode == 0, done.stderr
    by_import = {
        orjson.loads(line)["job_id"] for line in (imported / "learning_log_v2.jsonl").read_bytes().splitlines()
    }
    fifty = images.content_id((bad / "text_50mb.png").read_bytes())
    assert fifty in by_import

    server = serve_watching(settings, bad, tmp_path)
    try:
        wait_for(lambda: {job["job_id"] for job in listed(server).values()} == by_import, "the jobs import made")
        record = server.http.get(f"{server.url}/api/jobs/{fifty}").json()["record"]
        assert record["generator"] == "unreadable metadata"
        assert record["run_config"]["metadata"]["parameters"].startswith("<not read")
        lines = settings.log_path.read_bytes().splitlines()
        assert max(map(len, lines)) < 1024 * 1024 and len(lines) == len(by_import)
        said = [r.getMessage() for r in caplog.records if r.name == "learning_svc.watch"]
        assert any("text_50mb.png" in m and "'parameters' not read: 50.0 MiB" in m for m in said), said
    finally:
        server.stop()
