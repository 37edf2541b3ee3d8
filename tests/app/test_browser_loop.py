"""The Loop tab in real Chromium (Playwright): an admin starts a loop on the demo store,
watches its rounds and timeline, and stops it, while an annotator keeps labelling.

Needs /usr/bin/chromium; skipped cleanly without it. A screenshot goes to
tests/artifacts/loop.png.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browsing import CHROMIUM, assert_no_script_ran, log_in, save
from tests.fakes.hh import TINY
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.served_app import PASSWORDS, free_port, make_users

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs /usr/bin/chromium (scripts/ensure-chromium.sh)"
    ),
]


def test_an_admin_runs_and_stops_the_loop_while_an_annotator_labels(
    browser: Any,
    demo_template: Path,
    tiny_policy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from playwright.sync_api import expect

    from app.ui.server import ServeConfig, launch, make_app
    from data.store import PreferenceStore

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    folder = tmp_path / "store"
    shutil.copytree(demo_template, folder)
    store = PreferenceStore(folder / "demo.duckdb")
    config = ServeConfig(port=free_port(), auth=str(make_users(tmp_path / "users.json")))
    ctx, blocks = make_app(store, config)
    ctx.runs_root = str(tmp_path / "runs")
    launch(ctx, blocks, config, block=False)
    url = f"http://127.0.0.1:{config.port}/"
    try:
        with FakeOpenAIServer() as judge:
            context, page, dialogs = log_in(browser, url, "boss", PASSWORDS["boss"])
            page.get_by_role("tab", name="Loop").click()
            page.locator("#loop-rounds-n input").fill("2")
            page.locator("#loop-policy textarea").fill(str(tiny_policy))
            page.locator("#loop-judge-url textarea").fill(judge.url)
            page.locator("#loop-judge-model textarea").fill("fake-judge")
            page.locator("#loop-steps input").fill("2")
            settings = ", ".join(f"{k}={v}" for k, v in {**TINY, "eval_every": 0}.items())
            page.locator("#loop-settings textarea").fill(settings)
            page.locator("#btn-loop-start").click()
            status = page.locator("#loop-status")
            expect(status).to_contain_text("running", timeout=30_000)

            # an annotator labels in the Annotate tab meanwhile
            ann_context, ann_page, ann_dialogs = log_in(browser, url, "ann1", PASSWORDS["ann1"])
            ann_page.locator("#btn-a").wait_for(state="visible", timeout=30_000)
            expect(ann_page.locator("#progress")).to_contain_text("still want a label")
            ann_page.locator("#btn-a").click()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not store.labels("AND who = 'ann1'"):
                time.sleep(0.2)
            assert len(store.labels("AND who = 'ann1'")) == 1
            ann_context.close()

            rounds = page.locator("#loop-rounds")
            expect(rounds).to_contain_text("human labels", timeout=30_000)
            # round 1's run goes while round 2 samples: the status and the timeline show both
            expect(status).to_contain_text("train:dpo (round 1)", timeout=240_000)
            expect(
                page.locator("#loop-timeline img, #loop-timeline canvas, #loop-timeline svg").first
            ).to_be_visible(timeout=30_000)
            save(page, "loop")
            page.locator("#btn-loop-stop").click()
            expect(status).to_contain_text("stopped", timeout=120_000)
            expect(status).to_contain_text("stopped by request")
            assert store.scalar("SELECT count(*) FROM runs WHERE status = 'running'") == 0
            assert_no_script_ran(page, dialogs)
            context.close()
    finally:
        blocks.close()
        ctx.close()
        store.close()
