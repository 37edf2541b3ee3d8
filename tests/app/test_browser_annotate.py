"""The Annotate and Project tabs in real Chromium: the empty queue, strength keys, layout, fonts.

Needs /usr/bin/chromium (Debian `chromium`; `scripts/ensure-chromium.sh` installs it);
skipped cleanly without it. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from data.project import update_project
from data.store import PreferenceStore
from tests.browsing import CHROMIUM, assert_no_script_ran, log_in, save
from tests.fakes.served_app import PASSWORDS, Served, free_port, make_store, make_users

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs /usr/bin/chromium (scripts/ensure-chromium.sh)"
    ),
]
LABEL_BUTTONS = ("#btn-a", "#btn-b", "#btn-tie", "#btn-both-bad", "#btn-skip")
LONG = " ".join(["This answer goes on and on to fill the box."] * 40)


def serve(tmp: Path, n: int, *, strength: bool = False, long_first: bool = False) -> Served:
    from app.ui.server import ServeConfig, launch, make_app

    path = tmp / "store.duckdb"
    pair_ids = make_store(path, n)
    store = PreferenceStore(path)
    update_project(store, strength=strength)
    if long_first:  # the first pair's A response (stored orientation) becomes long
        with store.transaction() as cur:
            cur.execute(
                "UPDATE responses SET text = ? WHERE response_id = "
                "(SELECT response_a_id FROM pairs WHERE pair_id = ?)",
                [LONG, pair_ids[0]],
            ).fetchall()
    config = ServeConfig(port=free_port(), auth=str(make_users(tmp / "users.json")))
    ctx, blocks = make_app(store, config)
    launch(ctx, blocks, config, block=False)
    return Served(f"http://127.0.0.1:{config.port}/", store, ctx, blocks, pair_ids)


def stop(served: Served) -> None:
    served.blocks.close()
    served.ctx.close()
    served.store.close()


def login(browser: Any, served: Served, user: str) -> tuple[Any, Any, list[str]]:
    """Log in and wait for the Annotate tab's first answer (a pair or the empty state)."""
    from playwright.sync_api import expect

    context, page, dialogs = log_in(browser, served.url, user, PASSWORDS[user])
    expect(page.locator("#progress")).to_contain_text("still want a label", timeout=30_000)
    return context, page, dialogs


def assert_no_errors(page: Any) -> None:
    """No error toast and no red 'Error' badge anywhere on the page."""
    page.wait_for_timeout(600)  # time for any (wrong) event to come back
    assert page.locator(".toast-body").count() == 0
    assert page.get_by_text(re.compile(r"^\s*Error\s*$")).count() == 0


def expect_empty(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#response-a")).to_contain_text("Nothing to label", timeout=15_000)
    for selector in LABEL_BUTTONS:
        expect(page.locator(selector)).to_be_disabled()
    expect(page.locator("#btn-undo")).to_be_enabled()


def test_an_empty_queue_shows_its_state_without_errors(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    served = serve(tmp_path, n=1)
    try:
        one, page1, dialogs1 = login(browser, served, "ann1")
        expect(page1.locator("#prompt")).to_contain_text("question", timeout=15_000)
        for selector in LABEL_BUTTONS:
            expect(page1.locator(selector)).to_be_enabled()
        # ann1 holds the only pair: ann2 finds an empty queue at page load
        two, page2, dialogs2 = login(browser, served, "ann2")
        expect_empty(page2)
        for key in ("1", "2", "3", "4", "s", "Shift+Digit1"):
            page2.keyboard.press(key)
        assert_no_errors(page2)
        save(page2, "annotate-empty")
        assert served.store.count("labels") == 0

        # ann1 labels the last pair: the page turns to the empty state, keys do nothing
        page1.keyboard.press("1")
        expect_empty(page1)
        expect(page1.locator("#status")).to_contain_text("Saved: A better.")
        page1.keyboard.press("2")
        page1.locator("#btn-tie").click(force=True)  # a click on a disabled button: nothing
        assert_no_errors(page1)
        assert len(served.store.labels("AND who = 'ann1'")) == 1
        # undo brings the pair back and the buttons with it
        page1.keyboard.press("u")
        expect(page1.locator("#prompt")).to_contain_text("question", timeout=15_000)
        expect(page1.locator("#status")).to_contain_text("Undone")
        for selector in LABEL_BUTTONS:
            expect(page1.locator(selector)).to_be_enabled()
        page1.keyboard.press("3")
        expect_empty(page1)
        assert [x["verdict"] for x in served.store.labels("AND who = 'ann1'")] == ["tie"]
        assert_no_errors(page1)
        assert_no_script_ran(page1, dialogs1)
        assert_no_script_ran(page2, dialogs2)
        one.close()
        two.close()
    finally:
        stop(served)


def test_strength_keys_layout_and_one_font(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    served = serve(tmp_path, n=3, strength=True, long_first=True)
    try:
        context, page, _ = login(browser, served, "ann1")
        expect(page.locator("#prompt")).to_contain_text("question 0", timeout=15_000)
        expect(page.locator("#btn-a-much")).to_be_visible()
        expect(page.locator("#btn-b-much")).to_be_visible()
        page.wait_for_timeout(300)
        # Responses A and B start at the same height, however long either is
        a_box = page.locator("#response-a").bounding_box()
        b_box = page.locator("#response-b").bounding_box()
        assert abs(a_box["y"] - b_box["y"]) <= 1 and abs(a_box["height"] - b_box["height"]) > 100
        three_turns = page.locator("#prompt").bounding_box()["height"]
        # At the buttons' weight, the app's font has every letter of "A better" (Gradio's
        # SemiBold file has only A and B: "better" then fell back to another font)
        widths = page.evaluate(
            """async () => {
                const style = getComputedStyle(document.getElementById('btn-a'));
                const first = style.fontFamily.split(',')[0];
                await document.fonts.load(`${style.fontWeight} 16px ${first}`, 'A better');
                await document.fonts.ready;
                const c = document.createElement('canvas').getContext('2d');
                const w = (font, text) => { c.font = font; return c.measureText(text).width; };
                const font = `${style.fontWeight} 16px ${first}, monospace`;
                const mono = `${style.fontWeight} 16px monospace`;
                return [style.fontWeight, ...['A', 'B', 'better'].map((t) => w(font, t) - w(mono, t))];
            }"""
        )
        assert widths[0] == "600" and all(d != 0 for d in widths[1:]), widths
        save(page, "annotate-strength")

        page.keyboard.press("Shift+Digit1")  # A much better
        expect(page.locator("#progress")).to_contain_text("today: 1 ", timeout=15_000)
        expect(page.locator("#status")).to_contain_text("Saved: A much better.")
        expect(page.locator("#prompt")).to_contain_text("Question 1")
        page.wait_for_timeout(300)
        one_turn = page.locator("#prompt").bounding_box()["height"]
        assert one_turn < three_turns - 60  # the prompt panel fits its content
        page.keyboard.press("2")  # B better: slightly, with strength asked
        expect(page.locator("#progress")).to_contain_text("today: 2 ", timeout=15_000)
        page.keyboard.press("Shift+Digit2")  # B much better
        expect_empty(page)
        expect(page.locator("#btn-a-much")).to_be_disabled()
        rows = served.store.labels("AND who = 'ann1'")
        assert [x["confidence"] for x in rows] == [0.9, 0.7, 0.9]
        assert_no_errors(page)
        context.close()
    finally:
        stop(served)


def test_project_tab_sets_guidelines_annotators_see(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    served = serve(tmp_path, n=2)
    try:
        context, page, dialogs = login(browser, served, "boss")
        page.get_by_role("tab", name="Project").click()
        expect(page.locator("#project-status")).to_contain_text("as stored", timeout=15_000)
        box = page.locator("#project-guidelines textarea")
        expect(box).to_have_value(re.compile("Which response is better"), timeout=15_000)
        box.fill('# Pilot rules\n\nPrefer **short** answers. <img src=x onerror="window.__xss=9">')
        expect(page.locator("#project-preview")).to_contain_text("Pilot rules", timeout=15_000)
        expect(page.locator("#project-preview")).to_contain_text("<img src=x")  # as text
        page.locator("#project-overlap input").fill("2")
        page.locator("#project-strength input").check()
        page.locator("#btn-project-save").click()
        expect(page.locator("#project-status")).to_contain_text("Saved by boss", timeout=15_000)
        save(page, "project")
        assert served.ctx.project.overlap == 2 and served.ctx.project.strength
        assert served.store.get_meta("guidelines").startswith("# Pilot rules")

        annotator, ann_page, ann_dialogs = login(browser, served, "ann1")
        ann_page.get_by_text("Guidelines").first.click()
        expect(ann_page.locator("#guidelines")).to_contain_text("Pilot rules", timeout=15_000)
        expect(ann_page.locator("#btn-a-much")).to_be_visible()  # strength, on the next load
        assert ann_page.locator("#guidelines img").count() == 0
        assert_no_script_ran(page, dialogs)
        assert_no_script_ran(ann_page, ann_dialogs)
        assert_no_errors(ann_page)
        context.close()
        annotator.close()
    finally:
        stop(served)
