"""`prefloop train`, `prefloop runs`, `prefloop generate` through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from tests.fakes.hh import TINY

SETTINGS = [  # the embedded tiny GPT-2: the default (SmolLM2) is for the slow tests
    "--policy",
    "tiny",
    *(
        arg
        for key, value in {**TINY, "eval_every": 0}.items()
        for arg in ("--set", f"{key}={value}")
    ),
]


def test_every_training_command_has_help() -> None:
    for command in ("train", "runs", "generate"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert len(result.output.split("\n\n")[1].strip()) > 20  # a real description


def test_train_sft_then_runs(labelled_store, tmp_path) -> None:
    db = labelled_store.path
    labelled_store.close()
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "sft",
            "--db",
            db,
            "--max-steps",
            "2",
            "--out",
            str(tmp_path / "runs"),
            *SETTINGS,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    run = json.loads(result.output.strip().splitlines()[-1])
    assert run["status"] == "succeeded" and run["promoted"] is True
    assert run["metrics"]["steps"] == 2
    assert Path(run["artifact_path"]).is_dir()
    assert Path(run["run_dir"]).parent == tmp_path / "runs"

    listed = CliRunner().invoke(cli, ["runs", "--db", db, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["run_id"] for r in json.loads(listed.output)["runs"]] == [run["run_id"]]
    human = CliRunner().invoke(cli, ["runs", "--db", db])
    assert run["run_id"] in human.output and "succeeded" in human.output


def test_train_errors_are_one_line_with_the_fix(tmp_path) -> None:
    db = str(tmp_path / "empty.duckdb")
    proc = subprocess.run(
        [sys.executable, "-m", "app", "train", "dpo", "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "no labelled pairs" in proc.stderr and "prefloop import" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "app", "train", "dpo", "--db", db, "--set", "betta=0.2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "unknown setting(s) betta" in proc.stderr and "beta" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "app", "generate", "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "no promoted policy yet" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "app", "generate", "--db", db, "--n", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "at least 2 responses per prompt" in proc.stderr


@pytest.mark.slow
def test_generate_from_the_latest_policy_forms_new_pairs(labelled_store, tmp_path) -> None:
    db = labelled_store.path
    labelled_store.close()
    trained = CliRunner().invoke(
        cli, ["train", "sft", "--db", db, "--max-steps", "1", *SETTINGS, "--json"]
    )
    assert trained.exit_code == 0, trained.output
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Tell me a joke.\nHow do I bake bread?\n")
    result = CliRunner().invoke(
        cli,
        [
            "generate",
            "--db",
            db,
            "--prompts",
            str(prompts),
            "--n",
            "3",
            "--max-new-tokens",
            "6",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    run = json.loads(result.output.strip().splitlines()[-1])
    assert run["metrics"]["generated"] == 6
    assert run["metrics"]["new_pairs"] >= 1
    from data.store import PreferenceStore

    with PreferenceStore(db) as store:
        meta = json.loads(
            store.scalar("SELECT meta FROM prompt_responses WHERE origin = 'generate' LIMIT 1")
        )
        assert meta["n"] == 3 and meta["engine"] == "transformers"
        assert (
            meta["policy"] == json.loads(trained.output.strip().splitlines()[-1])["artifact_path"]
        )


def test_train_detach_returns_the_run_id_and_runs_picks_up_its_result(labelled_store) -> None:
    db = labelled_store.path
    labelled_store.close()
    started = time.monotonic()
    proc = subprocess.run(  # a process of its own: the run outlives it, as from a shell
        [sys.executable, "-m", "app", "train", "sft", "--db", db, "--max-steps", "1", *SETTINGS]
        + ["--detach", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    detached = json.loads(proc.stdout.strip().splitlines()[-1])
    assert detached["detached"] is True and detached["status"] in ("queued", "running")
    run_id = detached["run_id"]
    assert time.monotonic() - started < 60  # it did not wait for the run
    deadline = time.monotonic() + 300
    status = detached["status"]
    while status not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(1)  # the run is another process: `prefloop runs` adopts and ingests it
        listed = CliRunner().invoke(cli, ["runs", "--db", db, "--json"])
        assert listed.exit_code == 0, listed.output
        status = {r["run_id"]: r["status"] for r in json.loads(listed.output)["runs"]}[run_id]
    assert status == "succeeded"


def test_train_waits_out_loud_with_one_progress_bar(labelled_store) -> None:
    db = labelled_store.path
    labelled_store.close()
    proc = subprocess.run(
        [sys.executable, "-m", "app", "train", "sft", "--db", db, "--max-steps", "2", *SETTINGS],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "waiting for it to end" in proc.stderr and "--detach" in proc.stderr
    assert "2/2" in proc.stderr  # tqdm's steps out of max_steps
    assert "running step" not in proc.stderr  # no line per step


def test_a_bare_hub_id_is_accepted_and_fails_offline_with_what_the_name_means(
    labelled_store,
) -> None:
    db = labelled_store.path
    labelled_store.close()
    proc = subprocess.run(
        [sys.executable, "-m", "app", "train", "dpo", "--db", db, "--policy", "gpt2"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 1
    assert "could not load --policy 'gpt2'" in proc.stderr
    assert "Hugging Face hub id" in proc.stderr and "smollm2-135m-instruct" in proc.stderr
