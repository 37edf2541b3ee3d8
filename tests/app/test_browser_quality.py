"""Quality control in real Chromium: an adjudicator settles a split with the keyboard; the
Dashboard's per-annotator table (admins) shows HTML in an annotator's name as text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from data.click_batch import submit_human_label
from data.queue import claim_next
from tests.browsing import CHROMIUM, assert_no_script_ran, log_in, login, save
from tests.fakes.served_app import Served, serve_store, stop

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs /usr/bin/chromium (scripts/ensure-chromium.sh)"
    ),
]
HOSTILE = '<img src=x onerror="window.__xss=9"><b>evil</b>'


@pytest.fixture(scope="module")
def served_qc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from app.ui.auth import add_user

    tmp = tmp_path_factory.mktemp("browser-quality")
    running = serve_store(tmp, n=6, needed_labels=2)
    add_user(tmp / "users.json", "judy", "pw-judy", "adjudicator")
    store = running.store
    for who, swapped in (("ann1", False), (HOSTILE, True)):  # a split: a, then b as stored
        pair_id = claim_next(store, who)
        submit_human_label(
            store, pair_id, who, verdict_shown="a", swapped=swapped, rationale=f"{who} says so",
            leased_only=True,
        )  # fmt: skip
    yield running
    stop(running)


def test_an_adjudicator_resolves_a_split_with_the_keyboard(browser: Any, served_qc: Served) -> None:
    from playwright.sync_api import expect

    context, page, dialogs = log_in(browser, served_qc.url, "judy", "pw-judy")
    tab = page.get_by_role("tab", name="Adjudicate")
    tab.click()
    votes = page.locator("#adj-votes")
    expect(votes).to_contain_text("ann1 says so", timeout=30_000)
    expect(votes).to_contain_text("<img src=x")  # the hostile name, as text
    expect(page.locator("#adj-status")).to_contain_text("1 pair(s) wait")
    pair_id = page.locator("#adj-pair-id textarea, #adj-pair-id input").first.input_value()
    save(page, "adjudicate-case")
    page.locator("body").click(position={"x": 5, "y": 5})  # focus off any text box
    page.keyboard.press("2")
    expect(page.locator("#adj-status")).to_contain_text(
        "Final verdict saved: B better", timeout=15_000
    )
    expect(page.locator("#adj-status")).to_contain_text("Nothing to adjudicate")
    assert served_qc.store.query(
        "SELECT adjudicator, verdict FROM adjudications WHERE pair_id = ?", [pair_id]
    ) == [("judy", "b")]
    assert page.locator("#adj-votes img, #adj-votes b").count() == 0
    assert_no_script_ran(page, dialogs)
    save(page, "adjudicate")
    context.close()


def test_the_annotators_table_shows_names_as_text(browser: Any, served_qc: Served) -> None:
    from playwright.sync_api import expect

    context, page, dialogs = login(browser, served_qc, "boss")
    page.get_by_role("tab", name="Dashboard").click()
    table = page.locator("#annotators-table")
    expect(table).to_contain_text("<img src=x", timeout=30_000)
    expect(table).to_contain_text("ann1")
    assert table.locator("table").count() == 1
    expect(page.locator(".annotators-plot img")).to_have_count(2, timeout=30_000)
    assert table.locator("img, b, [onerror]").count() == 0
    link = page.locator("#annotators-csv a[href$='annotators.csv']")
    expect(link).to_have_count(1)
    assert_no_script_ran(page, dialogs)
    save(page, "annotators")
    context.close()
    # an annotator's Dashboard has no such section
    context, page, _ = login(browser, served_qc, "ann2")
    page.get_by_role("tab", name="Dashboard").click()
    expect(page.locator("#btn-dashboard")).to_be_visible()
    expect(page.locator("#annotators-section")).to_be_hidden()
    context.close()
