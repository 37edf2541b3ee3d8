"""Generation job: sample `n` responses per prompt from a policy (base + adapter merged).

Batched `transformers` generation with a progress bar; vLLM when it is installed and a
GPU is present; or, with `--base-url`, OpenAI-compatible servers (`remote_generate.py`,
no torch in this process). Reads `prompts.parquet`, writes `generations.parquet` in the
run folder.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from data.errors import ConfigError
from data.models import resolve_model
from training.generation_io import GENERATIONS, PROMPTS
from training.models import load_tokenizer, loading_policy
from training.run_context import RunContext
from training.stage_config import config_from_dict, help_field


@dataclass(frozen=True)
class GenerateConfig:
    """Sampling settings (stored with every generated response)."""

    n: int = help_field(2, "Responses sampled per prompt.")
    max_new_tokens: int = help_field(48, "Tokens generated per response.")
    temperature: float = help_field(1.0, "Sampling temperature.")
    top_p: float = help_field(0.95, "Nucleus sampling mass.")
    batch_size: int = help_field(16, "Prompts per generation batch.")
    max_prompt_tokens: int = help_field(192, "Prompt tokens kept (from the end).")
    seed: int = help_field(0, "Sampling seed.")

    def __post_init__(self) -> None:  # checked at submit, for the CLI and the Train tab alike
        if self.n < 2:
            raise ConfigError(f"n = {self.n}: sample at least 2 responses per prompt to form pairs")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens = {self.max_new_tokens}: generate at least 1 token")


def load_policy(path: str):
    """A causal LM from a full model folder, a named model (`smollm2-135m-instruct`) or an
    adapter folder (merged into its base)."""
    import torch
    from transformers import AutoModelForCausalLM

    base_file = Path(path) / "prefloop_base.txt"
    if base_file.exists():
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(
            resolve_model(base_file.read_text(encoding="utf-8").strip()), dtype=torch.float32
        )
        return PeftModel.from_pretrained(base, path).merge_and_unload()
    with loading_policy(path):
        return AutoModelForCausalLM.from_pretrained(resolve_model(path), dtype=torch.float32)


def run(ctx: RunContext) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cfg = config_from_dict(GenerateConfig, dict(ctx.request.get("overrides") or {}))
    if ctx.config.get("endpoints"):
        _run_remote(ctx, cfg)
        return
    policy = ctx.config["policy"]
    prompts = pq.read_table(ctx.run_dir / PROMPTS).to_pylist()
    import torch
    from tqdm import tqdm

    sampling = {**asdict(cfg), "policy": policy}
    use_vllm = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    sampling["engine"] = "vllm" if use_vllm else "transformers"
    texts = [p["prompt"] for p in prompts]
    outputs = (
        _vllm(policy, texts, cfg) if use_vllm else _transformers(ctx, policy, texts, cfg, tqdm)
    )
    rows = {"prompt_id": [], "messages": [], "response": [], "sampling": []}
    for prompt, responses in zip(prompts, outputs, strict=True):
        for response in responses:
            rows["prompt_id"].append(prompt["prompt_id"])
            rows["messages"].append(prompt["messages"])
            rows["response"].append(response)
            rows["sampling"].append(json.dumps(sampling))
    pq.write_table(pa.table(rows), ctx.run_dir / GENERATIONS)
    ctx.finish(
        {"prompts": len(prompts), "generated": len(rows["response"]), "engine": sampling["engine"]},
        artifact=GENERATIONS,
        promote=False,
    )


def _run_remote(ctx: RunContext, cfg: GenerateConfig) -> None:
    """Sample from the run's endpoints; every response row keeps the sampling parameters
    sent, the endpoint that answered and the model name it answered with."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.remote_generate import ENGINE, Sampling, generate_remote

    request = ctx.request
    model = request["endpoint_model"]
    prompts = pq.read_table(ctx.run_dir / PROMPTS).to_pylist()
    sampling = Sampling(cfg.n, cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.seed)
    results, endpoints = generate_remote(
        [json.loads(p["messages"]) for p in prompts],
        sampling,
        urls=tuple(ctx.config["endpoints"]),
        model=model,
        concurrency=int(request.get("concurrency") or 8),
        per_endpoint_concurrency=request.get("per_endpoint_concurrency"),
        max_retries=int(request.get("max_retries", 3)),
        on_progress=lambda done, total: ctx.status("running", step=done, max_steps=total),
    )
    rows: dict[str, list[str]] = {"prompt_id": [], "messages": [], "response": [], "sampling": []}
    for prompt, result in zip(prompts, results, strict=True):
        meta = {
            **asdict(sampling),
            "engine": ENGINE,
            "requested_model": model,
            "model": result.served_model or model,
            "endpoint": result.endpoint,
        }
        for text in result.texts:
            rows["prompt_id"].append(prompt["prompt_id"])
            rows["messages"].append(prompt["messages"])
            rows["response"].append(text)
            rows["sampling"].append(json.dumps(meta))
    pq.write_table(pa.table(rows), ctx.run_dir / GENERATIONS)
    failed = [r.error for r in results if not r.texts]
    ctx.finish(
        {
            "prompts": len(prompts),
            "generated": len(rows["response"]),
            "engine": ENGINE,
            "failed_prompts": len(failed),
            "requests": sum(r.requests for r in results),
            "endpoints": endpoints,
        },
        artifact=GENERATIONS,
        promote=False,
    )


def _transformers(
    ctx: RunContext, policy: str, texts: list[str], cfg: GenerateConfig, tqdm
) -> list[list[str]]:
    import torch

    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(policy)
    tokenizer.padding_side = "left"
    model = load_policy(policy).eval()
    ctx.follow_cpu_share_in(model)  # a token at a time: the share can move mid-batch
    out: list[list[str]] = []
    for start in tqdm(range(0, len(texts), cfg.batch_size), desc="generating", unit="batch"):
        batch = texts[start : start + cfg.batch_size]
        enc = tokenizer(
            batch,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=cfg.max_prompt_tokens,
        )
        with torch.no_grad():
            generated = model.generate(
                **enc,
                do_sample=True,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                max_new_tokens=cfg.max_new_tokens,
                num_return_sequences=cfg.n,
                pad_token_id=tokenizer.pad_token_id,
            )
        decoded = tokenizer.batch_decode(
            generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
        )
        out += [decoded[i * cfg.n : (i + 1) * cfg.n] for i in range(len(batch))]
        ctx.status("running", step=min(start + cfg.batch_size, len(texts)), max_steps=len(texts))
    return out


def _vllm(
    policy: str, texts: list[str], cfg: GenerateConfig
) -> list[list[str]]:  # pragma: no cover - GPU only
    import tempfile

    from vllm import LLM, SamplingParams

    path = resolve_model(policy)
    if (Path(policy) / "prefloop_base.txt").exists():  # vLLM wants one merged folder
        path = tempfile.mkdtemp(prefix="prefloop-merged-")
        load_policy(policy).save_pretrained(path)
        load_tokenizer(policy).save_pretrained(path)
    llm = LLM(model=path, seed=cfg.seed)
    params = SamplingParams(
        n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_new_tokens
    )
    return [[o.text for o in result.outputs] for result in llm.generate(texts, params)]
