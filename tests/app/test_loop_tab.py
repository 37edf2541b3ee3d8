"""The Loop tab through gradio_client against the real app on 127.0.0.1: start a loop on
the demo store (tiny policy, fake judge), follow its status, stop it; roles enforced."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.fakes.hh import TINY
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.served_app import PASSWORDS, free_port, make_users


def test_admin_starts_follows_and_stops_the_loop(
    demo_template: Path,
    tiny_policy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

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
    settings = ", ".join(f"{k}={v}" for k, v in {**TINY, "eval_every": 0}.items())
    # 500 steps: the DPO run is still going when the test stops the loop (a forked
    # generation run is over in well under a second)
    args = (2, "dpo", str(tiny_policy), 4, "", "", 4, True, 500, settings)
    try:
        with FakeOpenAIServer() as judge:
            args = (*args[:4], judge.url, "fake-judge", *args[6:])
            annotator = Client(url, auth=("ann1", PASSWORDS["ann1"]), verbose=False)
            for api_name, call in (("/loop_start", args), ("/loop_stop", ()), ("/loop_status", ())):
                with pytest.raises(AppError, match="needs an admin"):
                    annotator.predict(*call, api_name=api_name)
            admin = Client(url, auth=("boss", PASSWORDS["boss"]), verbose=False)
            md, rows, _plot = admin.predict(api_name="/loop_status")
            assert "No loop yet" in md
            assert "started" in admin.predict(*args, api_name="/loop_start")
            with pytest.raises(AppError, match="is running"):
                admin.predict(*args, api_name="/loop_start")  # one loop at a time
            deadline = time.monotonic() + 240
            running_dpo = "SELECT count(*) FROM runs WHERE status = 'running' AND kind = 'dpo'"
            while time.monotonic() < deadline:  # until round 1's DPO run is going
                md, rows, _plot = admin.predict(api_name="/loop_status")
                if store.scalar(running_dpo):
                    break
                time.sleep(0.3)
            md, rows, _plot = admin.predict(api_name="/loop_status")
            assert "**running**" in md and "train:dpo (round 1)" in md, md
            assert rows["headers"][0] == "round" and rows["data"][0][0] == 1
            assert "Stopping" in admin.predict(api_name="/loop_stop")
            while time.monotonic() < deadline and ctx.loop.running:
                time.sleep(0.5)
            md = admin.predict(api_name="/loop_status")[0]
            assert "**stopped**" in md and "stopped by request" in md, md
            assert store.scalar("SELECT count(*) FROM runs WHERE status = 'running'") == 0
            assert store.scalar("SELECT status FROM runs WHERE kind = 'dpo'") == "cancelled"
    finally:
        blocks.close()
        ctx.close()
        store.close()
