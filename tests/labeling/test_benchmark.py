"""The label-efficiency benchmark end to end on a small HH slice (length features: no encoder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from labeling.benchmark import BenchConfig, Simulator, ci95, evaluate, run_benchmark
from labeling.benchmark_report import write_outputs
from labeling.simdata import load_simdata, split_by_prompt


def test_simdata_is_oriented_like_the_store_and_split_by_prompt(hh_path):
    data = load_simdata(hh_path, limit=300)
    assert len(data) == 300
    assert 0.3 < data.y.mean() < 0.7  # A is the smaller response id, not always the chosen one
    pool, test = split_by_prompt(data, 100, seed=0)
    assert len(test) >= 100 and len(pool) + len(test) == 300
    assert not {data.prompt_ids[i] for i in pool} & {data.prompt_ids[i] for i in test}


def test_evaluate_and_ci95_by_hand():
    acc, ll = evaluate(np.array([0.9, 0.2, 0.5]), np.array([1.0, 1.0, 0.0]))
    assert acc == (1 + 0 + 0.5) / 3
    assert np.isclose(ll, (np.log(0.9) + np.log(0.2) + np.log(0.5)) / 3)
    mean, half = ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and np.isclose(half, 4.302653 * 1.0 / np.sqrt(3), rtol=1e-5)


def test_hybrid_judge_labels_have_the_configured_agreement(hh_path):
    data = load_simdata(hh_path, limit=400)
    x = np.array([[np.log1p(len(a))] for a in data.a], np.float32)
    xb = np.array([[np.log1p(len(b))] for b in data.b], np.float32)
    sim = Simulator(x, xb, data.y, BenchConfig(judge_agreement=0.7, members=2))
    pool, test = split_by_prompt(data, 100, seed=0)
    out = sim.hybrid(list(pool[:50]), pool, test, seed=0, budget=50)
    assert out["human_labels"] == 50 and out["judge_labels"] == len(pool) - 50
    judged = len(pool) - 50
    # 50 human labels are right; about 70% of the judge's are
    assert abs((out["label_accuracy"] * len(pool) - 50) / judged - 0.7) < 0.08


def test_run_benchmark_small(hh_path, tmp_path):
    config = BenchConfig(
        data=str(hh_path),
        cache=str(tmp_path / "cache.duckdb"),
        features=("length",),
        seeds=2,
        test_pairs=80,
        schedule=(10, 20, 40),
        members=4,
        hybrid_budget=20,
        compare_features=(("length",),),
        compare_penalty=(1.0,),
        curve_features=(),
        limit=240,
    )
    result = run_benchmark(config, log=lambda _: None)
    curves = result["curves"]["length"]
    assert set(curves["strategies"]) == {"random", "variance", "bald", "bald+diversity"}
    for s in curves["strategies"].values():
        assert s["labels"] == [10, 20, 40] and len(s["accuracy_ci95"]) == 3
    assert set(curves["hybrid"]) == {"random", "variance", "bald", "bald+diversity", "judge_only"}
    # a length-only model learns "prefer the longer response": same accuracy as that baseline
    longer = result["baselines"]["longer_response"]["mean"]
    assert abs(curves["all_labels"]["mean"] - longer) < 0.06
    paths = write_outputs(result, tmp_path / "out")
    assert json.loads(Path(paths["json"]).read_text())["pairs"] == 240
    assert Path(paths["png"]).read_bytes()[:4] == b"\x89PNG"
    assert "| random |" in Path(paths["markdown"]).read_text()
