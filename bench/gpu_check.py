"""The GPU check of issue 18: one JSON with what only a GPU machine can measure.

    bash bench/gpu_check.sh                      # on a machine with one CUDA GPU, < 8 min
    python bench/gpu_check.py --shape qwen2-tiny --steps 4   # a dry run of the path on CPU

(a) DPO tokens/s and peak GPU memory, LoRA + bf16 against a full fp32 fine-tune, on a
    randomly initialised model of the Qwen2-0.5B shape (bench/train.py's shapes and
    helpers; goal: LoRA+bf16 >= 3x the tokens/s).
(b) `prefloop generate` through in-process vLLM (training/generate.py picks vLLM when it
    is installed and CUDA is present), if vLLM is installed.
(c) Two DPO steps under DeepSpeed ZeRO-3 (`--distributed zero3`, one process per GPU),
    if DeepSpeed is installed.

A section that cannot run says why (`skipped`) and one that fails keeps its error, so
the JSON always comes out. Trainers run in-process (`JobManager(inline=True)`), except
ZeRO-3, which goes through `accelerate launch` as users run it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")


def bench_train():
    """bench/train.py as a module (its shapes, data import and step timing)."""
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "bench" / "train.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def section(result: dict, name: str, fn) -> None:
    started = time.perf_counter()
    try:
        result[name] = fn()
    except Exception as exc:  # keep the JSON: a failed section says how
        result[name] = {
            "error": f"{type(exc).__name__}: {exc}",
            "trace": traceback.format_exc()[-2000:],
        }
    result[name]["section_s"] = round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="qwen2-0.5b", help="qwen2-0.5b, or qwen2-tiny on CPU.")
    parser.add_argument("--pairs", type=int, default=240, help="HH-RLHF pairs in the store.")
    parser.add_argument("--steps", type=int, default=12, help="DPO steps per precision run.")
    parser.add_argument("--json-out", default=None, help="Also write the JSON here.")
    args = parser.parse_args()

    import torch

    from data.store import PreferenceStore
    from training.jobs import JobManager, TrainRequest

    bt = bench_train()
    cuda = torch.cuda.is_available()
    tmp = Path(tempfile.mkdtemp(prefix="prefloop-gpu-check-"))
    store = PreferenceStore(tmp / "store.duckdb")
    bt.import_slice(store, tmp, 0, args.pairs)
    policy = bt.build_shape(args.shape, store, tmp)
    manager = JobManager(store, tmp / "runs", inline=True)
    result: dict = {
        "bench": "gpu_check",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "gpus": torch.cuda.device_count(),
        "torch": torch.__version__,
        "policy": f"{args.shape}, randomly initialised",
    }
    common = {"batch_size": 8, "max_length": 256, "eval_every": 0, "learning_rate": 5e-4}

    def precision() -> dict:
        out: dict = {}
        for name, overrides in (
            ("lora_bf16", {**common, "bf16": True}),
            ("full_fp32", {**common, "use_lora": False, "bf16": False, "learning_rate": 5e-5}),
        ):
            status = bt.run(manager, "dpo", policy, max_steps=args.steps, overrides=overrides)
            run_dir = Path(status["run_dir"])
            out[name] = {
                "tokens_per_s": round(bt.tokens_per_second(run_dir), 1),
                "s_per_step": round(bt.step_seconds(run_dir), 4),
                "peak_gpu_memory_gb": status["metrics"].get("peak_gpu_memory_gb"),
            }
        out["tokens_per_s_ratio"] = round(
            out["lora_bf16"]["tokens_per_s"] / out["full_fp32"]["tokens_per_s"], 3
        )
        out["goal_ratio"] = 3.0
        return out

    def vllm_generate() -> dict:
        if importlib.util.find_spec("vllm") is None or not cuda:
            return {"skipped": "vLLM is not installed" if cuda else "no CUDA GPU"}
        status = manager.run(
            TrainRequest(
                "generate",
                policy=str(policy),
                max_prompts=64,
                overrides={"n": 4, "max_new_tokens": 64},
            )
        )
        metrics = status.get("metrics") or {}
        return {
            "status": status["status"],
            "engine": metrics.get("engine"),
            "prompts": metrics.get("prompts"),
            "generated": metrics.get("generated"),
            "wall_s": metrics.get("wall_s"),
            "log_tail": None if status["status"] == "succeeded" else status.get("log_tail"),
        }

    def zero3() -> dict:
        if importlib.util.find_spec("deepspeed") is None or not cuda:
            return {"skipped": "DeepSpeed is not installed" if cuda else "no CUDA GPU"}
        processes = max(1, torch.cuda.device_count())
        launcher = JobManager(store, tmp / "runs-zero3")  # a subprocess through accelerate
        try:
            status = launcher.run(
                TrainRequest(
                    "dpo",
                    policy=str(policy),
                    max_steps=2,
                    num_processes=processes,
                    distributed="zero3",
                    overrides={**common, "use_lora": False, "bf16": True},
                ),
                timeout=300,
            )
        finally:
            launcher.close()
        metrics = status.get("metrics") or {}
        return {
            "status": status["status"],
            "processes": processes,
            "steps": metrics.get("steps"),
            "wall_s": metrics.get("wall_s"),
            "peak_gpu_memory_gb": metrics.get("peak_gpu_memory_gb"),
            "log_tail": None if status["status"] == "succeeded" else status.get("log_tail"),
        }

    section(result, "a_dpo_precision", precision)
    section(result, "b_vllm_generate", vllm_generate)
    section(result, "c_zero3_steps", zero3)
    manager.close()
    store.close()
    text = json.dumps(result, indent=2, default=str)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
