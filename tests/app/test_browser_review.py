"""The Review tab in real Chromium (Playwright): an admin corrects a label; annotators are refused.

Needs /usr/bin/chromium (Debian `chromium`; `scripts/ensure-chromium.sh` installs it);
skipped cleanly without it. A screenshot goes to tests/artifacts/review.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browsing import CHROMIUM, assert_no_script_ran, login, save
from tests.fakes.served_app import XSS_RESPONSE, Served, serve_store, stop

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs /usr/bin/chromium (scripts/ensure-chromium.sh)"
    ),
]


@pytest.fixture(scope="module")
def served_review(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = serve_store(tmp_path_factory.mktemp("browser-review"), n=12, xss_every=2)
    store, p = running.store, running.pair_ids
    # p[0]: the judge and a human disagree (the judge's rationale carries the payload too)
    store.add_label(p[0], source="judge", who="gpt", verdict="a", rationale=XSS_RESPONSE)
    store.add_label(p[0], source="human", who="ann2", verdict="b")
    store.add_label(p[1], source="judge", who="gpt", verdict="b")  # no human label: no conflict
    yield running
    stop(running)


def test_an_admin_corrects_a_label_in_the_review_tab(browser: Any, served_review: Served) -> None:
    from playwright.sync_api import expect

    store, pair_id = served_review.store, served_review.pair_ids[0]
    judge = store.labels("AND pair_id = ? AND source = 'judge'", [pair_id])[0]["label_id"]
    context, page, dialogs = login(browser, served_review, "boss")
    page.get_by_role("tab", name="Review").click()
    page.get_by_label("Human and judge disagree").check()
    page.locator("#btn-review-search").click()
    expect(page.locator("#review-count")).to_contain_text("1 labelled pair(s) match")
    table = page.locator("#review-table")
    expect(table).to_contain_text(pair_id)
    expect(table).to_contain_text("judge:gpt=a, human:ann2=b")
    table.get_by_test_id("cell-0-0").click()  # a click on the row opens the pair
    labels = page.locator("#review-labels")
    expect(labels).to_contain_text("2 active, 2 in all", timeout=15_000)
    expect(page.locator("#review-prompt")).to_contain_text("XSS check")  # shown as text
    expect(labels).to_contain_text("XSS check")

    page.locator("#review-label input").click()
    page.get_by_role("option", name=f"#{judge} judge gpt: A better").click()
    page.locator("#review-verdict").get_by_text("B better").click()
    page.locator("#review-reason textarea").fill("A never answers the question")
    page.locator("#btn-review-correct").click()
    expect(page.locator("#review-status")).to_contain_text(
        f"Corrected label #{judge} (A better → B better)", timeout=15_000
    )
    expect(labels).to_contain_text("2 active, 3 in all")
    expect(labels).to_contain_text("by boss: A never answers the question")
    assert labels.locator("del, s").first.inner_text().startswith(f"#{judge}")  # struck through
    save(page, "review")

    active = store.labels("AND pair_id = ?", [pair_id])
    assert sorted((x["source"], x["who"], x["verdict"]) for x in active) == [
        ("human", "ann2", "b"),
        ("human", "boss", "b"),
    ]
    assert store.scalar("SELECT reason FROM label_corrections WHERE old_label_id = ?", [judge]) == (
        "A never answers the question"
    )
    markup = "script, img, iframe, [onerror], [onload], [onclick], a[href^='javascript' i]"
    for area in ("#review-prompt", "#review-a", "#review-b", "#review-labels", "#review-table"):
        assert page.locator(area).locator(markup).count() == 0, area
    assert_no_script_ran(page, dialogs)
    context.close()


def test_an_annotator_calling_the_review_api_is_refused(
    browser: Any, served_review: Served
) -> None:
    store, pair_id = served_review.store, served_review.pair_ids[1]
    label_id = store.labels("AND pair_id = ?", [pair_id])[0]["label_id"]
    before = (store.count("labels"), store.count("label_corrections"))
    context, page, dialogs = login(browser, served_review, "ann1")
    assert page.get_by_role("tab", name="Review").count() == 0  # the tab is not shown
    calls = {
        "review_correct": [pair_id, str(label_id), "a", "mine now"],
        "review_search": ["any", "", "any", "", False],
        "review_open": [pair_id],
    }
    for api_name, data in calls.items():
        result = page.evaluate(
            """async ([name, data]) => {
                const start = await fetch('/gradio_api/call/' + name, {method: 'POST',
                    headers: {'Content-Type': 'application/json'}, body: JSON.stringify({data})});
                const {event_id} = await start.json();
                const stream = await fetch('/gradio_api/call/' + name + '/' + event_id);
                return await stream.text();
            }""",
            [api_name, data],
        )
        assert "event: error" in result and "needs an admin" in result, (api_name, result)
        assert pair_id not in result, api_name  # nothing about the pair came back
    assert (store.count("labels"), store.count("label_corrections")) == before
    assert store.labels("AND label_id = ?", [label_id])  # still active
    assert_no_script_ran(page, dialogs)
    context.close()
