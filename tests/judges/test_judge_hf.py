"""The in-process Hugging Face backend with a tiny random GPT-2 and a local tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from data.store import PreferenceStore
from tests.fakes.judging import make_pairs
from tests.fakes.tiny_lm import build_tiny_lm


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-gpt2"))


def test_hf_backend_stores_judgements_with_probabilities(store_path: Path, tiny_lm: Path) -> None:
    with PreferenceStore(store_path) as store:
        make_pairs(store, 3)
    judge_args = [
        "judge",
        "--db",
        str(store_path),
        "--backend",
        "hf",
        "--model",
        str(tiny_lm),
        "--swap",
        "--json",
    ]
    result = CliRunner().invoke(cli, judge_args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["judged"] == 3 and out["calls"] == 6 and out["failed"] == 0
    assert (
        out["labels"] + out["inconsistent"] == 3
    )  # a random model: consistent or flagged, never both
    with PreferenceStore(store_path) as store:
        rows = store.query_dicts("SELECT * FROM judgements")
        assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
        assert all(0.0 <= r["p_a"] <= 1.0 and r["verdict"] in ("a", "b") for r in rows)
        for row in rows:  # the verdict is the more likely letter, in stored A/B terms
            assert (row["verdict"] == "a") == (row["p_a"] >= 0.5)
        endpoints = {r[0] for r in store.query("SELECT endpoint FROM judge_calls")}
        assert endpoints == {"hf://local"}
    again = CliRunner().invoke(cli, judge_args)
    assert json.loads(again.stdout.strip().splitlines()[-1])["calls"] == 0


def test_hf_backend_bad_model_path_names_the_fix(store_path: Path, tmp_path: Path) -> None:
    with PreferenceStore(store_path) as store:
        make_pairs(store, 1)
    result = CliRunner().invoke(
        cli,
        [
            "judge",
            "--db",
            str(store_path),
            "--backend",
            "hf",
            "--model",
            str(tmp_path / "nothing-here"),
        ],
    )
    assert result.exit_code != 0
    assert "pass a local model folder" in str(result.exception) + result.output
