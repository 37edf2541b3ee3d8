"""Training benchmark: ratios measured in one run, on the embedded default policy, on CPU.

(a) DPO step time: prefloop's configuration (LoRA, cached reference log-probs, length-
    bucketed batches) vs TRL's defaults (full fine-tune, a reference model copy run on
    every step, random batches). Median seconds per optimizer step, same data and shape.
(b) Incremental retrain after +10% labels vs from scratch, each stopping as soon as its
    held-out preference accuracy reaches the accuracy of the run before the new labels
    (the promotion gate's bar). Wall seconds of the trainer.
(c) Reference log-prob time on the second iteration (+10% labels, cache filled by the
    first) vs the first iteration (every pair needs a reference forward pass).

Trainers run in-process (`JobManager(inline=True)`) so process start-up does not blur the
ratios; everything else is the real path (store, snapshot, run folder, ingest).

    python bench/train.py [--pairs 400] [--steps 30] [--json-out FILE]

Prints one JSON object. No GPU was used: the GPU rows of the issue were not run here.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
HH = REPO.parent / "shared" / "data" / "hh-rlhf" / "helpful-base" / "test.jsonl.gz"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")


def import_slice(store, tmp: Path, start: int, count: int) -> None:
    from data.importer import ImportOptions, import_sources

    with gzip.open(HH, "rt", encoding="utf-8") as handle:
        lines = [line for i, line in enumerate(handle) if start <= i < start + count]
    path = tmp / f"hh-{start}.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    import_sources(store, [str(path)], ImportOptions(skip_invalid=True))


def build_policy(tmp: Path) -> Path:
    """The embedded default shape (StageConfig defaults), BPE trained on HH texts."""
    from training.common import StageConfig, build_tiny_policy

    texts = []
    with gzip.open(HH, "rt", encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if i >= 1000:
                break
            row = json.loads(line)
            texts += [row["chosen"], row["rejected"]]
    out = tmp / "policy"
    build_tiny_policy(texts, out, StageConfig())
    return out


def step_seconds(run_dir: Path, skip: int = 2) -> float:
    from training.runfiles import read_metrics

    times = [m["time"] for m in read_metrics(run_dir) if "loss" in m and "eval_loss" not in m]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)][skip:]
    return statistics.median(gaps)


def run(manager, stage: str, policy: Path, **kwargs) -> dict:
    from training.jobs import TrainRequest

    overrides = kwargs.pop("overrides", {})
    status = manager.run(TrainRequest(stage, policy=str(policy), overrides=overrides, **kwargs))
    if status["status"] != "succeeded":
        raise SystemExit(f"{stage} run failed:\n{status['log_tail']}")
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=400, help="Pairs before the +10%% labels.")
    parser.add_argument("--steps", type=int, default=30, help="Steps for the step-time runs.")
    parser.add_argument(
        "--max-steps", type=int, default=80, help="Cap for the time-to-accuracy runs."
    )
    parser.add_argument("--eval-every", type=int, default=5, help="Held-out evaluation interval.")
    parser.add_argument("--json-out", default=None, help="Also write the JSON result here.")
    args = parser.parse_args()

    import torch

    from data.store import PreferenceStore
    from training.jobs import JobManager

    tmp = Path(tempfile.mkdtemp(prefix="prefloop-bench-train-"))
    store = PreferenceStore(tmp / "store.duckdb")
    import_slice(store, tmp, 0, args.pairs)
    policy = build_policy(tmp)
    manager = JobManager(store, tmp / "runs", inline=True)
    common = {"batch_size": 8, "max_length": 256, "eval_every": 0, "learning_rate": 5e-4}
    result: dict = {
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "pairs": args.pairs,
        "policy_parameters": sum(
            p.numel()
            for p in __import__("transformers")
            .AutoModelForCausalLM.from_pretrained(policy)
            .parameters()
        ),
    }

    # TRL defaults: full fine-tune, a reference model copy run on every step, random batches
    trl_default = run(
        manager,
        "dpo",
        policy,
        max_steps=args.steps,
        overrides={
            **common,
            "use_lora": False,
            "bucket_by_length": False,
            "cache_reference": False,
            "learning_rate": 5e-5,
        },
    )
    # first iteration: one full epoch (every pair needs a reference forward pass, measured for
    # (c)); its steps give prefloop's step time for (a) (reference log-probs are precomputed
    # before the first step); it is the promoted parent of (b) and sets its accuracy bar
    epoch = -(-store.count("labels") // common["batch_size"])
    first = run(manager, "dpo", policy, max_steps=epoch, overrides=common)
    ours = first
    a_ours, a_trl = step_seconds(Path(ours["run_dir"])), step_seconds(Path(trl_default["run_dir"]))
    result["a_dpo_step_time"] = {
        "prefloop_s_per_step": round(a_ours, 4),
        "trl_defaults_s_per_step": round(a_trl, 4),
        "ratio": round(a_ours / a_trl, 3),
        "goal": "<= 0.6",
        "prefloop": "LoRA r=16 + cached reference + length buckets",
        "trl_defaults": "full fine-tune + reference model forward each step + random batches",
    }

    # +10% labels
    import_slice(store, tmp, args.pairs, args.pairs // 10)
    bar = ours["metrics"]["heldout_accuracy"]
    scratch_cfg = {**common, "eval_every": args.eval_every, "stop_at_accuracy": bar, "patience": 0}
    # second iteration: incremental (new + replay); its reference time is (c)'s second figure
    incremental = run(
        manager,
        "dpo",
        policy,
        incremental=True,
        max_steps=args.max_steps,
        overrides={**scratch_cfg},
    )
    scratch = run(manager, "dpo", policy, max_steps=args.max_steps, overrides={**scratch_cfg})
    reached = lambda s: any("reached_target" in m for m in manager.metrics(s["run_id"]))  # noqa: E731
    result["b_incremental_vs_scratch"] = {
        "target_heldout_accuracy": bar,
        "incremental": {
            "wall_s": incremental["metrics"]["wall_s"],
            "steps": incremental["metrics"]["steps"],
            "train_rows": incremental["metrics"]["train_rows"],
            "reached": reached(incremental),
            "heldout_accuracy": incremental["metrics"]["heldout_accuracy"],
        },
        "scratch": {
            "wall_s": scratch["metrics"]["wall_s"],
            "steps": scratch["metrics"]["steps"],
            "train_rows": scratch["metrics"]["train_rows"],
            "reached": reached(scratch),
            "heldout_accuracy": scratch["metrics"]["heldout_accuracy"],
        },
        "ratio": round(incremental["metrics"]["wall_s"] / scratch["metrics"]["wall_s"], 3),
        "goal": "<= 0.3",
    }
    result["c_reference_logprobs"] = {
        "first_iteration_s": first["metrics"]["ref_seconds"],
        "first_forward_pairs": first["metrics"]["ref_forward_pairs"],
        "second_iteration_s": incremental["metrics"]["ref_seconds"],
        "second_forward_pairs": incremental["metrics"]["ref_forward_pairs"],
        "second_cached_pairs": incremental["metrics"]["ref_cached_pairs"],
        "ratio": round(incremental["metrics"]["ref_seconds"] / first["metrics"]["ref_seconds"], 3),
        "goal": "<= 0.1",
        "note": "second iteration = the incremental run after +10% labels (new + replay + held-out rows)",
    }
    result["gpu"] = "not run: no GPU in this session"
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = json.dumps(result, indent=1)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    manager.close()
    store.close()


if __name__ == "__main__":
    main()
