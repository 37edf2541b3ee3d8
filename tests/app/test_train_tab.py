"""One-click retrain from the Train tab: a real DPO run, live status, then the ensemble re-scores."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fakes.served_app import free_port, make_users


@pytest.mark.slow
def test_retrain_runs_and_rescoring_updates_the_queue(tmp_path: Path) -> None:
    from gradio_client import Client

    from app.demo_data import build_demo_store
    from app.ui.server import ServeConfig, launch, make_app
    from data.store import PreferenceStore
    from tests.fakes.served_app import PASSWORDS

    store = PreferenceStore(tmp_path / "demo.duckdb")
    build_demo_store(store, score=False)  # seed labels; everything else in the human queue
    config = ServeConfig(
        port=free_port(), auth=str(make_users(tmp_path / "users.json")), train_max_steps=2
    )
    ctx, blocks = make_app(store, config)
    ctx.runs_root = str(tmp_path / "runs")
    launch(ctx, blocks, config, block=False)
    try:
        admin = Client(
            f"http://127.0.0.1:{config.port}/", auth=("boss", PASSWORDS["boss"]), verbose=False
        )
        assert "Submitted" in admin.predict("dpo", api_name="/train_start")
        deadline = time.monotonic() + 300
        md = ""
        while time.monotonic() < deadline:
            md, _plot, metrics, history = admin.predict(api_name="/train_status")
            if "**succeeded**" in md or "**failed**" in md:
                break
            time.sleep(1)
        assert "**succeeded**" in md, md
        assert history["headers"][:3] == ["run", "kind", "status"]
        assert history["data"][0][1] == "dpo" and history["data"][0][4] == "2"  # steps
        shown = dict(metrics["data"])  # a table of metrics, not a JSON blob
        assert shown["steps"] == "2", shown
        assert float(shown["train loss"]) > 0 and shown["heldout rows"] == "0", shown
        # the run watcher re-scores the ensemble and routes the queue, without a restart
        while time.monotonic() < deadline and store.scalar("SELECT count(*) FROM ensembles") == 0:
            time.sleep(1)
        assert store.scalar("SELECT count(*) FROM ensembles") == 1
        while time.monotonic() < deadline and "Re-score after the run**: done" not in md:
            md = admin.predict(api_name="/train_status")[0]
            time.sleep(1)
        assert "Re-score after the run**: done" in md, md
        assert "human queue" in md and "Why:" in md  # the line explains itself
    finally:
        blocks.close()
        ctx.close()
        store.close()


def test_cancel_from_the_tab_stops_the_run(tmp_path: Path) -> None:
    from gradio_client import Client

    from app.demo_data import build_demo_store
    from app.ui.server import ServeConfig, launch, make_app
    from data.store import PreferenceStore
    from tests.fakes.served_app import PASSWORDS

    store = PreferenceStore(tmp_path / "demo.duckdb")
    build_demo_store(store, score=False)
    config = ServeConfig(port=free_port(), auth=str(make_users(tmp_path / "users.json")))
    ctx, blocks = make_app(store, config)
    ctx.runs_root = str(tmp_path / "runs")
    launch(ctx, blocks, config, block=False)
    try:
        admin = Client(
            f"http://127.0.0.1:{config.port}/", auth=("boss", PASSWORDS["boss"]), verbose=False
        )
        assert "Submitted" in admin.predict("rm+ppo", api_name="/train_start")
        kinds = dict(store.query("SELECT kind, status FROM runs"))
        assert kinds == {"rm": "running", "ppo": "queued"}  # PPO waits for the reward model
        for _ in kinds:
            assert "Cancelled" in admin.predict("", api_name="/train_cancel")
        assert dict(store.query("SELECT kind, status FROM runs")) == {
            "rm": "cancelled",
            "ppo": "cancelled",
        }
        md, _plot, _metrics, history = admin.predict(api_name="/train_status")
        assert "cancelled" in md and len(history["data"]) == 2
        # the critic-free pipelines queue the same way
        assert "Submitted" in admin.predict("rm+rloo", api_name="/train_start")
        assert ("rloo", "queued") in store.query("SELECT kind, status FROM runs")
        for _ in range(2):
            assert "Cancelled" in admin.predict("", api_name="/train_cancel")
        assert "No run is queued" in admin.predict("", api_name="/train_cancel")
    finally:
        blocks.close()
        ctx.close()
        store.close()


def test_progress_line_shows_elapsed_time_and_the_runs_own_pace() -> None:
    from app.ui.train_jobs import progress_line

    live = {"step": 5, "max_steps": 16, "message": "training", "started": 1000.0}
    live["first_step_at"] = 1100.0  # 4 steps in the 40 s since step 1: 10 s a step
    line = progress_line(live, running=True, now=1140.0)
    assert line == "step 5 / 16 training · 2m20s elapsed · about 1m50s of steps left"
    assert progress_line(live, running=False, now=1140.0) == "step 5 / 16 training"
    early = progress_line({**live, "step": 0, "first_step_at": None}, running=True, now=1030.0)
    assert early == "step 0 / 16 training · 30s elapsed"


def test_generate_from_the_tab_forms_new_pairs_that_get_scored(tmp_path: Path) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from app.demo_data import build_demo_store
    from app.ui.server import ServeConfig, launch, make_app
    from data.store import PreferenceStore
    from tests.fakes.served_app import PASSWORDS
    from tests.fakes.tiny_lm import build_tiny_lm

    policy = build_tiny_lm(tmp_path / "tiny-lm")
    store = PreferenceStore(tmp_path / "demo.duckdb")
    build_demo_store(store, score=False)
    pairs_before = store.count("pairs")
    config = ServeConfig(port=free_port(), auth=str(make_users(tmp_path / "users.json")))
    ctx, blocks = make_app(store, config)
    ctx.runs_root = str(tmp_path / "runs")
    launch(ctx, blocks, config, block=False)
    try:
        url = f"http://127.0.0.1:{config.port}/"
        annotator = Client(url, auth=("ann1", PASSWORDS["ann1"]), verbose=False)
        with pytest.raises(AppError):
            annotator.predict("latest", "all", 3, 2, 4, api_name="/generate_start")
        admin = Client(url, auth=("boss", PASSWORDS["boss"]), verbose=False)
        with pytest.raises(AppError, match="minimum value 2"):
            admin.predict(str(policy), "all", 3, 1, 4, api_name="/generate_start")
        assert "Submitted generation" in admin.predict(
            str(policy), "all", 3, 2, 4, api_name="/generate_start"
        )
        deadline = time.monotonic() + 300
        md = ""
        while time.monotonic() < deadline:
            md, _plot, metrics, _history = admin.predict(api_name="/train_status")
            if "**succeeded**" in md or "**failed**" in md:
                break
            time.sleep(1)
        assert "**succeeded**" in md, md
        assert dict(metrics["data"])["generated"] == "6"  # 3 prompts x 2 responses
        assert store.count("pairs") > pairs_before
        # the re-score after the run scores the new pairs too
        while time.monotonic() < deadline and not store.scalar("SELECT count(*) FROM ensembles"):
            time.sleep(1)
        new = store.scalar(
            "SELECT count(*) FROM pairs p WHERE origin = 'generate' AND NOT EXISTS "
            "(SELECT 1 FROM scores s WHERE s.pair_id = p.pair_id)"
        )
        while time.monotonic() < deadline and new:
            time.sleep(1)
            new = store.scalar(
                "SELECT count(*) FROM pairs p WHERE origin = 'generate' AND NOT EXISTS "
                "(SELECT 1 FROM scores s WHERE s.pair_id = p.pair_id)"
            )
        assert new == 0
    finally:
        blocks.close()
        ctx.close()
        store.close()
