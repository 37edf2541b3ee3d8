"""Does the loop improve a real model? SmolLM2-135M-Instruct before and after DPO, on CPU.

On HH-RLHF helpful-base (all valid test pairs, imported as labelled pairs):

1. Fit the reward ensemble (`labeling.scoring.score_store`, the default MiniLM features)
   on the store's labels: the judge of generations below.
2. One DPO run through the real path (`JobManager`, subprocess trainer) on
   `smollm2-135m-instruct` with the default (pretrained-profile) settings, except
   `--steps` and `--heldout` (held-out pairs: prompts split by hash, never trained on).
3. Held-out preference accuracy:
   - after DPO: the DPO implicit reward (TRL's `eval_rewards/accuracies`: chosen's
     beta * log(pi / pi_ref) above rejected's), with a Wilson 95% interval;
   - before DPO the policy is the reference, so every implicit margin is 0 (accuracy 0.5
     by construction, ties counted half). As context, the base model's own preference
     on the same pairs: total and per-token log-probability of chosen above rejected
     (from the reference log-probs the run cached in the store).
4. Greedy generations on held-out prompts (the training template), before (the base) and
   after (the DPO adapter merged), scored by the ensemble (mean over members): means with
   95% intervals, and the paired difference with a bootstrap 95% interval. The first
   three prompts' generations are printed.

    python bench/improve.py [--steps 60] [--heldout 128] [--gen-prompts 24] [--json-out FILE]

Prints one JSON object. Slow on CPU (tens of minutes); nothing is copied into the repo.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
HH = REPO.parent / "shared" / "data" / "hh-rlhf" / "helpful-base" / "test.jsonl.gz"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from data import intervals  # noqa: E402 - after the repository is on the path


def wilson(successes: float, n: int) -> list[float]:
    """`data.intervals.wilson`, rounded, as a JSON list (NaN without rows)."""
    if n == 0:
        return [math.nan, math.nan]
    return [round(x, 4) for x in intervals.wilson(round(successes), n)]


def mean_interval(values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / max(n - 1, 1))
    half = 1.96 * sd / math.sqrt(n)
    return {"mean": round(mean, 4), "ci95": [round(mean - half, 4), round(mean + half, 4)]}


def bootstrap_mean(values: list[float], draws: int = 10_000, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choice(values) for _ in range(n)) / n for _ in range(draws))
    return [round(means[int(0.025 * draws)], 4), round(means[int(0.975 * draws)], 4)]


def base_preferences(store, run_dir: Path) -> dict[str, object]:
    """The base model's own preference on the held-out pairs, from the cached ref log-probs."""
    import pyarrow.parquet as pq

    used = json.loads((run_dir / "used_pair_ids.json").read_text())["heldout"]
    snapshot = {r["pair_id"]: r for r in pq.read_table(run_dir / "snapshot.parquet").to_pylist()}
    config = json.loads((run_dir / "config.json").read_text())
    ref_hash = config.get("ref_model_hash")
    rows = store.query(
        "SELECT prompt_id, response_id, logp, n_tokens FROM ref_logprobs WHERE template_hash = ?"
        + (" AND ref_model_hash = ?" if ref_hash else ""),
        [config["template_hash"], *([ref_hash] if ref_hash else [])],
    )
    cache = {(p, r): (logp, n) for p, r, logp, n in rows}
    total = per_token = n = 0
    for pair_id in used:
        row = snapshot[pair_id]
        chosen = cache.get((row["prompt_id"], row["chosen_id"]))
        rejected = cache.get((row["prompt_id"], row["rejected_id"]))
        if chosen is None or rejected is None:
            continue
        n += 1
        total += chosen[0] > rejected[0]
        per_token += chosen[0] / max(chosen[1], 1) > rejected[0] / max(rejected[1], 1)
    return {
        "pairs": n,
        "total_logp_accuracy": round(total / n, 4),
        "total_logp_ci95": wilson(total, n),
        "per_token_logp_accuracy": round(per_token / n, 4),
        "per_token_logp_ci95": wilson(per_token, n),
    }


def greedy(policy: str, prompts: list[str], max_new_tokens: int, batch: int = 8) -> list[str]:
    import torch

    from training.generate import load_policy
    from training.models import load_tokenizer

    tokenizer = load_tokenizer(policy)
    tokenizer.padding_side = "left"
    model = load_policy(policy).eval()
    out: list[str] = []
    for start in range(0, len(prompts), batch):
        enc = tokenizer(
            prompts[start : start + batch],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=192,
        )
        with torch.inference_mode():
            ids = model.generate(
                **enc,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        out += tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return [text.strip() for text in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="DPO optimizer steps")
    parser.add_argument("--heldout", type=int, default=128, help="held-out pairs evaluated")
    parser.add_argument("--gen-prompts", type=int, default=24, help="held-out prompts generated")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="K=V")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()

    import pyarrow.parquet as pq

    from data.importer import ImportOptions, import_sources
    from data.models import SMOLLM2
    from data.store import PreferenceStore
    from labeling.scoring import score_store
    from training.jobs import JobManager, TrainRequest
    from training.rewards import load_reward_fn

    overrides = {"max_heldout_rows": args.heldout}
    for item in args.settings:
        key, _, raw = item.partition("=")
        overrides[key] = json.loads(raw)
    report: dict[str, object] = {"policy": SMOLLM2, "steps": args.steps, "overrides": overrides}
    with tempfile.TemporaryDirectory(prefix="prefloop-improve-") as tmp:
        store = PreferenceStore(Path(tmp) / "hh.duckdb")
        import_sources(store, [str(HH)], ImportOptions(skip_invalid=True))
        started = time.perf_counter()
        scored = score_store(store)
        report["ensemble"] = {"artifact_fit_s": round(time.perf_counter() - started, 1)}
        reward = load_reward_fn(scored.artifact, 0.0)

        manager = JobManager(store, Path(tmp) / "runs")
        started = time.perf_counter()
        run = manager.run(
            TrainRequest("dpo", policy=SMOLLM2, max_steps=args.steps, overrides=overrides)
        )
        manager.close()
        if run["status"] != "succeeded":
            raise SystemExit(f"DPO run {run['status']}: {run.get('log_tail')}")
        metrics = run["metrics"]
        n = int(metrics["heldout_used"])
        acc = float(metrics["heldout_accuracy"])
        report["dpo"] = {
            "wall_s": round(time.perf_counter() - started, 1),
            **{k: metrics.get(k) for k in ("steps", "train_loss", "rows_used", "ref_seconds")},
            "heldout_pairs": n,
            "implicit_reward_accuracy_before": 0.5,
            "implicit_reward_accuracy_after": round(acc, 4),
            "implicit_reward_accuracy_after_ci95": wilson(acc * n, n),
            "heldout_margin_after": metrics.get("heldout_margin"),
        }
        run_dir = Path(run["run_dir"])
        report["base_model_preference"] = base_preferences(store, run_dir)

        snapshot = pq.read_table(run_dir / "snapshot.parquet").to_pylist()
        prompts = sorted({r["prompt"] for r in snapshot if r["split"] == "test"})
        prompts = random.Random(0).sample(prompts, min(args.gen_prompts, len(prompts)))
        timings, texts = {}, {}
        for name, policy in (("before", SMOLLM2), ("after", run["artifact_path"])):
            started = time.perf_counter()
            texts[name] = greedy(policy, prompts, args.max_new_tokens)
            timings[name] = round(time.perf_counter() - started, 1)
        rewards = {name: reward(prompts, texts[name]) for name in texts}
        diffs = [a - b for a, b in zip(rewards["after"], rewards["before"], strict=True)]
        report["greedy_reward"] = {
            "prompts": len(prompts),
            "max_new_tokens": args.max_new_tokens,
            "before": mean_interval(rewards["before"]),
            "after": mean_interval(rewards["after"]),
            "after_minus_before": {
                "mean": round(sum(diffs) / len(diffs), 4),
                "bootstrap_ci95": bootstrap_mean(diffs),
            },
            "after_higher": sum(d > 0 for d in diffs),
            "identical_texts": sum(
                a == b for a, b in zip(texts["before"], texts["after"], strict=True)
            ),
            "mean_words": {
                k: round(sum(len(t.split()) for t in v) / len(v), 1) for k, v in texts.items()
            },
            "generation_s": timings,
        }
        report["examples"] = [
            {
                "prompt": prompt[-400:],
                "before": texts["before"][i],
                "after": texts["after"][i],
                "reward_before": round(rewards["before"][i], 3),
                "reward_after": round(rewards["after"][i], 3),
            }
            for i, prompt in enumerate(prompts[:3])
        ]
        store.close()
    text = json.dumps(report, indent=1)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
