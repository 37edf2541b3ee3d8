"""The app in real Chromium (Playwright): login, keyboard labelling, undo, XSS, roles, two annotators.

Needs /usr/bin/chromium (Debian `chromium`; `scripts/ensure-chromium.sh` installs it);
skipped cleanly without it. Screenshots of every tab go to tests/artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browsing import (
    ARTIFACTS,
    CHROMIUM,
    assert_no_script_ran,
    login,
    save,
    shown_prompt,
    wait_for_pair,
)
from tests.fakes.served_app import Served, serve_store, stop

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs /usr/bin/chromium (scripts/ensure-chromium.sh)"
    ),
]


@pytest.fixture(scope="module")
def served_xss(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = serve_store(tmp_path_factory.mktemp("browser"), n=24, xss_every=1)
    yield running
    stop(running)


def test_keyboard_labelling_undo_and_xss(browser: Any, served_xss: Served) -> None:
    context, page, dialogs = login(browser, served_xss, "ann1")
    # the payload is on screen, as text
    assert (
        "XSS check"
        in page.locator("#response-a").inner_text() + page.locator("#response-b").inner_text()
    )
    assert "XSS check" in shown_prompt(page)  # in the prompt too
    markup = "script, img, iframe, [onerror], [onload], [onclick], a[href^='javascript' i]"
    areas = "#prompt [data-testid=user], #prompt [data-testid=bot], #response-a, #response-b"
    assert page.locator(areas).count() >= 3
    for area in page.locator(areas).all():  # the messages themselves, not the component's icons
        assert area.locator(markup).count() == 0, area.inner_html()[:300]
    seen = []
    prompt = shown_prompt(page)
    for count, key in enumerate(["1", "2", "3", "4", "1"], start=1):
        seen.append(prompt)
        page.keyboard.press(key)
        prompt = wait_for_pair(page, count)
    save(page, "annotate")
    labels = served_xss.store.labels("AND who = 'ann1' AND source = 'human'")
    assert len(labels) == 5
    stored_prompts = {
        served_xss.store.get_pair(x["pair_id"])
        .messages[-1]["content"]
        .split("?")[0]
        .replace("**", "")
        for x in labels
    }
    assert all(any(p_text in shown for shown in seen) for p_text in stored_prompts)
    # typing in the rationale box does not trigger shortcuts
    page.locator("#rationale textarea").fill("1234 s u")
    assert len(served_xss.store.labels("AND who = 'ann1'")) == 5
    page.keyboard.press("Escape")
    page.locator("#progress").click()
    page.keyboard.press("u")
    wait_for_pair(page, 4)
    from playwright.sync_api import expect

    expect(page.locator("#status")).to_contain_text("Undone")
    assert len(served_xss.store.labels("AND who = 'ann1'")) == 4
    assert shown_prompt(page) == seen[-1]  # the undone pair is back
    links = page.locator("#response-a a, #response-b a")
    for index in range(links.count()):
        href = links.nth(index).get_attribute("href") or ""
        assert not href.strip().lower().startswith("javascript:"), href
        links.nth(index).click(modifiers=[], no_wait_after=True)
    assert_no_script_ran(page, dialogs)
    context.close()


def test_annotator_cannot_start_training_through_the_api(browser: Any, served_xss: Served) -> None:
    context, page, dialogs = login(browser, served_xss, "ann2")
    result = page.evaluate(
        """async () => {
            const start = await fetch('/gradio_api/call/train_start', {method: 'POST',
                headers: {'Content-Type': 'application/json'}, body: JSON.stringify({data: ['dpo']})});
            const {event_id} = await start.json();
            const stream = await fetch('/gradio_api/call/train_start/' + event_id);
            return await stream.text();
        }"""
    )
    assert "event: error" in result and "needs an admin" in result
    assert served_xss.store.count("runs") == 0
    # the admin tabs are not shown to annotators
    assert page.get_by_role("tab", name="Train").count() == 0
    context.close()


def test_two_annotators_never_get_the_same_pair(browser: Any, served_xss: Served) -> None:
    one, page1, _ = login(browser, served_xss, "ann1")
    two, page2, _ = login(browser, served_xss, "ann2")
    prompts = {1: shown_prompt(page1), 2: shown_prompt(page2)}
    assert prompts[1] != prompts[2]
    done = {
        n: served_xss.store.scalar(
            "SELECT count(*) FROM labels WHERE who = ? AND retracted_at IS NULL", [f"ann{n}"]
        )
        for n in (1, 2)
    }
    for _ in range(3):
        for page, n in ((page1, 1), (page2, 2)):
            page.keyboard.press("1")
            done[n] += 1
            prompts[n] = wait_for_pair(page, done[n])
            assert prompts[1] != prompts[2]
    rows = served_xss.store.query(
        "SELECT pair_id, count(*) FROM labels WHERE source = 'human' AND retracted_at IS NULL GROUP BY 1"
    )
    assert all(count == 1 for _, count in rows)
    leases = served_xss.store.query(
        "SELECT pair_id, annotator FROM leases WHERE expires_at > now()::TIMESTAMP"
    )
    assert len({p for p, _ in leases}) == len(leases)
    one.close()
    two.close()


def test_admin_tabs_render_and_screenshots(browser: Any, served_xss: Served) -> None:
    from playwright.sync_api import expect

    context, page, dialogs = login(browser, served_xss, "boss")
    save(page, "annotate-admin")
    for tab, ready in [
        ("Judge", "Judge queue"),
        ("Train", "No runs yet"),
        ("Dashboard", None),
        ("Data", None),
    ]:
        page.get_by_role("tab", name=tab).click()
        if tab == "Dashboard":  # drawn on opening the tab: no Refresh pressed
            expect(page.get_by_text("Krippendorff")).to_be_visible(timeout=30_000)
            expect(page.locator(".dashboard-plot img")).to_have_count(4, timeout=30_000)
            for plot in page.locator(".dashboard-plot img").all():
                expect(plot).to_be_visible()
        elif ready:
            expect(page.get_by_text(ready).first).to_be_visible(timeout=15_000)
        save(page, tab.lower())
    assert_no_script_ran(page, dialogs)
    context.close()


@pytest.mark.slow
def test_demo_starts_within_a_minute_and_screenshots(browser: Any, tmp_path: Path) -> None:
    """`prefloop demo` (scoring included) serves within a minute; its tabs become README screenshots."""
    import subprocess
    import sys
    import time

    import httpx
    from playwright.sync_api import expect

    from tests.fakes.served_app import free_port

    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "demo", "--dir", str(tmp_path), "--port", str(port)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        while time.monotonic() - started < 120:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        ready = time.monotonic() - started
        assert ready < 60, f"demo took {ready:.0f}s to serve"
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.locator("#progress")).to_contain_text("still want a label", timeout=30_000)
        page.wait_for_timeout(500)
        save(page, "demo-annotate")
        for tab in ("Judge", "Train", "Dashboard", "Data"):
            page.get_by_role("tab", name=tab).click()
            if tab == "Dashboard":  # drawn on opening the tab
                expect(page.get_by_text("Krippendorff")).to_be_visible(timeout=30_000)
                expect(page.locator(".dashboard-plot img")).to_have_count(4, timeout=30_000)
            page.wait_for_timeout(800)
            save(page, f"demo-{tab.lower()}")
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    (ARTIFACTS / "screenshots.json").write_text(
        json.dumps(sorted(p.name for p in ARTIFACTS.glob("*.png")))
    )
    if os.environ.get("PREFLOOP_UPDATE_SCREENSHOTS") == "1":  # `make screenshots`, never by default
        publish_screenshots()


def publish_screenshots() -> None:
    """Copy the screenshots README and APP.md show from tests/artifacts to docs/screenshots."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name in ("annotate", "judge", "train", "dashboard", "data"):
        shutil.copy(ARTIFACTS / f"demo-{name}.png", SCREENSHOTS / f"{name}.png")
    for name in ("project", "annotate-strength", "annotate-empty"):  # test_browser_annotate.py
        if (ARTIFACTS / f"{name}.png").exists():
            shutil.copy(ARTIFACTS / f"{name}.png", SCREENSHOTS / f"{name}.png")
