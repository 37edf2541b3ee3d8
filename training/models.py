"""Models and tokenizers for the stages: the base policy (or the embedded default), LoRA,
warm starts, and the parameter-change checks the tests rely on.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data.errors import TrainingError
from data.models import NAMED_MODELS, converted_folder, is_named, resolve_model
from training.run_context import RunContext
from training.runfiles import ARTIFACT, CPU_THREADS_ENV
from training.stage_config import StageConfig


def cpu_threads(world_size: int = 1) -> int:
    """Torch threads of one trainer process on CPU: the machine's cores, or the share its
    owner gave it ($PREFLOOP_CPU_THREADS: a pipelined loop runs a generation next to a
    training run, and two processes with a thread per core each would oversubscribe the
    cores), split between the run's processes."""
    cores = int(os.environ.get(CPU_THREADS_ENV) or os.cpu_count() or 1)
    return max(1, cores // max(1, world_size))


def device_kind() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def bf16_ok() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def use_bf16(cfg: StageConfig) -> bool:
    """The run's mixed-precision choice: the config's, else bf16 where the GPU supports it."""
    return bf16_ok() if cfg.bf16 is None else cfg.bf16


def resolve_policy(ctx: RunContext, cfg: StageConfig, rows: list[dict[str, Any]]) -> str:
    """The base policy folder or hub id: a named model's converted folder (converted on
    first use), or the embedded default built here when asked for `tiny`."""
    policy = ctx.config.get("policy") or "tiny"
    if policy != "tiny":
        if is_named(policy) and converted_folder(policy) is None:
            ctx.status("running", message=f"converting {policy} (first use only)")
        return resolve_model(policy)
    out = ctx.run_dir / "base_policy"
    done = out / ".done"
    if ctx.is_main:
        if not done.exists():
            texts = (
                [r["prompt"] for r in rows]
                + [r["chosen"] for r in rows]
                + [r["rejected"] for r in rows]
            )
            build_tiny_policy(texts, out, cfg)
            done.write_text("ok")
    else:
        deadline = time.time() + 600
        while not done.exists():
            if time.time() > deadline:
                raise TrainingError("rank 0 did not build the default policy within 10 minutes")
            time.sleep(0.2)
    return str(out)


def base_label(ctx: RunContext, policy: str) -> str:
    """What an adapter records as its base (`prefloop_base.txt`): the model's name when it
    is a named model (the folder is found again from the name), else the folder itself."""
    name = ctx.config.get("policy")
    return name if is_named(name) else policy


def save_adapter(ctx: RunContext, model: Any, tokenizer: Any, policy: str) -> None:
    """The run's artifact: the trained adapter (or model), its tokenizer, and the base it
    was trained on (`prefloop_base.txt`: what generation, rewards and evaluation load it on)."""
    if not ctx.is_main:
        return
    out = ctx.run_dir / ARTIFACT
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "prefloop_base.txt").write_text(base_label(ctx, policy), encoding="utf-8")


def build_tiny_policy(texts: list[str], out: Path, cfg: StageConfig) -> None:
    """A GPT-2-shaped causal LM of a few million parameters with a BPE trained on `texts`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    eos = "<|endoftext|>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.tiny_vocab,
        special_tokens=[eos],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=eos,
        bos_token=eos,
        pad_token=eos,
        unk_token=eos,
        model_max_length=1024,
    )
    eos_id = tokenizer.convert_tokens_to_ids(eos)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=1024,
        n_embd=cfg.tiny_width,
        n_layer=cfg.tiny_layers,
        n_head=max(1, cfg.tiny_width // 64),
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    torch.manual_seed(cfg.seed)
    model = GPT2LMHeadModel(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


@contextlib.contextmanager
def loading_policy(policy: str) -> Iterator[None]:
    """A policy that cannot be loaded fails with one message that says what a name means."""
    try:
        yield
    except OSError as exc:
        raise TrainingError(
            f"could not load --policy {policy!r}: {str(exc).rstrip('.')}. A name that is not a local folder, "
            f"'tiny' or {', '.join(NAMED_MODELS)} is taken as a Hugging Face hub id (gpt2, "
            "HuggingFaceTB/SmolLM2-135M-Instruct) and needs the network or the hub cache; "
            "offline, pass a local folder or smollm2-135m-instruct"
        ) from None


def load_tokenizer(policy: str):
    from transformers import AutoTokenizer

    with loading_policy(policy):
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(policy))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.truncation_side = "left"
    return tokenizer


def lora_config(cfg: StageConfig, task_type: str):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type=task_type,
    )


def load_causal_lm(policy: str, warm_start: str | None, cfg: StageConfig, trainable: bool = True):
    """Base model, with the warm-start adapter (trainable) or a fresh LoRA when `use_lora`."""
    import torch
    from transformers import AutoModelForCausalLM

    # a frozen LoRA base can live in bf16; trained full weights stay fp32 (bf16 autocast)
    dtype = torch.bfloat16 if use_bf16(cfg) and cfg.use_lora else torch.float32
    with loading_policy(policy):
        model = AutoModelForCausalLM.from_pretrained(resolve_model(policy), dtype=dtype)
    if warm_start:
        from peft import PeftModel

        if not (Path(warm_start) / "adapter_config.json").exists():
            raise TrainingError(
                f"warm start {warm_start} is a full model, not a LoRA adapter; run "
                "without --incremental, or pass it as --policy to fine-tune it further"
            )
        return PeftModel.from_pretrained(model, warm_start, is_trainable=trainable), None
    return model, (lora_config(cfg, "CAUSAL_LM") if cfg.use_lora else None)


def param_change(before: dict[str, Any], model: Any) -> float:
    """Largest absolute change of any trainable parameter since `before` (a state snapshot)."""

    change = 0.0
    for name, param in model.named_parameters():
        if name in before:
            change = max(change, float((param.detach().float().cpu() - before[name]).abs().max()))
    return change


def trainable_snapshot(model: Any) -> dict[str, Any]:
    return {
        n: p.detach().float().cpu().clone() for n, p in model.named_parameters() if p.requires_grad
    }
