"""Benchmark: `prefloop loop` rounds one stage after another vs pipelined, in one run.

    python bench/loop.py              # 3 rounds in each of the 4 modes below
    python bench/loop.py --rounds 2   # shorter
    python bench/loop.py --policy smollm2-135m-instruct   # the real model (tens of minutes on CPU)
    python bench/loop.py --modes pipelined   # only the default against the by-hand loop
    python bench/loop.py --pipeline rm+ppo   # reward model + PPO rounds

Setup: the demo store (`prefloop demo`'s data, scored once so both runs start from the
same copy, embeddings cached), a tiny GPT-2 policy folder (2 layers, width 64, built here
from the demo texts), the fake OpenAI-compatible judge in its own process answering every
request after 100 ms (a hashed A or B), at judge concurrency 16; CPU. Both runs are the
real CLI (`python -m app loop --json`) in a subprocess, with the same flags but
`--no-overlap --no-warm-trainers` (sequential: one stage after another, every run a cold
process, as a person running the single commands), `--no-overlap` (sequential, runs forked
from a process that has done the imports), `--no-warm-trainers` (pipelined, cold runs) or
neither (pipelined and forked, the default). Prints one JSON object:
per-stage seconds (mean over rounds), wall time per round, the ratios pipelined /
sequential, the steady-state round time (from the end of round 1's training to the end of
the last round's, per round: what a longer loop tends to), and the final round's held-out
DPO accuracy of each run with its 95% Wilson interval.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TINY = {"tiny_layers": 2, "tiny_width": 64, "tiny_vocab": 512, "max_length": 96, "batch_size": 4}


def build_template(folder: Path, policy: str | None) -> tuple[Path, str]:
    """The scored demo store, and `policy` or a tiny policy folder built from the demo texts."""
    from app.demo_data import build_demo_store, demo_rows
    from data.store import PreferenceStore
    from training.models import build_tiny_policy
    from training.stage_config import StageConfig

    store_dir = folder / "template"
    store_dir.mkdir(parents=True)
    with PreferenceStore(store_dir / "demo.duckdb") as store:
        build_demo_store(store)
    texts: list[str] = []
    for row in demo_rows():
        prompt = row["prompt"]
        texts.append(prompt if isinstance(prompt, str) else json.dumps(prompt))
        texts += list(row["responses"])
    if policy is not None:
        return store_dir, policy
    tiny = folder / "tiny-policy"
    cfg = StageConfig(**{k: v for k, v in TINY.items() if k.startswith("tiny_")})
    build_tiny_policy(texts, tiny, cfg)
    return store_dir, str(tiny)


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--latency", str(latency)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


MODES = {  # name -> the flags that make it
    "sequential": ["--no-overlap", "--no-warm-trainers"],  # by hand: a command, a process
    "sequential_forked": ["--no-overlap"],
    "pipelined_cold": ["--no-warm-trainers"],
    "pipelined": [],  # the default
}


def run_loop(
    template: Path, work: Path, policy: str, url: str, args: argparse.Namespace, mode: str
) -> dict[str, Any]:
    store_dir = work / mode
    shutil.copytree(template, store_dir)
    shape = TINY if args.policy is None else {}  # a real model trains with its own defaults
    settings = [x for k, v in {**shape, "eval_every": 0}.items() for x in ("--set", f"{k}={v}")]
    cmd = [
        sys.executable,
        "-m",
        "app",
        "loop",
        "--db",
        str(store_dir / "demo.duckdb"),
        "--rounds",
        str(args.rounds),
        "--policy",
        str(policy),
        "--judge-base-url",
        url,
        "--judge-model",
        "bench-judge",
        "--judge-concurrency",
        "16",
        "--prompts-per-round",
        str(args.prompts_per_round),
        "--generate-n",
        "2",
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--human-budget-per-round",
        "8",
        "--pipeline",
        args.pipeline,
        "--max-steps",
        str(args.max_steps),
        "--min-gain",
        "-1",  # no early stop: both runs do every round
        *settings,
        "--json",
        *MODES[mode],
    ]
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench", "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"prefloop loop failed:\n{done.stderr[-4000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {"summary": summary, "process_wall_s": round(wall, 2)}


def describe(run: dict[str, Any]) -> dict[str, Any]:
    from labeling.label_quality import wilson

    summary = run["summary"]
    per_stage: dict[str, list[float]] = defaultdict(list)
    for s in summary["stages"]:
        per_stage[s["stage"]].append(s["end_s"] - s["start_s"])
    last = summary["rounds"][-1]
    acc, n = last["heldout_accuracy"], last["heldout_rows"] or 0
    interval = list(wilson(round(acc * n), n)) if acc is not None and n else None
    rounds = len(summary["rounds"])
    train_ends = sorted(s["end_s"] for s in summary["stages"] if s["stage"].startswith("train:"))
    return {
        "status": summary["status"],
        "loop_wall_s": summary["wall_s"],
        "process_wall_s": run["process_wall_s"],
        "round_wall_s": round(summary["wall_s"] / rounds, 2),
        "steady_round_s": (
            round((train_ends[-1] - train_ends[0]) / (len(train_ends) - 1), 2)
            if len(train_ends) > 1
            else None
        ),
        "stage_mean_s": {k: round(sum(v) / len(v), 2) for k, v in per_stage.items()},
        "stage_sum_s": round(sum(sum(v) for v in per_stage.values()), 2),
        "promoted": [r["promoted"] for r in summary["rounds"]],
        "staleness": [r["staleness"] for r in summary["rounds"]],
        "final_heldout_accuracy": acc,
        # RL pipelines: the mean reward of greedy completions on held-out prompts
        "final_heldout_reward": last.get("heldout_reward"),
        "final_heldout_rows": n,
        "final_heldout_interval95": [round(x, 3) for x in interval] if interval else None,
        "intervals": [
            {k: s[k] for k in ("round", "stage", "start_s", "end_s")} for s in summary["stages"]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompts-per-round", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.1, help="Judge seconds per request.")
    parser.add_argument(
        "--pipeline", default="dpo", help="`prefloop loop --pipeline`: dpo, rm+ppo, rm+grpo, ..."
    )
    parser.add_argument(
        "--policy",
        default=None,
        help="Policy to loop on (a folder or a named model, e.g. smollm2-135m-instruct, trained "
        "with its own defaults). Default: a tiny GPT-2 built from the demo texts.",
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"Comma-separated modes to run (sequential always runs): {', '.join(MODES)}.",
    )
    parser.add_argument("--keep", action="store_true", help="Keep the work folder.")
    args = parser.parse_args()
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        parser.error(f"--modes: unknown {sorted(unknown)}; choose from {', '.join(MODES)}")
    args.modes = ",".join(["sequential", *args.modes.split(",")])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = Path(tempfile.mkdtemp(prefix="prefloop-bench-loop-"))
    server, url = start_server(args.latency)
    try:
        template, policy = build_template(work, args.policy)
        runs = {
            mode: describe(run_loop(template, work, policy, url, args, mode))
            for mode in MODES
            if mode in args.modes.split(",")
        }
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    sequential = runs["sequential"]

    def ratio(mode: str, key: str) -> float | None:
        a, b = runs[mode][key], sequential[key]
        return None if a is None or not b else round(a / b, 3)

    def overlapping(mode: str) -> bool | None:
        a, b = sequential["final_heldout_interval95"], runs[mode]["final_heldout_interval95"]
        return None if a is None or b is None else bool(a[0] <= b[1] and b[0] <= a[1])

    result = {
        "setup": {
            "store": "demo (44 prompts, 147 pairs, 42 seed labels), scored once",
            "policy": args.policy or "tiny GPT-2 (2 layers, width 64) from the demo texts",
            "judge": f"fake OpenAI server, {args.latency * 1000:.0f} ms per request, concurrency 16",
            "pipeline": args.pipeline,
            "rounds": args.rounds,
            "prompts_per_round": args.prompts_per_round,
            "max_new_tokens": args.max_new_tokens,
            "max_steps": args.max_steps,
            "device": "cpu",
            "cpu_cores": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
        },
        **runs,
        **{
            f"ratio_{mode}_over_sequential_round": ratio(mode, "round_wall_s")
            for mode in runs
            if mode != "sequential"
        },
        **{
            f"ratio_steady_{mode}_over_sequential": ratio(mode, "steady_round_s")
            for mode in runs
            if mode != "sequential"
        },
        # what overlapping the stages gives on top of forking the runs
        "ratio_pipelined_over_sequential_forked_round": (
            round(runs["pipelined"]["round_wall_s"] / runs["sequential_forked"]["round_wall_s"], 3)
            if {"pipelined", "sequential_forked"} <= set(runs)
            else None
        ),
        "goal_ratio": 0.6,
        "final_heldout_intervals_overlap": {m: overlapping(m) for m in runs if m != "sequential"},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
