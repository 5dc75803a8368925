"""Accessibility: axe-core (the npm package, pinned in package-lock.json, loaded into the page
by the test: no CDN) reports no violation on the list, the viewer, compare and every dialog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from test_page_review import image_jobs

from pages import JOB, card

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: `make axe` (part of `make test`) installs axe-core with npm ci")
    return AXE.read_text()


def violations(page: Page, source: str) -> list[dict]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(source)  # evaluated by the test, not a <script>: the page's CSP stays as it is
    return page.evaluate(
        """async () => {
        const result = await axe.run(document, { resultTypes: ['violations'] });
        return result.violations.map((v) => ({
          id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')),
        }));
    }"""
    )


def test_the_list_viewer_compare_and_dialogs_have_no_axe_violations(live_server, open_page, axe_source):
    ids = image_jobs(live_server, 6, outputs=2)
    live_server.rate(ids[1], 4)
    live_server.http.post(f"{live_server.url}/api/jobs/{ids[2]}/review", json={"flag": "pick", "tags": ["keeper"]})
    # a rejected card: drawn at 60% opacity, its text failed color-contrast (3.23:1)
    live_server.http.post(f"{live_server.url}/api/jobs/{ids[3]}/review", json={"flag": "reject"})
    page = open_page(live_server)
    expect(page.locator(JOB)).to_have_count(6)
    expect(page.locator("#status")).to_contain_text("unrated left")
    found = {}
    found["list"] = violations(page, axe_source)
    page.locator("#filter-model").click()
    expect(page.locator("#picker-model .picker-values input").first).to_be_visible()
    found["an open picker"] = violations(page, axe_source)
    page.keyboard.press("Escape")

    card(page, ids[0]).focus()
    page.keyboard.press(" ")
    card(page, ids[1]).locator(".job-body").click(modifiers=["Control"])
    expect(page.locator("#selection-bar")).to_be_visible()
    found["list with a selection"] = violations(page, axe_source)

    page.keyboard.press("c")
    expect(page.locator("#compare tr.differs").first).to_be_visible()
    found["compare"] = violations(page, axe_source)
    page.keyboard.press("s")
    found["compare, slider"] = violations(page, axe_source)
    page.keyboard.press("Escape")

    page.locator("#select-all").click()  # 6 match, 2 are selected
    expect(page.locator("#confirm")).to_be_visible()
    found["confirm"] = violations(page, axe_source)
    page.locator("#confirm-no").click()
    page.keyboard.press("Escape")

    card(page, ids[0]).locator("img.thumb").first.click()
    expect(page.locator("#viewer-info mark.lora")).to_be_visible()
    found["viewer"] = violations(page, axe_source)
    page.keyboard.press("t")
    expect(page.locator("#tag-editor")).to_be_visible()
    found["tag editor"] = violations(page, axe_source)
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")

    card(page, ids[2]).locator(".job-body").click()
    expect(page.locator("#details-note")).to_be_visible()
    found["details"] = violations(page, axe_source)
    page.keyboard.press("Escape")
    page.keyboard.press("?")
    found["help"] = violations(page, axe_source)

    bad = {name: found[name] for name in found if found[name]}
    assert not bad, json.dumps(bad, indent=1)
    assert {"list", "an open picker", "compare", "confirm", "viewer", "tag editor", "details", "help"} <= set(found)
