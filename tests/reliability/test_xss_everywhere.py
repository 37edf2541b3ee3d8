"""Known XSS payloads in prompts, responses, rationales and judge output, rendered on every
tab of the real app in real Chromium: none executes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from data import queue
from data.ingest import ingest
from data.shapes import PairRecord
from data.store import PreferenceStore
from tests.browsing import CHROMIUM, assert_no_script_ran, login
from tests.fakes.served_app import Served, free_port, make_users, stop

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]

PAYLOADS = [
    "<script>window.__xss = 1</script>",
    '<img src=x onerror="window.__xss = 2">',
    '<svg onload="window.__xss = 3"></svg>',
    '<iframe srcdoc="<script>parent.__xss = 4</script>"></iframe>',
    '<body onload="window.__xss = 5">',
    '<a href="javascript:window.__xss = 6">link</a>',
    "[md link](javascript:window.__xss=7)",
    '<details open ontoggle="window.__xss = 8">',
    '<input autofocus onfocus="window.__xss = 9">',
    '"><script>window.__xss = 10</script>',
    '<math><mtext><table><mglyph><style><img src=x onerror="window.__xss = 11">',
    '<object data="javascript:window.__xss = 12"></object>',
    '![img](x" onerror="window.__xss = 13)',
]


@pytest.fixture(scope="module")
def served_payloads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from app.ui.server import ServeConfig, launch, make_app

    tmp = tmp_path_factory.mktemp("xss")
    db = tmp / "store.duckdb"
    with PreferenceStore(db) as store:
        records = [
            PairRecord(
                [{"role": "user", "content": f"Question {i}: {p}"}], f"Answer {p}", f"Other {i} {p}"
            )
            for i, p in enumerate(PAYLOADS)
        ]
        ids = ingest(store, records, origin="xss").pair_ids
        queue.assign(
            store, [queue.Assignment(pid, "human", priority=1.0, needed_labels=3) for pid in ids]
        )
        for pid, payload in zip(ids, PAYLOADS, strict=True):
            store.add_label(pid, source="human", who="ann2", verdict="a", rationale=payload)
            store.add_label(pid, source="judge", who=payload, verdict="b", rationale=payload)
            with store.transaction() as cur:
                cur.execute(
                    "INSERT INTO judgements (pair_id, model, template_hash, order_shown, status, "
                    "raw_text, error) VALUES (?, ?, 't', 'ab', 'failed', ?, ?)",
                    [pid, payload, payload, payload],
                ).fetchall()
    users = make_users(tmp / "users.json")
    config = ServeConfig(port=free_port(), auth=str(users))
    store = PreferenceStore(db)
    ctx, blocks = make_app(store, config)
    ctx.runs_root = str(tmp / "runs")
    launch(ctx, blocks, config, block=False)
    running = Served(f"http://127.0.0.1:{config.port}/", store, ctx, blocks, ids)
    yield running
    stop(running)


def test_no_payload_executes_on_any_tab(browser: Any, served_payloads: Served) -> None:  # noqa: F811
    context, page, dialogs = login(browser, served_payloads, "boss")
    for _ in range(3):  # several pairs through the annotate view
        page.keyboard.press("1")
        page.wait_for_timeout(400)
    for tab in ("Judge", "Train", "Dashboard", "Data", "Annotate"):
        page.get_by_role("tab", name=tab).click()
        if tab == "Dashboard":
            page.locator("#btn-dashboard").click()
        page.wait_for_timeout(1500)
        assert_no_script_ran(page, dialogs)
        dangerous = page.locator(
            "script:not([src]):has-text('__xss'), [onerror], [onload], [ontoggle], "
            "[onfocus], iframe[srcdoc], a[href^='javascript' i], object[data^='javascript' i]"
        )
        assert dangerous.count() == 0, tab
    context.close()
