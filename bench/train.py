"""Training benchmark: ratios measured in one run, on the embedded default policy, on CPU.

The policy is first SFT-warmed by the real `sft` stage (the embedded default, built from
the store's texts and trained on its chosen responses); every DPO run below starts from
that artifact, which is also the reference.

(a) DPO step time: prefloop's configuration (LoRA, cached reference log-probs, length-
    bucketed batches, no gradient checkpointing, only completion tokens through the LM head)
    vs TRL's defaults (full fine-tune, a reference model copy run on every step, random
    batches, gradient checkpointing on, every position through the LM head on CPU).
    Median seconds per optimizer step, same data and shape.
(b) Incremental retrain after +10% labels vs from scratch. The parent is a DPO run over
    one full epoch of the first N pairs; then +10% labels; then an incremental run (warm
    start from the parent's promoted adapter, new + replay rows) and a from-scratch run
    (all rows, fresh adapter on the SFT policy), each stopping at the first held-out
    evaluation whose preference accuracy reaches the bar. The bar is the parent's held-out
    accuracy, i.e. the promotion gate's bar: the question a retrain answers is "how soon
    is there a model, trained on the new labels, that the gate would promote". Neither
    run is evaluated before its first training step (a warm start that "passes" without
    having seen the new labels is not a retrain). Wall seconds of the trainer.
(c) Reference log-prob time on the second iteration (the incremental run: +10% labels,
    cache filled by the parent) vs the first (the parent: every pair needs a reference
    forward pass).

(d) Precision (on by default when CUDA is present, `--precision-rows` forces it): DPO
    tokens/s and peak GPU memory, LoRA + bf16 vs a full fine-tune in fp32, same data.

Trainers run in-process (`JobManager(inline=True)`) so process start-up does not blur the
ratios; everything else is the real path (store, snapshot, run folder, ingest).

    python bench/train.py [--pairs 400] [--steps 30] [--json-out FILE]
    python bench/train.py --policy qwen2-0.5b      # on a GPU: a realistic shape, random weights
    python bench/train.py --policy smollm2-135m-instruct --pairs 80 --steps 6 --max-steps 10
                                                   # the real model, small enough for CPU

`--policy` takes a model folder, a named model, or a shape name (`qwen2-0.5b`: 494M
parameters, the Qwen2-0.5B configuration; `qwen2-tiny`: the same architecture at 2 layers,
to check the path on CPU) for a randomly initialised model: no weights are needed to measure speed,
and such a model is not SFT-warmed. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
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


def step_seconds(run_dir: Path, skip: int = 2) -> float:
    from training.runfiles import read_metrics

    times = [m["time"] for m in read_metrics(run_dir) if "loss" in m and "eval_loss" not in m]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)][skip:]
    return statistics.median(gaps)


# Randomly initialised models of a realistic shape (speed only). qwen2-0.5b is the
# configuration of Qwen/Qwen2-0.5B; the tokenizer is the embedded default's BPE, whose
# ids all fall inside the larger vocabulary.
SHAPES = {
    "qwen2-0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
    },
    "qwen2-tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 4096,
        "tie_word_embeddings": True,
    },
}


def build_shape(name: str, store, out: Path) -> Path:
    """A randomly initialised Qwen2 model of shape `name`, with a BPE trained on the store."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    from training.models import build_tiny_policy
    from training.stage_config import StageConfig

    texts = [
        t for (t,) in store.query("SELECT text FROM prompts UNION ALL SELECT text FROM responses")
    ]
    build_tiny_policy(texts, out / "tokenizer", StageConfig())
    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
    eos = tokenizer.eos_token_id
    config = Qwen2Config(**SHAPES[name], bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out / name)
    tokenizer.save_pretrained(out / name)
    return out / name


def tokens_per_second(run_dir: Path, skip: int = 2) -> float:
    """Tokens TRL counted (`num_tokens`, cumulative) per second, after `skip` warm-up steps."""
    from training.runfiles import read_metrics

    rows = [m for m in read_metrics(run_dir) if "num_tokens" in m and "eval_loss" not in m]
    first, last = rows[skip], rows[-1]
    return (float(last["num_tokens"]) - float(first["num_tokens"])) / (last["time"] - first["time"])


def run(manager, stage: str, policy: Path | None, **kwargs) -> dict:
    from training.jobs import TrainRequest

    overrides = kwargs.pop("overrides", {})
    request = TrainRequest(
        stage, policy=str(policy) if policy else None, overrides=overrides, **kwargs
    )
    status = manager.run(request)
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
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.25,
        help="Held-out share of prompts (more held-out pairs: a less noisy accuracy bar).",
    )
    parser.add_argument(
        "--policy",
        default=None,
        help="A model folder, or a shape (qwen2-0.5b, qwen2-tiny) for a randomly initialised "
        "model. Default: the embedded default, SFT-warmed by the real sft stage.",
    )
    parser.add_argument(
        "--precision-rows",
        action="store_true",
        help="Run (d), LoRA+bf16 vs full fp32, without a GPU too (it is on with one).",
    )
    parser.add_argument("--json-out", default=None, help="Also write the JSON result here.")
    args = parser.parse_args()

    import torch

    from data.store import PreferenceStore
    from training import runfiles
    from training.jobs import JobManager

    tmp = Path(tempfile.mkdtemp(prefix="prefloop-bench-train-"))
    store = PreferenceStore(tmp / "store.duckdb")
    import_slice(store, tmp, 0, args.pairs)
    manager = JobManager(store, tmp / "runs", inline=True)
    cuda = torch.cuda.is_available()
    result: dict = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch_threads": torch.get_num_threads(),
        "pairs": args.pairs,
        "load_average_start": os.getloadavg(),
    }

    if args.policy in SHAPES:
        policy = build_shape(args.policy, store, tmp)
        result["policy"] = f"{args.policy}, randomly initialised"
    elif args.policy:  # a folder, or a named model (converted once, e.g. smollm2-135m-instruct)
        from data.models import resolve_model

        policy = Path(resolve_model(args.policy))
        result["policy"] = args.policy
    else:  # SFT-warm the embedded default on the store's chosen responses (the real `sft` stage)
        sft = run(manager, "sft", None, test_fraction=args.test_fraction)
        policy = Path(sft["artifact_path"])
        result["policy"] = "embedded default, SFT-warmed"
        result["sft"] = {
            "wall_s": sft["metrics"]["wall_s"],
            "steps": sft["metrics"]["steps"],
            "heldout_loss": round(sft["metrics"]["heldout_loss"], 3),
        }
    result["policy_parameters"] = sum(
        p.numel()
        for p in __import__("transformers")
        .AutoModelForCausalLM.from_pretrained(policy)
        .parameters()
    )
    common = {"batch_size": 8, "max_length": 256, "eval_every": 0, "learning_rate": 5e-4}

    # TRL defaults: full fine-tune, a reference model copy run on every step, random batches,
    # gradient checkpointing on (DPOConfig's default), every position scored by the LM head on CPU
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
            "gradient_checkpointing": True,
            "compact_scoring": False,
            "learning_rate": 5e-5,
        },
        test_fraction=args.test_fraction,
    )
    # first iteration (the parent): one full epoch, every pair needs a reference forward pass
    # ((c)'s first figure); its steps give prefloop's step time for (a); it is the promoted
    # parent of (b) and its held-out accuracy is (b)'s bar
    epoch = round(store.count("labels") * (1 - args.test_fraction) / common["batch_size"])
    first = run(
        manager,
        "dpo",
        policy,
        max_steps=epoch,
        test_fraction=args.test_fraction,
        overrides=common,
    )
    a_ours, a_trl = step_seconds(Path(first["run_dir"])), step_seconds(Path(trl_default["run_dir"]))
    result["a_dpo_step_time"] = {
        "prefloop_s_per_step": round(a_ours, 4),
        "trl_defaults_s_per_step": round(a_trl, 4),
        "ratio": round(a_ours / a_trl, 3),
        "goal": "<= 0.6",
        "prefloop": "LoRA r=16 + cached reference + length buckets, no gradient checkpointing,"
        " completion tokens only through the LM head",
        "trl_defaults": "full fine-tune + reference model forward each step + random batches"
        " + gradient checkpointing + LM head over every position (TRL on CPU)",
    }

    if cuda or args.precision_rows:
        # (d): same data and steps; the full fine-tune keeps TRL's reference model copy
        precision = {}
        for name, overrides in (
            ("lora_bf16", {**common, "bf16": True}),
            ("full_fp32", {**common, "use_lora": False, "bf16": False, "learning_rate": 5e-5}),
        ):
            status = run(
                manager,
                "dpo",
                policy,
                max_steps=args.steps,
                overrides=overrides,
                test_fraction=args.test_fraction,
            )
            precision[name] = {
                "tokens_per_s": round(tokens_per_second(Path(status["run_dir"])), 1),
                "s_per_step": round(step_seconds(Path(status["run_dir"])), 4),
                "peak_gpu_memory_gb": status["metrics"].get("peak_gpu_memory_gb"),
            }
        precision["tokens_per_s_ratio"] = round(
            precision["lora_bf16"]["tokens_per_s"] / precision["full_fp32"]["tokens_per_s"], 3
        )
        result["d_precision"] = precision

    # +10% labels
    import_slice(store, tmp, args.pairs, args.pairs // 10)
    bar = first["metrics"]["heldout_accuracy"]
    to_bar = {**common, "eval_every": args.eval_every, "stop_at_accuracy": bar, "patience": 0}
    # the from-scratch run gets a copy of the store as it is now, so neither run finds the new
    # pairs' reference log-probs cached by the other (both pay for them, as in real use)
    manager.close()
    store.close()
    shutil.copy(tmp / "store.duckdb", tmp / "store-scratch.duckdb")
    store = PreferenceStore(tmp / "store.duckdb")
    manager = JobManager(store, tmp / "runs", inline=True)
    scratch_store = PreferenceStore(tmp / "store-scratch.duckdb")
    scratch_manager = JobManager(scratch_store, tmp / "runs-scratch", inline=True)
    # second iteration: incremental (new + replay); its reference time is (c)'s second figure
    incremental = run(
        manager,
        "dpo",
        policy,
        incremental=True,
        max_steps=args.max_steps,
        test_fraction=args.test_fraction,
        overrides=to_bar,
    )
    scratch = run(
        scratch_manager,
        "dpo",
        policy,
        max_steps=args.max_steps,
        test_fraction=args.test_fraction,
        overrides=to_bar,
    )

    def summary(status: dict) -> dict:
        rows = runfiles.read_metrics(Path(status["run_dir"]))
        return {
            "wall_s": status["metrics"]["wall_s"],
            "steps": status["metrics"]["steps"],
            "train_rows": status["metrics"]["train_rows"],
            "reached": any("reached_target" in m for m in rows),
            "heldout_accuracy": status["metrics"]["heldout_accuracy"],
            "evaluations": [
                (m["step"], round(m["eval_rewards/accuracies"], 3))
                for m in rows
                if "eval_rewards/accuracies" in m and "reached_target" not in m
            ],
        }

    inc, scr = summary(incremental), summary(scratch)
    result["b_incremental_vs_scratch"] = {
        "bar_heldout_accuracy": bar,
        "bar": "the parent's held-out accuracy (the promotion gate's bar)",
        "parent_steps": first["metrics"]["steps"],
        "heldout_pairs": incremental["metrics"]["heldout_used"],
        "incremental": inc,
        "scratch": scr,
        "ratio": round(inc["wall_s"] / scr["wall_s"], 3),
        "comparable": inc["reached"] and scr["reached"],
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
    result["load_average_end"] = os.getloadavg()
    result["gpu"] = result["device"] if cuda else "none: the GPU rows were not run"
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = json.dumps(result, indent=1)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    for closing in (manager, store, scratch_manager, scratch_store):
        closing.close()


if __name__ == "__main__":
    main()
