"""The browser side of the page tests: Debian's Chromium driven by Playwright (which never
downloads a browser here), a fresh context per test, and helpers that read the page.

The fixtures are registered in conftest.py; test modules import the helpers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import orjson
import pytest
from PIL import Image

from learning_svc.demo import load_demo

from conftest import LiveServer, sample_records

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
from playwright.sync_api import (  # noqa: E402
    Page,
    expect,  # noqa: E402
    sync_playwright,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DESKTOP = {"width": 1366, "height": 800}
SMALL_LAPTOP = {"width": 1024, "height": 768}
JOB = "[data-job-id]"
NEW_JOB_TIMEOUT_MS = 10_000  # the page polls every few seconds


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the page tests need Debian's Chromium; `make test` installs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageProblems:
    """Uncaught exceptions and console errors (e.g. CSP violations) of one page."""

    def __init__(self, page: Page):
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message) -> None:
        # A failed request is logged by Chromium itself; some tests make requests fail on purpose.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)


@pytest.fixture
def open_page(browser):
    """open_page(server, path="/", viewport=DESKTOP, timezone=None) -> a page of a fresh context, loaded."""
    contexts, problems = [], []

    def open_(server: LiveServer, path: str = "/", viewport: dict = DESKTOP, timezone: str | None = None) -> Page:
        context = browser.new_context(viewport=viewport, base_url=server.url, timezone_id=timezone)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        problems.append(PageProblems(page))
        page.goto(path)
        return page

    yield open_
    for context in contexts:
        context.close()
    errors = [error for p in problems for error in p.errors]
    assert not errors, f"the page logged errors: {errors}"


@pytest.fixture
def samples(live_server) -> list[dict]:
    """The 42 sample jobs, posted to the live server; returned newest first."""
    records = sample_records()
    for record in records:
        assert live_server.post_job(record).status_code == 201
    listing = live_server.http.get(live_server.url + "/api/jobs?limit=500").json()["jobs"]
    order = {job["job_id"]: i for i, job in enumerate(listing)}
    return sorted(records, key=lambda record: order[record["job_id"]])


@pytest.fixture
def demo_server(settings):
    """A server over `learning-svc demo` data: generated jobs with real images (one missing)."""
    load_demo(settings, count=60)
    server = LiveServer(settings)
    yield server
    server.stop()


# ---------------------------------------------------------------- helpers


def card(page: Page, job_id: str):
    return page.locator(f"[data-job-id={json.dumps(job_id)}]")


def star(scope, label: str):
    return scope.get_by_role("radio", name=label, exact=True)


def picker_value(page: Page, field: str, value: str):
    """The checkbox of one value in a field's picker."""
    return page.locator(f"#picker-{field} .picker-values input[value={json.dumps(value)}]")


def picker_values(page: Page, field: str):
    return page.locator(f"#picker-{field} .picker-values input")


def pick(page: Page, field: str, *values: str, untick: bool = False) -> None:
    """Tick (or untick) values in a field's picker, opening its list, and close it again."""
    button = page.locator(f"#filter-{field}")
    if button.get_attribute("aria-expanded") != "true":
        button.click()
    for value in values:
        box = picker_value(page, field, value)
        box.uncheck() if untick else box.check()
    page.keyboard.press("Escape")
    expect(page.locator(f"#picker-{field}")).to_be_hidden()


def focused_job_id(page: Page) -> str | None:
    return page.evaluate("document.activeElement?.closest('[data-job-id]')?.dataset.jobId ?? null")


def shown_job_ids(page: Page) -> list[str]:
    return page.locator(JOB).evaluate_all("cards => cards.map((card) => card.dataset.jobId)")


def ratings_file(server: LiveServer) -> list[dict]:
    """The complete lines of the ratings JSONL (one may be being appended right now)."""
    path = server.settings.ratings_path
    if not path.exists():
        return []
    *complete, _unterminated = path.read_bytes().split(b"\n")
    return [orjson.loads(line) for line in complete]


def rating_events(server: LiveServer) -> list[dict]:
    """The job rating events of the ratings JSONL (learning_rating_v2)."""
    return [line for line in ratings_file(server) if line["schema"] == "learning_rating_v2"]


def review_events(server: LiveServer) -> list[dict]:
    """The review events of the ratings JSONL (learning_review_v1: flags, tags, image ratings)."""
    return [line for line in ratings_file(server) if line["schema"] == "learning_review_v1"]


def wait_for_rating_events(
    server: LiveServer, count: int, timeout: float = 10.0, page: Page | None = None
) -> list[dict]:
    """The rating events once `count` are in the JSONL (each is written before its PUT answers).
    With the `page`, a shortfall also says what the page shows: its error lines, its queue of
    unsent ratings and whether it thinks the service is offline."""
    deadline = time.monotonic() + timeout
    while len(events := rating_events(server)) < count:
        if time.monotonic() >= deadline:
            seen = ""
            if page is not None:
                errors = [text for text in page.locator(".job-error").all_text_contents() if text]
                unsent = page.evaluate("localStorage.getItem('learning-svc-unsent-ratings')")
                offline = page.locator("#offline").is_visible()
                seen = f"; the page shows errors {errors}, unsent {unsent}, offline banner {offline}"
            raise AssertionError(f"{len(events)} rating events in the JSONL, expected {count}{seen}")
        time.sleep(0.05)
    return events


def is_rating_put(job_id: str):
    return lambda response: response.request.method == "PUT" and response.url.endswith(f"/api/jobs/{job_id}/rating")


def scroll_until_all_loaded(page: Page, expected: int) -> None:
    """Scroll to the bottom until `expected` jobs are shown; every scroll must load more."""
    jobs = page.locator(JOB)
    while (shown := jobs.count()) < expected:
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        expect(jobs).not_to_have_count(shown)


def overlapping(page: Page, selector: str) -> list[tuple[str, str]]:
    """Pairs of visible elements matching `selector` whose boxes intersect."""
    return page.evaluate(
        """(selector) => {
        const boxes = [...document.querySelectorAll(selector)]
          .filter((element) => element.getClientRects().length)
          .map((element) => [element.id || element.className || element.tagName, element.getBoundingClientRect()]);
        const pairs = [];
        boxes.forEach(([a, p], i) => boxes.slice(i + 1).forEach(([b, q]) => {
          if (p.left < q.right - 0.5 && q.left < p.right - 0.5 && p.top < q.bottom - 0.5 && q.top < p.bottom - 0.5) {
            pairs.push([a, b]);
          }
        }));
        return pairs;
    }""",
        selector,
    )


def write_png(path: Path, size=(512, 768), color=(200, 80, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "PNG")


class HeldPages:
    """The list's later pages (`cursor=` requests) held until release(): moving on past the
    loaded jobs waits for them."""

    def __init__(self, page: Page):
        self.held, self.released = [], False
        page.route(lambda url: "cursor=" in url, self._route)

    def _route(self, route) -> None:
        if self.released:
            route.continue_()
        else:
            self.held.append(route)

    def release(self) -> None:
        self.released = True
        for route in self.held:
            route.continue_()
