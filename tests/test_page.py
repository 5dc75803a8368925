"""The history page (SPEC §2.2) in real Chromium against the real waitress server.

Debian's Chromium at /usr/bin/chromium is driven by Playwright, which never downloads a
browser here. One browser per module, a fresh context (cookies, localStorage) per test.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import replace
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from PIL import Image
from playwright.sync_api import expect

from learning_svc.gen import generate_records
from learning_svc.index import sync
from learning_svc.index.plan import Thresholds

from conftest import LiveServer
from pages import (
    ARTIFACTS,
    CHROMIUM,
    DESKTOP,
    JOB,
    NEW_JOB_TIMEOUT_MS,
    SMALL_LAPTOP,
    HeldPages,
    card,
    focused_job_id,
    is_rating_put,
    overlapping,
    pick,
    picker_value,
    picker_values,
    rating_events,
    scroll_until_all_loaded,
    shown_job_ids,
    star,
    wait_for_rating_events,
    write_png,
)

pytestmark = pytest.mark.browser


# ---------------------------------------------------------------- 0. the browser is there


def test_chromium_is_installed():
    """Reported as a failure (not a skip) on a machine without the browser."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the page tests need Debian's Chromium; `make test` installs it")


# ---------------------------------------------------------------- 1. the list


def test_list_shows_every_sample_job_with_its_facts(live_server, samples, open_page):
    page = open_page(live_server)
    scroll_until_all_loaded(page, len(samples))
    expect(page.locator(JOB)).to_have_count(len(samples))
    assert shown_job_ids(page) == [record["job_id"] for record in samples]  # newest first
    expect(page.locator("#status")).to_have_text("Showing 42 jobs · 42 unrated left")

    shown = {
        card["id"]: card
        for card in page.locator(JOB).evaluate_all("""cards => cards.map((card) => ({
        id: card.dataset.jobId,
        tabindex: card.getAttribute('tabindex'),
        text: card.innerText,
        facts: card.querySelector('.facts').innerText,
        thumbnails: card.querySelectorAll('img.thumb').length,
        radiogroups: card.querySelectorAll('[role=radiogroup]').length,
        radios: [...card.querySelectorAll('[role=radio]')].map((radio) => radio.getAttribute('aria-label')),
        datetime: card.querySelector('time').getAttribute('datetime'),
    }))""")
    }
    jobs = live_server.http.get(live_server.url + "/api/jobs?limit=500").json()["jobs"]
    for job in jobs:
        shown_job = shown[job["job_id"]]
        assert shown_job["tabindex"] == "0"
        text, facts = shown_job["text"], shown_job["facts"]
        for pack in job["packs"]:
            assert pack in text
        for value in (job["model"], job["sampler"], *job["loras"]):
            if value:
                assert value in facts
        assert f"{job['variant_index'] + 1} / {job['variant_total']}" in facts
        outputs = len(job["outputs"])
        assert (f"{outputs} output" if outputs else "No outputs") in text
        assert shown_job["thumbnails"] == min(outputs, 4)
        assert shown_job["radiogroups"] == 1
        assert shown_job["radios"] == ["0 stars", "1 star", "2 stars", "3 stars", "4 stars", "5 stars"]
        assert re.match(r"\d{4}-\d\d-\d\dT", shown_job["datetime"])


# ---------------------------------------------------------------- 2. rating with the mouse


def test_clicking_the_fourth_star_stores_rating_4(live_server, samples, open_page):
    page = open_page(live_server)
    job_id = samples[2]["job_id"]
    job = card(page, job_id)
    expect(star(job, "4 stars")).to_have_attribute("aria-checked", "false")

    with page.expect_response(is_rating_put(job_id)) as put:
        star(job, "4 stars").click()
    assert put.value.status == 200
    expect(star(job, "4 stars")).to_have_attribute("aria-checked", "true")
    events = rating_events(live_server)
    assert [(e["job_id"], e["rating"], e["source"]) for e in events] == [(job_id, 4, "web")]
    expect(page.locator("#details")).to_be_hidden()  # a star click rates; it does not open details

    page.reload()
    job = card(page, job_id)
    expect(star(job, "4 stars")).to_have_attribute("aria-checked", "true")
    for label in ("0 stars", "1 star", "2 stars", "3 stars", "5 stars"):
        expect(star(job, label)).to_have_attribute("aria-checked", "false")

    # The zero and the clear control exist too.
    with page.expect_response(is_rating_put(job_id)):
        star(job, "0 stars").click()
    expect(star(job, "0 stars")).to_have_attribute("aria-checked", "true")
    with page.expect_response(lambda r: r.request.method == "DELETE"):
        job.get_by_role("button", name="Clear rating").click()
    expect(job.locator("[role=radio][aria-checked=true]")).to_have_count(0)
    assert [e["rating"] for e in rating_events(live_server)] == [4, 0, None]


# ---------------------------------------------------------------- 3. keys


def test_keys_rate_move_and_open_details(live_server, samples, open_page):
    page = open_page(live_server)
    expect(page.locator(JOB)).to_have_count(len(samples))
    first, second = samples[0]["job_id"], samples[1]["job_id"]
    page.keyboard.press("j")  # with nothing focused, j focuses the first job
    expect(card(page, first)).to_be_focused()

    with page.expect_response(is_rating_put(first)):
        page.keyboard.press("3")
    assert [(e["job_id"], e["rating"]) for e in rating_events(live_server)] == [(first, 3)]
    expect(star(card(page, first), "3 stars")).to_have_attribute("aria-checked", "true")
    expect(card(page, first)).to_be_focused()  # the full list does not move on by itself

    page.keyboard.press("j")
    expect(card(page, second)).to_be_focused()
    page.keyboard.press("k")
    expect(card(page, first)).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(card(page, second)).to_be_focused()
    page.keyboard.press("ArrowLeft")
    expect(card(page, first)).to_be_focused()
    page.keyboard.press("ArrowDown")  # the list is a grid: the job below, not the next one
    below = focused_job_id(page)
    assert below not in (first, second)
    first_box, below_box = card(page, first).bounding_box(), card(page, below).bounding_box()
    assert below_box["x"] == first_box["x"] and below_box["y"] > first_box["y"] + first_box["height"] - 1
    page.keyboard.press("ArrowUp")
    expect(card(page, first)).to_be_focused()

    page.keyboard.press("Enter")
    details = page.locator("#details")
    expect(details).to_be_visible()
    expect(page.locator("#details-title")).to_have_text(first)
    stored = live_server.http.get(f"{live_server.url}/api/jobs/{first}").json()["record"]
    expect(details.locator(".prompt").first).to_have_text(stored["prompt"])
    page.keyboard.press("j")  # in details, j shows the next job
    expect(page.locator("#details-title")).to_have_text(second)
    with page.expect_response(is_rating_put(second)):
        page.keyboard.press("5")  # rates the job shown in details
    expect(star(details, "5 stars")).to_have_attribute("aria-checked", "true")
    expect(details.locator("#details-history")).to_contain_text("5 stars")
    page.keyboard.press("Escape")
    expect(details).to_be_hidden()
    expect(card(page, second)).to_be_focused()  # focus follows the job last shown
    expect(page.locator(JOB)).to_have_count(len(samples))  # only jobs carry data-job-id
    expect(star(card(page, second), "5 stars")).to_have_attribute("aria-checked", "true")

    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()


# ---------------------------------------------------------------- 4. and the 50-jobs feel: unrated view


def test_unrated_view_moves_on_to_the_next_unrated_job(live_server, samples, open_page):
    page = open_page(live_server, "/?rated=false")
    expect(page.locator("#filter-unrated")).to_be_checked()
    expect(page.locator(JOB)).to_have_count(len(samples))
    ids = [record["job_id"] for record in samples]

    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(card(page, ids[1])).to_be_focused()
    page.keyboard.press("5")
    expect(card(page, ids[2])).to_be_focused()
    page.keyboard.press("k")
    page.keyboard.press("k")
    expect(card(page, ids[0])).to_be_focused()
    page.keyboard.press("4")  # skips ids[1], rated meanwhile
    expect(card(page, ids[2])).to_be_focused()
    page.keyboard.press("3")
    expect(card(page, ids[3])).to_be_focused()

    events = wait_for_rating_events(live_server, 3)
    assert sorted((e["job_id"], e["rating"]) for e in events) == sorted([(ids[1], 5), (ids[0], 4), (ids[2], 3)])


def test_fifty_five_jobs_rated_with_the_keyboard_alone(live_server, open_page):
    """Rating a long run of jobs by keys alone, typed as fast as Playwright can, past the end
    of the first page while the second one is still on its way: every key rates one job."""
    for record in generate_records(60, seed=5):
        assert live_server.post_job(record).status_code == 201
    order = [job["job_id"] for job in live_server.http.get(live_server.url + "/api/jobs?limit=500").json()["jobs"]]
    page = open_page(live_server, "/?rated=false")
    expect(page.locator(JOB)).to_have_count(50)

    second_page = HeldPages(page)
    keys = [str(i % 6) for i in range(55)]
    with page.expect_request(lambda request: "cursor=" in request.url):
        page.keyboard.press("j")
        for key in keys:  # no waiting between ratings: focus moves on by itself
            page.keyboard.press(key)
    expect(card(page, order[49])).to_be_focused()  # waits there for the second page

    second_page.release()
    expect(card(page, order[55])).to_be_focused()
    events = wait_for_rating_events(live_server, 55, page=page)
    # Each job got the key typed for it (the PUTs may finish in any order).
    assert sorted((e["job_id"], e["rating"]) for e in events) == sorted(zip(order, map(int, keys)))
    assert len(set(shown_job_ids(page))) == 60


# ---------------------------------------------------------------- 5. a refused save reverts, a busy one is sent again


def test_a_refused_rating_reverts_and_says_why(live_server, samples, open_page):
    """A rating the service refuses (a 4xx: asking again cannot help) is undone, with the reason;
    one it never hears of is kept and sent later (test_page_live.py)."""
    job_id = samples[0]["job_id"]
    assert live_server.rate(job_id, 2).status_code == 200
    page = open_page(live_server)
    job = card(page, job_id)
    expect(star(job, "2 stars")).to_have_attribute("aria-checked", "true")

    message = f"no job {job_id!r}"

    def refuse(route):
        body = {"error": {"code": "not_found", "message": message, "fields": []}}
        route.fulfill(status=404, content_type="application/json", body=json.dumps(body))

    page.route("**/api/jobs/*/rating", refuse)
    star(job, "4 stars").click()
    expect(star(job, "2 stars")).to_have_attribute("aria-checked", "true")
    expect(star(job, "4 stars")).to_have_attribute("aria-checked", "false")
    alert = job.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(message)
    assert [e["rating"] for e in rating_events(live_server)] == [2]

    page.unroute("**/api/jobs/*/rating")
    with page.expect_response(is_rating_put(job_id)):
        star(job, "4 stars").click()
    expect(alert).to_be_hidden()  # the message goes once a rating is stored
    assert [e["rating"] for e in rating_events(live_server)] == [2, 4]


def test_a_rating_the_service_is_too_busy_for_is_kept_and_sent_again(live_server, samples, open_page):
    """A 503 says "try again" (the index rebuilt, the database restarting, a journal locked by
    another process): the page keeps the rating, says it is not saved yet, and sends it again
    by itself. It used to revert it, and the user had to notice and rate again."""
    job_id = samples[0]["job_id"]
    assert live_server.rate(job_id, 2).status_code == 200
    page = open_page(live_server)
    job = card(page, job_id)
    expect(star(job, "2 stars")).to_have_attribute("aria-checked", "true")

    message = "the index is being rebuilt, try again in a minute"
    refused = []

    def busy(route):
        refused.append(route.request.url)
        body = {"error": {"code": "unavailable", "message": message, "fields": []}}
        route.fulfill(status=503, content_type="application/json", body=json.dumps(body))

    page.route("**/api/jobs/*/rating", busy)
    star(job, "4 stars").click()
    alert = job.get_by_role("alert")
    expect(alert).to_contain_text("Not saved yet")
    expect(alert).to_contain_text(message)
    expect(star(job, "4 stars")).to_have_attribute("aria-checked", "true")
    assert refused and [e["rating"] for e in rating_events(live_server)] == [2]

    page.unroute("**/api/jobs/*/rating")  # the service is back: the next try stores it
    expect(alert).to_be_hidden(timeout=15_000)
    expect(star(job, "4 stars")).to_have_attribute("aria-checked", "true")
    assert [e["rating"] for e in rating_events(live_server)] == [2, 4]
    page.reload()
    expect(star(card(page, job_id), "4 stars")).to_have_attribute("aria-checked", "true")


# ---------------------------------------------------------------- 6. live updates


def test_a_new_job_appears_without_reload(live_server, samples, open_page):
    page = open_page(live_server)
    expect(page.locator(JOB)).to_have_count(len(samples))
    new = {
        "job_id": "arrived-after-load",
        "completed_at": time.time(),
        "packs": ["LIVE_pack"],
        "model": "liveModel",
        "outputs": [],
    }
    assert live_server.post_job(new).status_code == 201

    expect(card(page, "arrived-after-load")).to_be_visible(timeout=NEW_JOB_TIMEOUT_MS)
    assert shown_job_ids(page)[0] == "arrived-after-load"
    expect(card(page, "arrived-after-load")).to_contain_text("LIVE_pack")
    expect(page.locator(JOB)).to_have_count(len(samples) + 1)


def test_an_image_written_into_a_watched_folder_shows_without_reload(settings, tmp_path, open_page):
    """serve --watch: a user keeps the page open while A1111 writes into its output folder."""
    from PIL.PngImagePlugin import PngInfo

    outputs = tmp_path / "outputs"
    (outputs / "txt2img-images").mkdir(parents=True)
    server = LiveServer(replace(settings, watch=(outputs,), output_root=outputs))
    try:
        page = open_page(server)
        expect(page.locator("#empty")).to_be_visible()
        info = PngInfo()
        info.add_text(
            "parameters",
            "a lighthouse <lora:add-detail-xl:0.5>\nNegative prompt: blurry\n"
            "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x768, Model: juggernautXL",
        )
        Image.new("RGB", (512, 768), (30, 90, 160)).save(outputs / "txt2img-images" / "00042-42.png", pnginfo=info)
        job = page.locator(JOB)
        expect(job).to_have_count(1, timeout=NEW_JOB_TIMEOUT_MS)
        expect(job).to_contain_text("juggernautXL")
        expect(job).to_contain_text("add-detail-xl")
        thumbnail = job.locator("img.thumb")
        expect(thumbnail).to_have_attribute("src", re.compile(r"/outputs/0/thumbnail$"))
        assert thumbnail.evaluate("img => img.decode().then(() => img.naturalWidth)") == 320  # the real image
    finally:
        server.stop()


def test_live_updates_of_a_filtered_view_add_only_newer_jobs(live_server, open_page):
    """In the unrated view, jobs rated elsewhere leave the first page and older unrated jobs move
    up into it: those are not new and stay below, reached by scrolling."""
    for record in generate_records(60, seed=5):
        assert live_server.post_job(record).status_code == 201
    order = [job["job_id"] for job in live_server.http.get(live_server.url + "/api/jobs?limit=500").json()["jobs"]]
    page = open_page(live_server, "/?rated=false")
    expect(page.locator(JOB)).to_have_count(50)

    for job_id in order[:10]:  # rated in another tab
        assert live_server.rate(job_id, 3).status_code == 200
    rated_at_ms = time.time() * 1000

    def is_later_poll(response):
        request = response.request
        return (
            request.method == "GET"
            and "/api/changes?" in request.url
            and "after=" in request.url
            and request.timing["startTime"] > rated_at_ms
        )

    with page.expect_response(is_later_poll, timeout=NEW_JOB_TIMEOUT_MS):
        pass  # the page polled once since the ratings
    assert shown_job_ids(page) == order[:50]

    new = {"job_id": "newest-unrated", "completed_at": time.time() + 60}
    assert live_server.post_job(new).status_code == 201
    expect(card(page, "newest-unrated")).to_be_visible(timeout=NEW_JOB_TIMEOUT_MS)
    assert shown_job_ids(page) == ["newest-unrated", *order[:50]]


# ---------------------------------------------------------------- 7. infinite scroll


def post_without_room_for_the_index(live_server, m, job_id: str) -> None:
    """POST a job while writing the index fails (a full disk: index rows, not the journal), and
    wait for the service to say its index is in trouble."""
    import sqlite3

    def full(conn, batch, *args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    m.setattr(sync, "insert_jobs", full)
    assert live_server.post_job({"job_id": job_id, "completed_at": time.time()}).status_code == 201
    deadline = time.monotonic() + 10
    while live_server.app.extensions["learning_svc"].index_trouble is None and time.monotonic() < deadline:
        time.sleep(0.05)


def test_an_index_that_is_behind_is_said_on_the_page(live_server, samples, open_page, monkeypatch):
    """A full index disk: the job is acknowledged (in the journal) and not indexed; the page says
    why it does not show yet, and once the index can be written the job shows and the banner goes.
    (The state is made for real: /api/health says degraded only while something is behind.)"""

    page = open_page(live_server)
    expect(page.locator("#banner")).to_be_hidden()
    with monkeypatch.context() as m:
        post_without_room_for_the_index(live_server, m, "not-yet")
        page.reload()
        expect(page.locator("#banner")).to_be_visible()
        expect(page.locator("#banner")).to_contain_text("disk is full")
        expect(page.locator("#banner")).to_contain_text("1 recorded job or change will show here")
    live_server.app.extensions["learning_svc"].index_trouble["next_try"] = 0  # try again now, not in 2 s
    expect(card(page, "not-yet")).to_be_visible(timeout=NEW_JOB_TIMEOUT_MS)
    expect(page.locator("#banner")).to_be_hidden(timeout=NEW_JOB_TIMEOUT_MS)


def test_an_empty_list_whose_index_is_behind_does_not_say_no_jobs_yet(live_server, open_page, monkeypatch):
    """A new-user run: under "Not every job is listed yet … will show here once the index catches
    up", the page said "No jobs yet" with the first-run instructions."""
    with monkeypatch.context() as m:
        post_without_room_for_the_index(live_server, m, "not-yet")
        page = open_page(live_server)
        expect(page.locator("#banner")).to_contain_text("1 recorded job or change will show here")
        expect(page.locator("#status")).to_have_text("No jobs yet")
        expect(page.locator("#empty-first")).to_be_hidden()
    live_server.app.extensions["learning_svc"].index_trouble["next_try"] = 0
    expect(card(page, "not-yet")).to_be_visible(timeout=NEW_JOB_TIMEOUT_MS)


def test_infinite_scroll_pages_without_duplicates(live_server, open_page):
    records = list(generate_records(120, seed=11))
    for record in records:
        assert live_server.post_job(record).status_code == 201
    page = open_page(live_server)
    expect(page.locator(JOB)).to_have_count(50)  # the first page only

    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    expect(page.locator(JOB)).not_to_have_count(50)
    assert len(set(shown_job_ids(page))) > 50

    scroll_until_all_loaded(page, 120)
    ids = shown_job_ids(page)
    assert len(ids) == len(set(ids)) == 120
    listing = live_server.http.get(live_server.url + "/api/jobs?limit=500").json()["jobs"]
    assert ids == [job["job_id"] for job in listing]  # same order as the API, nothing skipped
    expect(page.locator("#list-message")).to_be_hidden()


# ---------------------------------------------------------------- 8. record text is text


def test_record_text_is_never_html(live_server, open_page):
    hostile = "<img src=x onerror=alert(1)>"
    record = {
        "job_id": "hostile-1",
        "completed_at": time.time(),
        "packs": [hostile, "<b>bold</b>"],
        "model": "<script>alert(2)</script>",
        "prompt": f"a cat {hostile}",
        "outputs": [],
    }
    assert live_server.post_job(record).status_code == 201
    page = open_page(live_server, "about:blank")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto("/")

    job = card(page, "hostile-1")
    expect(job).to_contain_text(hostile)
    expect(job).to_contain_text("<b>bold</b>")
    expect(job).to_contain_text("<script>alert(2)</script>")
    job.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#details-body")).to_contain_text(f"a cat {hostile}")

    assert page.locator('img[src="x"]').count() == 0
    assert page.locator("#job-list b, #details b, #job-list script, #details script").count() == 0
    assert dialogs == []


# ---------------------------------------------------------------- 9. thumbnails


def test_thumbnails_load_and_a_missing_file_shows_the_placeholder(live_server, open_page):
    write_png(live_server.settings.output_root / "output" / "Pipeline" / "run1" / "txt2img_p01_v01_batch0.png")
    record = {
        "job_id": "with-images",
        "completed_at": time.time(),
        "width": 512,
        "height": 768,
        "outputs": ["output\\Pipeline\\run1\\txt2img_p01_v01_batch0.png", "output/Pipeline/run1/gone.png"],
    }
    assert live_server.post_job(record).status_code == 201

    def thumbnail(n):
        return lambda response: response.url.endswith(f"/api/jobs/with-images/outputs/{n}/thumbnail")

    page = open_page(live_server, "about:blank")
    with page.expect_response(thumbnail(0)) as real, page.expect_response(thumbnail(1)) as missing:
        page.goto("/")

    assert real.value.status == 200
    assert real.value.headers["content-type"] == "image/jpeg"
    assert "x-learning-placeholder" not in real.value.headers
    assert missing.value.status == 200
    assert missing.value.headers["x-learning-placeholder"] == "missing"
    assert missing.value.headers["content-type"] == "image/png"

    thumbs = card(page, "with-images").locator("img.thumb")
    expect(thumbs).to_have_count(2)
    for i in range(2):
        thumbs.nth(i).evaluate("img => img.decode()")  # resolves once loaded and decodable
    natural = thumbs.evaluate_all("imgs => imgs.map((img) => [img.naturalWidth, img.naturalHeight])")
    assert natural[0][0] > 0 and natural[0][1] > natural[0][0]  # the portrait PNG, scaled down
    assert natural[1][0] > 0  # the placeholder image
    expect(thumbs.first).to_have_attribute("alt", re.compile("txt2img_p01_v01_batch0.png"))


def test_a_thumbnail_the_service_is_busy_making_is_asked_for_again(live_server, open_page, monkeypatch):
    """A large image's thumbnail is made one at a time and none waits for it: the service
    answers 503 (Retry-After: 1) while another is made, and the card asks again until it has it."""
    from learning_svc import images

    for n in range(2):
        write_png(live_server.settings.output_root / f"big{n}.png", size=(120, 80))
    record = {"job_id": "big", "completed_at": time.time(), "outputs": ["big0.png", "big1.png"]}
    assert live_server.post_job(record).status_code == 201
    monkeypatch.setattr(images, "LARGE_DECODE_PIXELS", 100)  # both large
    statuses = []
    images._large_decodes.acquire()  # another large image's thumbnail is being made
    try:
        page = open_page(live_server, "about:blank")
        page.on("response", lambda r: r.url.endswith("/thumbnail") and statuses.append(r.status))
        page.goto("/")
        expect(card(page, "big").locator("img.thumb")).to_have_count(2)
        page.wait_for_timeout(2500)  # asked, refused, asked again
        assert statuses.count(503) >= 4 and 200 not in statuses, statuses
    finally:
        images._large_decodes.release()
    thumbs = card(page, "big").locator("img.thumb")
    for i in range(2):
        expect(thumbs.nth(i)).not_to_have_attribute("data-failed", "")
        thumbs.nth(i).evaluate("img => img.decode()")  # resolves once loaded (a failed image rejects)
    assert thumbs.evaluate_all("imgs => imgs.map((img) => img.naturalWidth)") == [120, 120]
    assert statuses.count(200) == 2


# ---------------------------------------------------------------- 10. empty state


def test_empty_state_gives_a_working_curl_command(live_server, open_page):
    page = open_page(live_server)
    expect(page.locator("#empty-first")).to_be_visible()
    # A new-user run: it offered only curl and the demo (which serves elsewhere), not the
    # importer and the watcher the README starts with.
    # where `make run` put it, and the data folder named (a new-user run imported into ./logs/learning)
    data_dir = str(live_server.settings.data_dir.resolve())
    expect(page.locator("#import-command")).to_have_text(
        f".venv/bin/learning-svc import --data-dir {shlex.quote(data_dir)} ~/stable-diffusion-webui/outputs"
    )
    expect(page.locator("#empty-where")).to_have_text(
        f"This service keeps its history in {data_dir}. It watches no folder."
    )
    expect(page.locator("#empty-first")).to_contain_text("--watch")
    expect(page.locator("#empty-first")).to_contain_text("port of its own")
    expect(page.locator(JOB)).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "page-empty-1366x800.png")
    command = page.locator("#curl-command").text_content()
    assert live_server.url + "/api/jobs" in command

    words = shlex.split(command)
    assert words[:3] == ["curl", "-X", "POST"]
    url = words[3]
    header = words[words.index("-H") + 1]
    body = words[words.index("-d") + 1]
    name, value = header.split(": ", 1)
    response = requests.post(url, data=body.encode(), headers={name: value}, timeout=10)
    assert response.status_code == 201, response.text

    job_id = json.loads(body)["job_id"]
    expect(card(page, job_id)).to_be_visible(timeout=NEW_JOB_TIMEOUT_MS)
    expect(page.locator("#empty")).to_be_hidden()
    # The count taken when the page was empty said "all rated" of the first job for ~2 s.
    assert "all rated" not in page.locator("#status").text_content()
    expect(page.locator("#status")).to_have_text("Showing 1 job · 1 unrated left")


def test_the_empty_pages_import_command_brings_images_into_the_served_folder(settings, tmp_path, open_page):
    """A new-user run: the empty page did not say where the service keeps its history, and an
    import run from another folder (or without the --data-dir given to `make run DATA=…`) went
    into another folder's history. The command shown, run as shown, brings the images here."""
    import subprocess
    import sys

    import image_fixtures

    settings = replace(settings, data_dir=tmp_path / "odd 'name' folder")  # quoted for the shell
    server = LiveServer(settings)
    try:
        page = open_page(server)
        expect(page.locator("#import-command")).to_contain_text("--data-dir")  # once /api/health answered
        command = page.locator("#import-command").text_content()
        words = shlex.split(command)
        assert words[:4] == [".venv/bin/learning-svc", "import", "--data-dir", str(settings.data_dir.resolve())]
        images = tmp_path / "my images"
        images.mkdir()
        infotext = image_fixtures.a1111_infotext("a red barn", "blurry", {"Steps": 20, "Seed": 7, "Model": "sdxl"})
        image_fixtures.save_png_text(str(images / "00001-7.png"), {"parameters": infotext})
        program = [sys.executable, "-m", "learning_svc.cli"]
        done = subprocess.run([*program, *words[1:4], str(images)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        expect(page.locator(JOB)).to_have_count(1, timeout=NEW_JOB_TIMEOUT_MS)
        expect(page.locator(JOB)).to_contain_text("00001-7.png")
    finally:
        server.stop()


def test_watched_folders_that_are_away_or_hold_unreadable_files_are_said_on_the_page(settings, tmp_path, open_page):
    """A new-user run: a mistyped --watch folder, or images that could not be read, were only in
    the log and /api/health; the page said "No jobs yet". The empty page lists the folders and
    their state; a banner says what went wrong, at once when the folder's images arrive (it
    lagged the list by a health look, 10 s), and each line dismissed stays away while it holds
    (a folder coming back brought a dismissed problem back)."""
    import shutil

    outputs, away = tmp_path / "outputs", tmp_path / "not-mounted"
    outputs.mkdir()
    (outputs / "broken.png").write_bytes(b"this is not a png at all")
    server = LiveServer(replace(settings, watch=(away, outputs), output_root=outputs, watch_poll=True))

    def watch() -> list[dict]:
        return server.http.get(server.url + "/api/health", timeout=10).json()["watch"]

    try:
        deadline = time.monotonic() + 30
        while not (watch()[0]["state"] == "missing" and watch()[1]["recent_problems"]):
            assert time.monotonic() < deadline, watch()
            time.sleep(0.1)
        page = open_page(server)
        banner = page.locator("#watch-banner")
        expect(banner).to_contain_text(f"The watched folder {away} is not there")
        expect(banner).to_contain_text(f"Not taken in from {outputs}: {outputs / 'broken.png'}: ")
        where = page.locator("#empty-where")
        expect(where).to_contain_text(f"{away} — not there (looked for again every few seconds)")
        expect(where).to_contain_text(f"{outputs} — 0 images taken in; some files could not be read")

        away.mkdir()  # the disk is back, with an image: the banner follows the list, not 10 s later
        Image.new("RGB", (64, 64), (10, 200, 10)).save(away / "fine.png")
        expect(page.locator(JOB)).to_have_count(1, timeout=NEW_JOB_TIMEOUT_MS)
        expect(banner).not_to_contain_text("is not there", timeout=4_000)
        expect(banner).to_contain_text("broken.png")

        page.locator("#watch-dismiss").click()
        expect(banner).to_be_hidden()
        shutil.rmtree(away)  # away again: said again, and only that (broken.png stays dismissed)
        expect(banner).to_have_text(
            re.compile(rf"^\s*The watched folder {re.escape(str(away))} is not there"), timeout=20_000
        )
        expect(banner).not_to_contain_text("broken.png")
        page.locator("#watch-dismiss").click()
        away.mkdir()
        (outputs / "also-broken.png").write_bytes(b"nor is this")  # something new goes wrong: said
        expect(banner).to_contain_text("also-broken.png", timeout=20_000)
        expect(banner).not_to_contain_text("is not there")
    finally:
        server.stop()


def test_the_import_command_keeps_a_selection_through_health_looks_and_copies(live_server, open_page):
    """A code review: the empty page rewrote the import command at every health look (10 s),
    undoing a selection made to copy it; and it had no Copy button, as the curl command has."""
    page = open_page(live_server)
    expect(page.locator("#import-command")).to_contain_text("--data-dir")
    command = page.locator("#import-command").text_content()
    page.evaluate("getSelection().selectAllChildren(document.getElementById('import-command'))")
    with page.expect_response(lambda response: "/api/health" in response.url, timeout=15_000):
        pass  # the next look (every 10 s)
    page.wait_for_timeout(300)
    assert page.evaluate("getSelection().toString()") == command
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.locator("#copy-import").click()
    expect(page.locator("#copy-import")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == command


def test_the_unrated_left_stays_in_the_status_when_rated_jobs_stay_on_the_page(live_server, samples, open_page):
    """Jobs rated in "Unrated only" stay on the page, out of the count: a check that took a count
    below the jobs shown for a stale one dropped "N unrated left" until the list was loaded again."""
    page = open_page(live_server, "/?rated=false")
    expect(page.locator(JOB)).to_have_count(len(samples))
    page.keyboard.press("j")
    page.keyboard.press("5")
    page.keyboard.press("4")
    wait_for_rating_events(live_server, 2)
    left = len(samples) - 2
    expect(page.locator("#status")).to_have_text(f"Showing {len(samples)} jobs · {left} unrated left")
    for record in samples:  # the rest rated elsewhere: "Unrated only" is done, and says so
        url = f"{live_server.url}/api/jobs/{record['job_id']}/rating"
        assert live_server.http.put(url, json={"rating": 3}).status_code == 200
    expect(page.locator("#status")).to_have_text(f"Showing {len(samples)} jobs · all rated")


def test_an_open_page_asks_what_changed_every_second(live_server, open_page):
    """A watched folder's image is listed ~0.5 s after its last write; the page asked every 3 s,
    so it showed up to 3.5 s later (README: within about two)."""
    page = open_page(live_server)
    expect(page.locator("#empty-first")).to_be_visible()
    asked = []
    page.on("request", lambda request: asked.append(request.url) if "/api/changes" in request.url else None)
    # 5.5 s: asking every 3 s gives at most 2 in any such window; every second gives 5 (3 at
    # least on a machine busy with other browsers: 3.5 s gave only 2 once, the answers slowed)
    page.wait_for_timeout(5_500)
    assert len(asked) >= 3, asked


# ---------------------------------------------------------------- 11. filters live in the URL


def test_the_filter_bar_takes_two_rows_at_1280_and_a_chosen_value_moves_nothing(live_server, samples, open_page):
    """A new-user run: the filter bar took three rows of a 1366 x 768 laptop (every picker 8rem
    wide). Each picker is as wide as its name now, and shows a long value cut, in the same width."""

    def rows(page) -> list[int]:
        tops = page.eval_on_selector_all(
            "#filters > *",
            "els => els.filter((e) => e.offsetParent).map((e) => Math.round(e.getBoundingClientRect().top))",
        )
        return sorted(set(tops))

    def boxes(page) -> list[list[float]]:
        return page.eval_on_selector_all(
            "#filters button.facet",
            "els => els.map((e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width]; })",
        )

    page = open_page(live_server, viewport={"width": 1280, "height": 800})  # and 1280 (3 rows with wider gaps)
    expect(page.locator(JOB)).to_have_count(len(samples))
    assert len(rows(page)) == 2, rows(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    assert len(rows(page)) == 2, rows(page)
    cut = page.eval_on_selector_all(  # a picker's name is never cut (the value span fills the button)
        "#filters button.facet .facet-value",
        "els => els.filter((e) => e.scrollWidth > e.clientWidth || e.clientWidth === 0).map((e) => e.textContent)",
    )
    assert cut == [], cut
    before = boxes(page)
    pack = max((p for record in samples for p in record.get("packs") or ()), key=len)
    page.goto(f"/?pack={pack}")
    expect(page.locator("#filter-pack")).to_have_text(pack)
    expect(page.locator("#filter-pack")).to_have_class(re.compile("active"))
    assert boxes(page) == before  # the chosen value is cut in the picker's own width
    assert page.eval_on_selector("#filter-pack .facet-value", "e => e.scrollWidth > e.clientWidth")  # it is long
    expect(page.locator("#filter-pack")).to_have_attribute("title", pack)  # and said whole in its tooltip
    # two chosen: the "+1" is never the part cut off (a new-user run: "juggern…", the +1 gone)
    other = next(p for record in samples for p in record.get("packs") or () if p != pack)
    page.goto(f"/?pack={pack}&pack={other}")
    expect(page.locator("#filter-pack")).to_have_text(f"{pack} +1")
    expect(page.locator("#filter-pack")).to_have_attribute("title", f"{pack}, {other}")
    more, button = page.locator("#filter-pack").evaluate(
        "b => [b.querySelector('.facet-more'), b].map((e) => [e.getBoundingClientRect().left, e.getBoundingClientRect().right])"
    )
    assert button[0] < more[0] and more[1] <= button[1], (more, button)
    assert boxes(page) == before


def test_a_link_spelling_a_value_otherwise_ticks_the_value_the_picker_lists(live_server, samples, open_page):
    """`/?sampler=dpmpp_2m` listed the DPM++ 2M jobs, but the picker showed a ticked
    "dpmpp_2m" with 0 jobs above an unticked "DPM++ 2M" with their count."""
    facets = live_server.http.get(live_server.url + "/api/facets").json()["facets"]["sampler"]
    count = next(bucket["count"] for bucket in facets if bucket["value"] == "DPM++ 2M")
    page = open_page(live_server, "/?sampler=dpmpp_2m&sampler=DPM%2B%2B+2M&sort=rating")
    expect(page.locator(JOB)).to_have_count(count)
    expect(page).to_have_url(re.compile(r"sampler=DPM%2B%2B\+2M&sort=rating$"))  # one value, as listed
    expect(page.locator("#filter-sampler")).to_have_text("DPM++ 2M")
    page.locator("#filter-sampler").click()
    ticked = page.locator("#picker-sampler .picker-values label:has(input:checked)")
    expect(ticked).to_have_count(1)
    expect(ticked).to_have_attribute("data-value", "DPM++ 2M")
    expect(ticked.locator(".picker-count")).to_have_text(str(count))
    expect(page.locator("#picker-sampler .picker-values label", has_text="dpmpp_2m")).to_have_count(0)


def test_a_link_to_a_sampler_named_with_its_scheduler_becomes_both_pickers_values(live_server, open_page):
    """`/?sampler=DPM++ 2M Karras` filters DPM++ 2M jobs with scheduler Karras: the address kept it
    as written, the picker showed it ticked with 0 jobs, and ticking another sampler made a filter
    the service refuses (a sampler with a scheduler, or another without): no jobs, an error."""
    jobs = {
        "a": ("DPM++ 2M Karras", None),
        "b": ("DPM++ 2M", "karras"),
        "c": ("Euler a", "Karras"),
        "d": ("DPM++ 2M", "Normal"),
    }
    for n, (job_id, (sampler, scheduler)) in enumerate(jobs.items()):
        body = {"job_id": job_id, "completed_at": 1_764_000_000 + n, "sampler": sampler}
        assert live_server.post_job({**body, "scheduler": scheduler} if scheduler else body).status_code == 201
    page = open_page(live_server, "/?sampler=DPM%2B%2B+2M+Karras")
    expect(page).to_have_url(re.compile(r"\?sampler=DPM%2B%2B\+2M&scheduler=Karras$"))
    expect(page.locator(JOB)).to_have_count(2)  # a and b
    expect(page.locator("#filter-scheduler")).to_have_text("Karras")
    page.locator("#filter-sampler").click()
    ticked = page.locator("#picker-sampler .picker-values label:has(input:checked)")
    expect(ticked).to_have_count(1)
    expect(ticked).to_have_attribute("data-value", "DPM++ 2M")
    page.keyboard.press("Escape")
    pick(page, "sampler", "Euler a")
    expect(page.locator(JOB)).to_have_count(3)  # a, b and c: DPM++ 2M or Euler a, with Karras
    expect(page.get_by_text("cannot be listed")).to_have_count(0)
    expect(page.locator("#toast")).to_have_text("")


def test_a_filter_value_named_like_an_object_property_breaks_no_picker(live_server, samples, open_page):
    """`/?sampler=__proto__` read Object.prototype as the value's spelling: the pickers stayed
    empty and a toast said "Could not load filter values"."""
    page = open_page(live_server, "/?sampler=__proto__")
    expect(page.locator("#empty-filtered")).to_be_visible()
    expect(picker_values(page, "sampler")).not_to_have_count(0)  # counted without its own filter: every sampler
    expect(page.locator("#filter-sampler")).to_have_text("__proto__")
    expect(page.locator("#toast")).to_have_text("")  # no "Could not load filter values"


def test_filters_are_kept_in_the_url(live_server, samples, open_page):
    page = open_page(live_server)
    expect(picker_values(page, "sampler")).not_to_have_count(0)  # the facet values arrived
    facets = live_server.http.get(live_server.url + "/api/facets").json()["facets"]["sampler"]
    chosen = next(bucket for bucket in facets if 1 < bucket["count"] < len(samples))
    pick(page, "sampler", chosen["value"])

    expect(page).to_have_url(re.compile(r"[?&]sampler="))
    assert parse_qs(urlsplit(page.url).query) == {"sampler": [chosen["value"]]}
    expect(page.locator(JOB)).to_have_count(chosen["count"])

    filtered = open_page(live_server, page.url.removeprefix(live_server.url))
    expect(filtered.locator("#filter-sampler")).to_have_text(chosen["value"])
    expect(picker_value(filtered, "sampler", chosen["value"])).to_be_checked()
    jobs = filtered.locator(JOB)
    expect(jobs).to_have_count(chosen["count"])
    for text in jobs.locator(".facts").all_inner_texts():
        assert re.search(rf"Sampler\s+{re.escape(chosen['value'])}( ·|$)", text, re.M), text

    filtered.get_by_role("button", name="Clear filters").first.click()
    expect(filtered).to_have_url(live_server.url + "/")
    expect(jobs).to_have_count(len(samples))


def test_pickers_come_from_the_field_registry(live_server, samples, open_page):
    """One picker per field of GET /api/fields, in its order; the new VAE and steps pickers filter."""
    page = open_page(live_server)
    fields = live_server.http.get(live_server.url + "/api/fields").json()["fields"]
    pickers = page.locator("#filters .picker")
    expect(pickers).to_have_count(len([f for f in fields if f["facet"]]))
    assert pickers.evaluate_all("pickers => pickers.map((p) => p.dataset.field)") == [
        f["name"] for f in fields if f["facet"]
    ]
    for name in ("vae", "steps"):
        expect(picker_values(page, name)).not_to_have_count(0)
        facet = live_server.http.get(live_server.url + "/api/facets").json()["facets"][name]
        chosen = min(facet, key=lambda bucket: bucket["count"])
        pick(page, name, str(chosen["value"]))
        expect(page).to_have_url(re.compile(rf"[?&]{name}="))
        expect(page.locator(JOB)).to_have_count(chosen["count"])
        page.get_by_role("button", name="Clear filters").first.click()
        expect(page.locator(JOB)).to_have_count(len(samples))


def test_a_picker_takes_several_values_of_its_field(live_server, samples, open_page):
    """A link with `?sampler=a&sampler=b` listed the jobs of both, but the picker (a single
    select) showed only `a`, and picking in it dropped `b`. A picker now holds several values:
    any of them matches, and each can be unticked on its own."""
    facets = live_server.http.get(live_server.url + "/api/facets").json()["facets"]["sampler"]
    first, second = sorted((b for b in facets if b["count"] < len(samples)), key=lambda b: -b["count"])[:2]
    both = first["count"] + second["count"]
    page = open_page(live_server, "/?" + urlencode([("sampler", first["value"]), ("sampler", second["value"])]))
    expect(page.locator(JOB)).to_have_count(both)
    button = page.locator("#filter-sampler")
    expect(button).to_have_text(f"{first['value']} +1")
    expect(button).to_have_attribute("aria-label", f"Samplers: {first['value']}, {second['value']}")
    button.click()
    expect(page.locator("#picker-sampler")).to_be_visible()
    expect(picker_value(page, "sampler", first["value"])).to_be_checked()
    expect(picker_value(page, "sampler", second["value"])).to_be_checked()
    expect(page.locator(f"#picker-sampler label[data-value='{first['value']}'] .picker-count")).to_have_text(
        str(first["count"])
    )  # counted without the field's own filter: every value can still be added

    picker_value(page, "sampler", first["value"]).uncheck()  # the list stays open for the next one
    expect(page.locator(JOB)).to_have_count(second["count"])
    assert parse_qs(urlsplit(page.url).query) == {"sampler": [second["value"]]}
    expect(page.locator("#picker-sampler")).to_be_visible()
    picker_value(page, "sampler", first["value"]).check()
    expect(page.locator(JOB)).to_have_count(both)
    assert parse_qs(urlsplit(page.url).query) == {"sampler": [second["value"], first["value"]]}

    find = page.locator("#picker-sampler .picker-find")  # a long list: typing narrows it
    find.fill(second["value"][:4])
    expect(page.locator("#picker-sampler .picker-values label:visible")).not_to_have_count(0)
    for label in page.locator("#picker-sampler .picker-values label:visible").all():
        assert second["value"][:4].lower() in label.get_attribute("data-value").lower()
    page.keyboard.press("Escape")  # closes the list only
    expect(page.locator("#picker-sampler")).to_be_hidden()
    expect(button).to_be_focused()

    page.go_back()  # each tick was a step in the history
    expect(page.locator(JOB)).to_have_count(second["count"])
    expect(button).to_have_text(second["value"])
    button.click()
    page.get_by_role("button", name="Any sampler").click()
    expect(page.locator(JOB)).to_have_count(len(samples))
    expect(button).not_to_have_class(re.compile(r"\bactive\b"))
    page.locator("h1").click()  # a click elsewhere closes the list
    expect(page.locator("#picker-sampler")).to_be_hidden()


def test_typing_in_an_open_picker_finds_values_and_runs_no_shortcut(live_server, samples, open_page):
    """Opening a picker put the focus on its first box, where keys were the list's shortcuts:
    typing "eul" to find Euler undid the last rating (`u`), and `x` rejected the selected jobs."""
    page = open_page(live_server)
    expect(page.locator(JOB)).to_have_count(len(samples))
    first = samples[0]["job_id"]
    page.keyboard.press("j")
    expect(card(page, first)).to_be_focused()
    page.keyboard.press("5")
    wait_for_rating_events(live_server, 1)
    page.keyboard.press(" ")  # selected
    page.locator("#filter-sampler").click()
    expect(page.locator("#picker-sampler .picker-values input").first).to_be_focused()
    page.keyboard.type("eulx")
    find = page.locator("#picker-sampler .picker-find")
    expect(find).to_have_value("eulx")
    expect(find).to_be_focused()
    page.keyboard.press("Backspace")
    expect(page.locator("#picker-sampler .picker-values label:visible")).not_to_have_count(0)
    for label in page.locator("#picker-sampler .picker-values label:visible").all():
        assert "eul" in label.get_attribute("data-value").lower()
    page.keyboard.press("Escape")
    time.sleep(0.5)  # an undo or a flag would have been sent by now
    assert [(e["job_id"], e["rating"]) for e in rating_events(live_server)] == [(first, 5)]
    job = live_server.http.get(live_server.url + f"/api/jobs/{first}").json()
    assert job["rating"] == 5 and not (job["review"] or {}).get("flag"), job["review"]


def test_date_range_picks_whole_days_in_the_browsers_time_zone(live_server, open_page):
    """The day pickers keep days in the URL and ask the API for those days' bounds in the
    user's time zone: in Berlin (UTC+1) the 24th runs from 23:00 UTC on the 23rd."""
    utc = {
        "late-23rd-utc": "2025-11-23T23:30:00Z",
        "early-24th-utc": "2025-11-24T00:30:00Z",
        "late-24th-utc": "2025-11-24T23:30:00Z",
        "early-25th-utc": "2025-11-25T00:30:00Z",
    }
    for job_id, completed_at in utc.items():
        assert live_server.post_job({"job_id": job_id, "completed_at": completed_at}).status_code == 201
    page = open_page(live_server, timezone="Europe/Berlin")
    expect(page.locator(JOB)).to_have_count(4)
    page.locator("#filter-since").fill("2025-11-24")
    page.locator("#filter-until").fill("2025-11-24")
    page.locator("#filter-until").dispatch_event("change")
    expect(page).to_have_url(re.compile(r"since=2025-11-24&until=2025-11-24$"))
    expect(page.locator(JOB)).to_have_count(2)
    assert page.locator(JOB).evaluate_all("cards => cards.map((c) => c.dataset.jobId)") == [
        "early-24th-utc",
        "late-23rd-utc",
    ]  # local 01:30 and 00:30 on the 24th, newest first
    export = page.locator("#export-jsonl").get_attribute("href")
    assert parse_qs(urlsplit(export).query)["since"] == ["2025-11-23T23:00:00.000Z"]
    assert parse_qs(urlsplit(export).query)["until"] == ["2025-11-24T22:59:59.999Z"]

    reopened = open_page(live_server, page.url.removeprefix(live_server.url), timezone="Europe/Berlin")
    expect(reopened.locator("#filter-since")).to_have_value("2025-11-24")
    expect(reopened.locator(JOB)).to_have_count(2)


def test_a_range_upside_down_is_said_under_the_empty_list(live_server, open_page):
    """A new-user run: an end day before the start day, or Rating min 4 with max 2, showed only
    "No jobs match these filters", which looks like an honest empty result."""
    for i in range(3):
        assert live_server.post_job({"job_id": f"j{i}", "completed_at": f"2025-11-2{i}T12:00:00Z"}).status_code == 201
    page = open_page(live_server, "/?since=2025-11-22&until=2025-11-20")
    expect(page.locator("#empty-filtered")).to_be_visible()
    expect(page.locator("#empty-why")).to_have_text("The date range is upside down: its end is before its start.")
    page.goto("/?rating_min=4&rating_max=2")
    expect(page.locator("#empty-why")).to_have_text("The rating range is upside down: at least 4, at most 2.")
    page.goto("/?rating_min=4")  # empty for the honest reason: nothing is rated
    expect(page.locator("#empty-filtered")).to_be_visible()
    expect(page.locator("#empty-why")).to_be_hidden()
    page.goto("/?since=2025-11-21&until=2025-11-21")
    expect(page.locator(JOB)).to_have_count(1)
    expect(page.locator("#empty")).to_be_hidden()


def test_an_export_comes_in_the_order_the_page_shows(live_server, samples, open_page):
    """The export links left `sort` out: an export of a best-first view came newest first."""
    for record, rating in zip(samples[-3:], (5, 3, 4)):  # the oldest three, rated
        url = f"{live_server.url}/api/jobs/{record['job_id']}/rating"
        assert live_server.http.put(url, json={"rating": rating}).status_code == 200
    page = open_page(live_server, "/?rated=true&sort=-rating")
    expect(page.locator(JOB)).to_have_count(3)
    shown = page.locator(JOB).evaluate_all("cards => cards.map((c) => c.dataset.jobId)")
    for link in ("#export-jsonl", "#export-csv"):
        href = page.locator(link).get_attribute("href")
        assert parse_qs(urlsplit(href).query)["sort"] == ["-rating"], href
    lines = live_server.http.get(
        live_server.url + page.locator("#export-jsonl").get_attribute("href")
    ).text.splitlines()
    assert [json.loads(line)["job_id"] for line in lines] == shown


def test_pickers_say_when_their_counts_come_from_a_sample(live_server, samples, open_page, monkeypatch):
    """Under a filter matching more jobs than the server counts, each picker says so."""
    monkeypatch.setattr(live_server.app.extensions["learning_svc"], "thresholds", Thresholds(facet_sample=3))
    facets = live_server.http.get(live_server.url + "/api/facets").json()["facets"]["sampler"]
    common = next(bucket for bucket in facets if bucket["count"] > 3)
    page = open_page(live_server, "/?" + urlencode({"sampler": common["value"]}))
    expect(page.locator("#filter-model")).to_have_attribute("title", "Counts over the newest 3 matching jobs")
    # its own facet ignores its filter: no such note, only the value chosen
    expect(page.locator("#filter-sampler")).to_have_attribute("title", common["value"])


# ---------------------------------------------------------------- 64-bit seeds


def test_a_64_bit_seed_is_shown_and_copied_with_every_digit(live_server, open_page):
    """Fooocus and ComfyUI write seeds past 2**53, which JSON.parse rounds: the viewer showed and
    copied 6952411511246973000 for 6952411511246973023 (an image that cannot be made again)."""
    seed = 6952411511246973023
    record = {"job_id": "big-seed", "completed_at": time.time(), "seed": seed, "extra": {"subseed": -seed}}
    assert live_server.post_job(record).status_code == 201
    page = open_page(live_server)
    card(page, "big-seed").locator(".job-body").click()
    details = page.locator("#details")
    expect(details).to_contain_text(str(seed))
    assert str(seed)[:-2] + "00" not in details.inner_text()
    parsed = page.evaluate("""async () => {
        const { parseJson } = await import('/static/api.js');
        return parseJson(String.raw`{"a": 6952411511246973023, "b": "x 6952411511246973023 \\" 12345678901234567",
            "c": [-18446744073709551615, 12, 1.5e300, 9007199254740991, 0.12345678901234567890]}`);
    }""")
    assert parsed == {
        "a": "6952411511246973023",
        "b": 'x 6952411511246973023 " 12345678901234567',  # digits in a string, after an escaped quote
        "c": ["-18446744073709551615", 12, 1.5e300, 9007199254740991, 0.12345678901234568],
    }


# ---------------------------------------------------------------- token from the URL fragment


def test_token_from_the_fragment_is_kept_and_sent(settings, open_page):
    server = LiveServer(replace(settings, token="s3cret-token"))
    try:
        assert server.post_job({"job_id": "needs-token", "completed_at": time.time()}).status_code == 401
        server.http.headers["Authorization"] = "Bearer s3cret-token"
        assert server.post_job({"job_id": "needs-token", "completed_at": time.time()}).status_code == 201

        page = open_page(server, "/#token=s3cret-token")
        expect(page).to_have_url(server.url + "/")  # the token leaves the address bar at once
        assert page.evaluate("localStorage.getItem('learning-svc-token')") == "s3cret-token"
        page.reload()  # later visits use the stored token
        with page.expect_response(is_rating_put("needs-token")) as put:
            star(card(page, "needs-token"), "5 stars").click()
        assert put.value.status == 200
        assert put.value.request.headers["authorization"] == "Bearer s3cret-token"
        assert [e["rating"] for e in rating_events(server)] == [5]

        # Without a stored token, the first refused write asks for it once and retries.
        fresh = open_page(server)
        asked = []
        fresh.on("dialog", lambda dialog: (asked.append(dialog.type), dialog.accept("s3cret-token")))
        with fresh.expect_response(lambda r: is_rating_put("needs-token")(r) and r.status == 200):
            star(card(fresh, "needs-token"), "3 stars").click()
        assert asked == ["prompt"]
        assert [e["rating"] for e in rating_events(server)] == [5, 3]
        assert fresh.evaluate("localStorage.getItem('learning-svc-token')") == "s3cret-token"

        # The fragment typed into the address of a page already open (no load): taken too.
        # Before, it stayed in the address bar and the next write asked for the token.
        later = open_page(server)
        later.on("dialog", lambda dialog: (asked.append(dialog.type), dialog.dismiss()))
        later.evaluate("location.hash = '#token=s3cret-token'")
        expect(later).to_have_url(server.url + "/")
        with later.expect_response(is_rating_put("needs-token")) as put:
            star(card(later, "needs-token"), "1 star").click()
        assert put.value.status == 200 and asked == ["prompt"]
    finally:
        server.stop()


# ---------------------------------------------------------------- 12. screenshots and layout


def test_screenshots_and_layout(demo_server, open_page):
    """Writes test-artifacts/page-*.png for a person to look at, and checks what can be checked."""
    ARTIFACTS.mkdir(exist_ok=True)
    for viewport in (DESKTOP, SMALL_LAPTOP):
        size = f"{viewport['width']}x{viewport['height']}"
        page = open_page(demo_server, "/", viewport)
        jobs = page.locator(JOB)
        expect(jobs).to_have_count(50)
        page.evaluate("""Promise.all([...document.images]
            .filter((img) => img.getBoundingClientRect().top < innerHeight)
            .map((img) => img.decode().catch(() => null)))""")
        page.keyboard.press("j")
        page.keyboard.press("j")
        focused = jobs.nth(1)
        expect(focused).to_be_focused()

        # Nothing overlaps in the top bar, no sideways scrolling, and a card's parts stay inside it.
        assert overlapping(page, ".title-row > *, .filters > *") == [], size
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), size
        card_box = focused.bounding_box()
        for part in (".job-thumbs", ".job-when", ".packs", ".facts", ".job-rating"):
            box = focused.locator(part).bounding_box()
            assert card_box["x"] <= box["x"] and box["x"] + box["width"] <= card_box["x"] + card_box["width"] + 0.5, (
                part
            )
        assert overlapping(page, f"{JOB}:nth-child(2) .job-body > *") == [], size
        # Dense enough to review quickly: several jobs side by side.
        columns = page.evaluate(
            "getComputedStyle(document.getElementById('job-list')).gridTemplateColumns.split(' ').length"
        )
        assert columns >= 3, size
        page.screenshot(path=ARTIFACTS / f"page-list-{size}.png", animations="disabled")
        if viewport is DESKTOP:  # the whole first page of jobs, every thumbnail loaded
            page.locator("img.thumb").evaluate_all("""imgs => Promise.all(imgs.map((img) => {
                img.loading = 'eager';
                return img.decode().catch(() => null);
            }))""")
            page.screenshot(path=ARTIFACTS / f"page-list-full-{size}.png", full_page=True, animations="disabled")

        page.keyboard.press("Enter")
        expect(page.locator("#details-summary")).to_be_visible()
        page.locator("#details .outputs img").first.evaluate("img => img.decode()")
        assert overlapping(page, ".details-header > *") == [], size
        page.screenshot(path=ARTIFACTS / f"page-details-{size}.png", animations="disabled")
        page.keyboard.press("Escape")

        page.keyboard.press("?")
        expect(page.locator("#help")).to_be_visible()
        page.screenshot(path=ARTIFACTS / f"page-help-{size}.png", animations="disabled")
        page.keyboard.press("Escape")

        page.goto("/?rated=false")
        expect(jobs.first).to_be_visible()
        page.keyboard.press("j")
        with page.expect_response(lambda r: r.request.method == "PUT"):
            page.keyboard.press("4")
        page.screenshot(path=ARTIFACTS / f"page-unrated-{size}.png", animations="disabled")
        page.context.close()


@pytest.mark.parametrize("width", [720, 800, 900, 1024])
def test_the_top_bar_fits_between_a_phone_and_a_desktop(demo_server, open_page, width):
    """Between 700 and 1,100 px the search box shrank to 21 px (typed text invisible) and the
    bar ran past the window: the page scrolled sideways and `?` and S/M/L were off-screen."""
    page = open_page(demo_server, "/?rated=false", {"width": width, "height": 700})  # a filter on: Clear filters shows
    expect(page.locator(JOB).first).to_be_visible()
    expect(page.locator("#clear-filters-bar")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), width
    assert page.locator("#filter-q").bounding_box()["width"] >= 200, width
    for control in ("#help-button", "#sort", "#filter-q"):
        box = page.locator(control).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (control, box)
    assert overlapping(page, ".title-row > *") == [], width
    page.context.close()


def test_a_picker_at_the_right_edge_opens_its_list_within_the_window(live_server, samples, open_page):
    page = open_page(live_server)
    fields = live_server.http.get(live_server.url + "/api/fields").json()["fields"]
    buttons = page.locator("#filters button.facet")
    expect(buttons).to_have_count(len([f for f in fields if f["facet"]]))  # the pickers are built
    rightmost = max(buttons.all(), key=lambda b: b.bounding_box()["x"])
    rightmost.click()
    panel = page.locator(f"#{rightmost.get_attribute('aria-controls')}")
    expect(panel).to_be_visible()
    box = panel.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"], box


def test_an_image_rating_filter_in_the_address_is_kept(live_server, open_page):
    """A new-user run: `/?image_rating_min=4` (a listing parameter the README gives) showed
    every job, the parameter dropped without a word."""
    for n in range(3):
        record = {"job_id": f"img{n}", "completed_at": 1_764_000_000 + n, "outputs": [f"img{n}/a.png", f"img{n}/b.png"]}
        assert live_server.post_job(record).status_code == 201
    assert requests.put(live_server.url + "/api/jobs/img1/outputs/1/rating", json={"rating": 5}, timeout=10).ok
    page = open_page(live_server, "/?image_rating_min=4")
    expect(page.locator(JOB)).to_have_count(1)
    expect(page.locator('[data-job-id="img1"]')).to_be_visible()
    expect(page.locator("#clear-filters-bar")).to_be_visible()
    assert "image_rating_min=4" in page.url
