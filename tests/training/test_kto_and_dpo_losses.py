"""KTO on imported thumbs up/down plus the pairs, and a non-default DPO loss, end to end."""

from __future__ import annotations

import json
from pathlib import Path

from data.importer import ImportOptions, import_sources
from tests.fakes.hh import TINY
from training import runfiles
from training.jobs import TrainRequest


def request(stage: str, steps: int = 3, **overrides) -> TrainRequest:
    return TrainRequest(
        stage, policy="tiny", max_steps=steps, test_fraction=0.3,
        overrides={**TINY, "eval_every": 0, **overrides},
    )  # fmt: skip


def test_kto_trains_on_feedback_and_pairs_and_is_measured_on_held_out_pairs(
    jobs, labelled_store, tmp_path: Path
) -> None:
    feedback = tmp_path / "thumbs.jsonl"
    feedback.write_text(
        "\n".join(
            json.dumps(
                {"prompt": f"Question {i}?", "completion": f"Answer {i}.", "label": i % 2 == 0}
            )
            for i in range(10)
        ),
        encoding="utf-8",
    )
    report = import_sources(labelled_store, [str(feedback)], ImportOptions())
    assert report.feedback == 10 and labelled_store.count("feedback") == 10
    status = jobs.run(request("kto"), timeout=600)
    assert status["status"] == "succeeded", status["log_tail"]
    metrics = status["metrics"]
    assert metrics["steps"] == 3 and metrics["param_change"] > 0
    snapshot = status["config"]["snapshot"]
    shipped = status["config"]["feedback"]
    assert shipped == {"rows": 10, "train": shipped["train"], "desirable": 5}
    # every feedback row in the train split, and both sides of every pair the run used
    assert metrics["kto_rows"] == shipped["train"] + 2 * metrics["rows_used"]
    assert 0.0 <= metrics["heldout_accuracy"] <= 1.0 and snapshot["test"] > 0
    assert (Path(status["run_dir"]) / runfiles.FEEDBACK).exists()


def test_dpo_with_the_ipo_loss(jobs) -> None:
    jobs.keep_warm(True)  # two runs: forked from one process that has done the imports
    sigmoid = jobs.run(request("dpo", 1), timeout=600)
    ipo = jobs.run(request("dpo", 1, loss_type="ipo"), timeout=600)
    for status in (sigmoid, ipo):
        assert status["status"] == "succeeded", status["log_tail"]
    first = {
        name: next(m["loss"] for m in runfiles.read_metrics(Path(s["run_dir"])) if "loss" in m)
        for name, s in (("sigmoid", sigmoid), ("ipo", ipo))
    }
    # at the start policy == reference: DPO's loss is log 2, IPO's is (1 / (2 beta))^2 = 25
    assert abs(first["sigmoid"] - 0.693) < 0.05
    assert abs(first["ipo"] - 25.0) < 2.0
