"""`prefloop eval --model`: a reward model, a policy and an ensemble measured on a labelled
file, overall and per category, in real evaluation runs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.ui.dashboard import evaluations_markdown
from data.errors import ConfigError, ImportValidationError
from data.store import PreferenceStore
from labeling.ensemble import EnsembleConfig
from labeling.scoring import ScoreConfig, score_store
from tests.fakes.hh import TINY
from training.jobs import JobManager, TrainRequest


def eval_file(hh_path: Path, out: Path, start: int = 200, count: int = 24) -> Path:
    """HH pairs in TRL shape (prompt/chosen/rejected) with a RewardBench-style subset."""
    rows = []
    with gzip.open(hh_path, "rt", encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if start <= i < start + count:
                row = json.loads(line)
                cut = row["chosen"].rindex("\n\nAssistant:")
                prompt = row["chosen"][:cut].replace("\n\nHuman: ", "", 1)
                rows.append(
                    {
                        "prompt": prompt,
                        "chosen": row["chosen"][cut + len("\n\nAssistant:") :].strip() or "(empty)",
                        "rejected": row["rejected"][
                            row["rejected"].rindex("\n\nAssistant:") + 12 :
                        ].strip()
                        or "-",
                        "subset": "even" if i % 2 == 0 else "odd",
                    }
                )
    rows = [r for r in rows if r["chosen"] != r["rejected"]]
    out.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return out


def evaluate(db: str, model: str, path: Path, *extra: str) -> dict:
    result = CliRunner().invoke(
        cli, ["eval", "--db", db, "--model", model, str(path), *extra, "--json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def check(result: dict, kind: str, pairs: int) -> None:
    metrics = result["metrics"]
    assert result["status"] == "succeeded" and metrics["model_kind"] == kind
    assert metrics["pairs"] == pairs and 0.0 <= metrics["accuracy"] <= 1.0
    low, high = metrics["interval"]
    assert low <= metrics["accuracy"] <= high
    categories = metrics["categories"]
    assert set(categories) == {"even", "odd"}
    assert sum(c["pairs"] for c in categories.values()) == pairs
    assert sum(c["right"] for c in categories.values()) == metrics["right"]


def test_the_ensemble_on_a_labelled_file(labelled_store, hh_path, tmp_path) -> None:
    path = eval_file(hh_path, tmp_path / "eval.jsonl")
    score_store(
        labelled_store,
        ScoreConfig(features=("length",), ensemble=EnsembleConfig(members=3), min_labels=8),
    )
    db = str(labelled_store.path)
    labelled_store.close()
    result = evaluate(db, "ensemble", path)
    check(result, "ensemble", len(path.read_text().splitlines()))
    with PreferenceStore(db, read_only=True) as store:  # the Dashboard lists it
        shown = evaluations_markdown(store)
    assert "| ensemble |" in shown and "eval.jsonl" in shown
    assert f"{result['metrics']['accuracy']:.3f}" in shown


@pytest.mark.slow
def test_a_reward_model_and_a_policy_on_a_labelled_file(
    labelled_store, hh_path, tiny_policy, tmp_path
) -> None:
    path = eval_file(hh_path, tmp_path / "eval.jsonl")
    jobs = JobManager(labelled_store, tmp_path / "runs")
    trained = {}
    for stage in ("rm", "dpo"):
        status = jobs.run(
            TrainRequest(
                stage,
                policy=str(tiny_policy),
                max_steps=2,
                overrides={**TINY, "eval_every": 0, "max_length": 512},
            ),
            timeout=600,
        )
        assert status["status"] == "succeeded", status["log_tail"]
        trained[stage] = status["run_id"]
    jobs.close()
    db = str(labelled_store.path)
    labelled_store.close()
    pairs = len(path.read_text().splitlines())
    check(evaluate(db, trained["rm"], path), "rm", pairs)
    check(evaluate(db, trained["dpo"], path), "policy", pairs)


def test_a_bad_row_fails_before_any_run(labelled_store, tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "q", "chosen": "x", "rejected": "y"}\n{"prompt": "q", "chosen": 3, "rejected": "y"}\n'
    )
    db = str(labelled_store.path)
    labelled_store.close()
    result = CliRunner().invoke(cli, ["eval", "--db", db, "--model", "ensemble", str(bad)])
    assert isinstance(result.exception, ImportValidationError)
    assert "bad.jsonl:2: field 'chosen'" in str(result.exception)
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "q", "chosen": "x", "rejected": "y"}\n')
    result = CliRunner().invoke(cli, ["eval", "--db", db, "--model", "nope", str(good)])
    assert isinstance(result.exception, ConfigError)
    assert "no run id (see `prefloop runs`), folder or 'ensemble'" in str(result.exception)
    with PreferenceStore(db) as store:
        assert store.count("runs") == 0  # refused before any run was recorded
