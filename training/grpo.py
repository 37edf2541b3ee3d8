"""GRPO stage: TRL `GRPOTrainer` with the reward model or ensemble as `reward_funcs`
(critic-free: group-relative advantages over several completions per prompt), LoRA policy.
Promoted only if the held-out reward did not drop and the KL stayed within its bound
(`training.rl_gate`). `train_critic_free` is shared with the RLOO stage (`training.rloo`),
which differs only in its baseline.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, replace
from typing import Any

from data.errors import ConfigError
from training.hf_trainer import progress_callback, trainer_args
from training.models import (
    base_label,
    load_causal_lm,
    load_tokenizer,
    param_change,
    resolve_policy,
    trainable_snapshot,
)
from training.rl_gate import heldout_reward, rl_gate
from training.run_context import RunContext, select_rows
from training.runfiles import ARTIFACT
from training.stage_config import StageConfig, help_field


@dataclass(frozen=True)
class GRPOStageConfig(StageConfig):
    """GRPO through TRL."""

    max_steps: int = help_field(10, "Optimizer steps.")
    learning_rate: float = help_field(5e-4, "Peak learning rate.")
    num_generations: int = help_field(4, "Completions sampled per prompt (the group).")
    max_new_tokens: int = help_field(24, "Tokens generated per completion.")
    beta: float = help_field(0.04, "KL penalty to the reference (adapter-disabled base).")
    conservative_lambda: float = help_field(1.0, "Ensemble rewards: mean - lambda * std.")
    eval_every: int = help_field(0, "GRPO evaluation is generation-heavy: off by default.")
    gate_prompts: int = help_field(8, "Held-out prompts for the promotion gate's reward.")
    kl_bound: float = help_field(20.0, "Not promoted when the last logged KL exceeds this.")
    use_vllm: bool = help_field(
        False,
        "Generate the completions with vLLM (TRL's use_vllm; needs `pip install vllm` and a "
        "CUDA GPU). See vllm_mode.",
    )
    vllm_mode: str = help_field(
        "server",
        "With use_vllm: 'server' sends generation to a `trl vllm-serve --model POLICY` process "
        "(on other GPUs, at vllm_server_base_url); 'colocate' runs vLLM inside each trainer "
        "process, sharing its GPU.",
    )
    vllm_server_base_url: str | None = help_field(
        None,
        "vllm_mode=server: the URL of `trl vllm-serve`, e.g. http://10.0.0.2:8000 (default: "
        "TRL's, http://0.0.0.0:8000).",
    )
    vllm_gpu_memory_utilization: float = help_field(
        0.3, "vllm_mode=colocate: the share of the GPU's memory vLLM may take."
    )

    def __post_init__(self) -> None:  # at submit: a vLLM setting that cannot run fails now
        super().__post_init__()
        check_vllm_settings(self)


def check_vllm_settings(cfg: GRPOStageConfig) -> None:
    """Raise `ConfigError`, with the fix, for vLLM settings that TRL could not run."""
    if cfg.vllm_mode not in ("server", "colocate"):
        raise ConfigError(
            f"vllm_mode = {cfg.vllm_mode!r}: use --set vllm_mode=server (a `trl vllm-serve` "
            "process) or --set vllm_mode=colocate (vLLM inside the trainer)"
        )
    if not cfg.use_vllm:
        if cfg.vllm_server_base_url:
            raise ConfigError(
                "vllm_server_base_url is set but use_vllm is not: add --set use_vllm=true"
            )
        return
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "use_vllm=true needs vLLM, which is not installed here: on a Linux machine with a "
            "CUDA GPU run `pip install vllm` (and for vllm_mode=server start `trl vllm-serve "
            "--model POLICY` first), or drop --set use_vllm=true to generate with transformers"
        )
    if cfg.vllm_server_base_url and cfg.vllm_mode != "server":
        raise ConfigError(
            "vllm_server_base_url only applies to vllm_mode=server; drop it or set "
            "--set vllm_mode=server"
        )
    if cfg.vllm_server_base_url and not re.match(r"^https?://", cfg.vllm_server_base_url):
        raise ConfigError(
            f"vllm_server_base_url {cfg.vllm_server_base_url!r} is not an http(s) URL; write "
            "e.g. http://10.0.0.2:8000"
        )
    if not 0 < cfg.vllm_gpu_memory_utilization <= 1:
        raise ConfigError(
            f"vllm_gpu_memory_utilization = {cfg.vllm_gpu_memory_utilization}: give a share "
            "between 0 and 1, e.g. 0.3"
        )


def vllm_arguments(cfg: GRPOStageConfig) -> dict[str, Any]:
    """TRL's GRPOConfig/RLOOConfig arguments for the vLLM settings (none without use_vllm)."""
    if not cfg.use_vllm:
        return {}
    extra: dict[str, Any] = {"use_vllm": True, "vllm_mode": cfg.vllm_mode}
    if cfg.vllm_mode == "server" and cfg.vllm_server_base_url:
        extra["vllm_server_base_url"] = cfg.vllm_server_base_url
    if cfg.vllm_mode == "colocate":
        extra["vllm_gpu_memory_utilization"] = cfg.vllm_gpu_memory_utilization
    return extra


def run(ctx: RunContext) -> None:
    from trl import GRPOConfig, GRPOTrainer

    train_critic_free(ctx, GRPOStageConfig, GRPOConfig, GRPOTrainer)


def train_critic_free(
    ctx: RunContext, stage_config: type[GRPOStageConfig], trl_config: type, trl_trainer: type
) -> None:
    """Train with a TRL online trainer that takes `reward_funcs` (GRPO or RLOO) and gate it."""
    from datasets import Dataset

    from training.rewards import load_reward_fn

    cfg = ctx.stage_config(stage_config)
    rows = ctx.snapshot()
    train_rows, test_rows, counts = select_rows(ctx, rows, cfg)
    policy = resolve_policy(ctx, cfg, rows)
    tokenizer = load_tokenizer(policy)
    tokenizer.padding_side = "left"
    model, peft_config = load_causal_lm(policy, ctx.config.get("warm_start"), cfg)
    references = {r["prompt"]: r["chosen"] for r in rows}  # the judge reward compares to these
    score = load_reward_fn(
        ctx.config.get("reward"), cfg.conservative_lambda, cfg.max_length, references=references
    )

    def prefloop_reward(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        return score(list(prompts), list(completions))

    batch = max(cfg.batch_size // cfg.num_generations, 1) * cfg.num_generations  # whole groups
    args = trainer_args(
        ctx,
        replace(cfg, batch_size=batch, bucket_by_length=False),
        trl_config,
        0,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_new_tokens,
        beta=cfg.beta,
        **vllm_arguments(cfg),
    )
    prompts = sorted({r["prompt"] for r in train_rows})
    trainer = trl_trainer(
        model=model,
        reward_funcs=prefloop_reward,
        args=args,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
        peft_config=peft_config,
        callbacks=[progress_callback(ctx, None, 0)],
    )
    before = trainable_snapshot(trainer.model)
    heldout = sorted({r["prompt"] for r in test_rows})[: cfg.gate_prompts]
    gate_lengths = {"max_new_tokens": cfg.max_new_tokens, "max_prompt_tokens": cfg.max_length}
    reward_before = heldout_reward(trainer.model, tokenizer, heldout, score, **gate_lengths)
    output = trainer.train()
    rewards = [m["reward"] for m in trainer.state.log_history if "reward" in m]
    kls = [m["kl"] for m in trainer.state.log_history if "kl" in m]
    metrics = {
        "train_loss": output.training_loss,
        "steps": trainer.state.global_step,
        "param_change": param_change(before, trainer.model),
        "first_reward": rewards[0] if rewards else None,
        "final_reward": rewards[-1] if rewards else None,
        "heldout_reward": heldout_reward(trainer.model, tokenizer, heldout, score, **gate_lengths),
        **counts,
    }
    promote, metrics["gate"] = rl_gate(
        reward_before, metrics["heldout_reward"], kls[-1] if kls else None, cfg.kl_bound
    )
    if ctx.is_main:
        out = ctx.run_dir / ARTIFACT
        trainer.model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "prefloop_base.txt").write_text(base_label(ctx, policy), encoding="utf-8")
    ctx.finish(metrics, artifact=ARTIFACT, promote=promote, extra={"base_policy": policy})
