"""PPO stage, written here (trl 1.16 has no PPOTrainer).

* Policy: the base model with a LoRA adapter, plus a scalar value head on the same
  backbone's last hidden state; the reference is the same model with the adapter disabled
  (one model in memory).
* Reward: a reward model run's artifact or an embedding ensemble (conservative
  `mean - lambda * std`), scored on the whole completion, plus a per-token KL penalty
  to the reference whose coefficient follows an adaptive KL controller.
* Advantages by GAE; clipped policy and value losses; several PPO epochs over
  minibatches of each rollout batch.
* Early stopping when the mean reward has not improved over the last N updates, or the
  KL to the reference passes a bound.
* Promotion gate (`training.rl_gate`): the run is promoted only if the reward of greedy
  completions on held-out prompts did not drop and the KL stayed within the bound.

The arithmetic lives in `training.ppo_core` (unit-tested against hand-computed values).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from data.errors import ConfigError
from training.models import (
    base_label,
    load_causal_lm,
    load_tokenizer,
    param_change,
    resolve_policy,
    trainable_snapshot,
)
from training.rl_gate import heldout_reward, mean_reward, rl_gate
from training.run_context import RunContext, select_rows
from training.runfiles import ARTIFACT
from training.stage_config import StageConfig, help_field


@dataclass(frozen=True)
class PPOStageConfig(StageConfig):
    """PPO with LoRA policy, value head and adaptive KL."""

    max_steps: int = help_field(20, "PPO updates (one rollout batch each).")
    learning_rate: float = help_field(5e-4, "AdamW learning rate for LoRA and value head.")
    rollout_batch: int = help_field(8, "Prompts sampled per rollout.")
    minibatch: int = help_field(4, "Sequences per gradient step inside a PPO epoch.")
    ppo_epochs: int = help_field(4, "Passes over each rollout batch.")
    max_new_tokens: int = help_field(24, "Tokens generated per response.")
    max_prompt_tokens: int = help_field(128, "Prompt tokens kept (from the end).")
    gamma: float = help_field(1.0, "Discount factor.")
    lam: float = help_field(0.95, "GAE lambda.")
    clip_range: float = help_field(0.2, "Policy ratio clip epsilon.")
    value_clip: float = help_field(0.2, "Value prediction clip around the rollout's values.")
    vf_coef: float = help_field(0.1, "Weight of the value loss.")
    init_kl_coef: float = help_field(0.05, "Initial KL penalty coefficient.")
    target_kl: float = help_field(6.0, "Adaptive KL controller: target KL per sequence.")
    kl_horizon: int = help_field(10_000, "Adaptive KL controller: horizon in samples.")
    conservative_lambda: float = help_field(1.0, "Ensemble rewards: mean - lambda * std.")
    whiten_advantages: bool = help_field(True, "Normalise advantages per rollout batch.")
    stop_patience: int = help_field(
        5, "Stop if mean reward has not improved over this many updates (0: off)."
    )
    stop_min_delta: float = help_field(0.01, "Improvement that counts for stop_patience.")
    kl_bound: float = help_field(20.0, "Stop when mean KL per sequence exceeds this.")
    max_grad_norm: float = help_field(1.0, "Gradient clipping norm.")
    pre_rollouts: str | None = help_field(
        None,
        "A `rollouts` run's file (`prefloop loop` makes one while the reward model trains): "
        "the first batch's samples and the gate's starting greedy completions come from it "
        "when it was made for this run's policy, warm start, prompts and lengths.",
    )


def first_batch(prompts: list[str], cfg: PPOStageConfig) -> list[str]:
    """The prompts of a run's first rollout (its seeded sampler's first draw)."""
    return random.Random(cfg.seed).sample(prompts, min(len(prompts), cfg.rollout_batch))


def _forward(model, value_head, ids, attn, prompt_len: int):
    """Log-probs of the response tokens and the value before each of them."""
    import torch

    pos = (attn.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, output_hidden_states=True)
    logits = out.logits[:, prompt_len - 1 : -1].float()
    logp = (
        torch.log_softmax(logits, dim=-1).gather(-1, ids[:, prompt_len:].unsqueeze(-1)).squeeze(-1)
    )
    values = value_head(out.hidden_states[-1][:, prompt_len - 1 : -1].float()).squeeze(-1)
    return logp, values


def sample(model, tokenizer, prompts: list[str], cfg: PPOStageConfig) -> dict[str, Any]:
    """Sampled completions of `prompts` (left-padded): the token ids, prompt and all."""
    import torch

    enc = tokenizer(
        prompts,
        return_tensors="pt",
        padding=True,
        truncation=True,
        max_length=cfg.max_prompt_tokens,
    )
    with torch.no_grad():
        generated = model.generate(
            **enc,
            do_sample=True,
            top_k=0,
            top_p=1.0,
            temperature=1.0,
            max_new_tokens=cfg.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    return {"ids": generated, "prompt_mask": enc["attention_mask"]}


def rollout(model, value_head, tokenizer, sampled: dict[str, Any]) -> dict[str, Any]:
    """A rollout batch from sampled ids: response mask, log-probs, values, reference log-probs."""
    import torch

    generated, prompt_mask = sampled["ids"], sampled["prompt_mask"]
    eos = tokenizer.eos_token_id
    prompt_len = prompt_mask.shape[1]
    response = generated[:, prompt_len:]
    is_eos = (response == eos).long()
    mask = ((is_eos.cumsum(1) - is_eos) == 0).float()  # up to and including the first eos
    attn = torch.cat([prompt_mask, mask.long()], dim=1)
    with torch.no_grad():
        old_logp, old_values = _forward(model, value_head, generated, attn, prompt_len)
        with model.disable_adapter():
            ref_logp, _ = _forward(model, value_head, generated, attn, prompt_len)
    completions = [
        tokenizer.decode(r[: int(m.sum())], skip_special_tokens=True)
        for r, m in zip(response, mask, strict=True)
    ]
    return {
        "ids": generated,
        "attn": attn,
        "prompt_len": prompt_len,
        "mask": mask,
        "old_logp": old_logp,
        "old_values": old_values,
        "ref_logp": ref_logp,
        "completions": completions,
    }


def rollout_prompts(
    ctx: RunContext, cfg: PPOStageConfig
) -> tuple[list[str], list[str], dict[str, Any], list[dict[str, Any]]]:
    """(train prompts, held-out prompts, counts, snapshot rows) of a run."""
    rows = ctx.snapshot()
    train_rows, test_rows, counts = select_rows(ctx, rows, cfg)
    prompts = sorted({r["prompt"] for r in train_rows})
    heldout = sorted({r["prompt"] for r in test_rows})[: cfg.rollout_batch]
    return prompts, heldout, counts, rows


def load_policy(ctx: RunContext, cfg: PPOStageConfig, rows: list[dict[str, Any]]):
    """(base policy, tokenizer, model with its LoRA adapter: the run's starting policy)."""
    from peft import get_peft_model

    policy = resolve_policy(ctx, cfg, rows)
    tokenizer = load_tokenizer(policy)
    tokenizer.padding_side = "left"
    model, lora = load_causal_lm(policy, ctx.config.get("warm_start"), cfg)
    if lora is not None:
        model = get_peft_model(model, lora)
    return policy, tokenizer, model


def pre_rollout_key(
    ctx: RunContext, cfg: PPOStageConfig, first: list[str], heldout: list[str]
) -> dict[str, Any]:
    """What a pre-generated first batch must match to stand in for the run's own sampling."""
    return {
        "policy": ctx.config.get("policy"),
        "warm_start": ctx.config.get("warm_start"),
        "first_batch": first,
        "heldout": heldout,
        "max_new_tokens": cfg.max_new_tokens,
        "max_prompt_tokens": cfg.max_prompt_tokens,
    }


def read_pre_rollouts(path: str | None, key: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The pre-generated first batch at `path` when it was made for this run, and why not."""
    import torch

    if not path:
        return None, "none given"
    try:
        saved = torch.load(path)
    except (OSError, RuntimeError) as exc:
        return None, f"unreadable: {exc}"
    if saved.get("key") != key:
        return None, "made for another policy, warm start, prompts or lengths"
    return saved, "used"


def run(ctx: RunContext) -> None:
    import torch

    from training.ppo_core import (
        AdaptiveKLController,
        PlateauStopper,
        gae,
        kl_penalized_rewards,
        masked_mean,
        policy_loss,
        value_loss,
        whiten,
    )
    from training.rewards import load_reward_fn

    cfg = ctx.stage_config(PPOStageConfig)
    if not cfg.use_lora:
        raise ConfigError(
            "PPO here needs use_lora=true: the reference is the adapter-disabled base"
        )
    torch.manual_seed(cfg.seed)
    prompts, heldout, counts, rows = rollout_prompts(ctx, cfg)
    policy, tokenizer, model = load_policy(ctx, cfg, rows)
    value_head = torch.nn.Linear(
        model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.n_embd, 1
    )
    torch.nn.init.zeros_(value_head.weight)
    torch.nn.init.zeros_(value_head.bias)
    warm = ctx.config.get("warm_start")
    if warm:
        value_head.load_state_dict(torch.load(f"{warm}/value_head.pt"))
    reward_fn = load_reward_fn(ctx.config.get("reward"), cfg.conservative_lambda, cfg.max_length)
    params = [p for p in model.parameters() if p.requires_grad] + list(value_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate)
    kl_ctl = AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon)
    stopper = PlateauStopper(cfg.stop_patience, cfg.stop_min_delta, cfg.kl_bound)
    rng = random.Random(cfg.seed)
    first_prompts = first_batch(prompts, cfg)
    pre, pre_status = read_pre_rollouts(
        cfg.pre_rollouts, pre_rollout_key(ctx, cfg, first_prompts, heldout)
    )
    before = trainable_snapshot(model)
    history: list[float] = []
    gate_lengths = {
        "max_new_tokens": cfg.max_new_tokens,
        "max_prompt_tokens": cfg.max_prompt_tokens,
    }
    if pre is not None and heldout:  # the starting policy's greedy completions, made ahead
        reward_before = mean_reward(reward_fn, heldout, pre["heldout_completions"])
    else:
        reward_before = heldout_reward(model, tokenizer, heldout, reward_fn, **gate_lengths)
    mean_kl: float | None = None

    step = 0
    for step in range(1, cfg.max_steps + 1):
        batch_prompts = rng.sample(prompts, min(len(prompts), cfg.rollout_batch))
        model.eval()
        if step == 1 and pre is not None:  # sampled while the reward model trained
            sampled = {"ids": pre["ids"], "prompt_mask": pre["prompt_mask"]}
        else:
            sampled = sample(model, tokenizer, batch_prompts, cfg)
        roll = rollout(model, value_head, tokenizer, sampled)
        scores = torch.tensor(reward_fn(batch_prompts, roll["completions"]), dtype=torch.float32)
        mask = roll["mask"]
        rewards, kl = kl_penalized_rewards(
            scores, roll["old_logp"], roll["ref_logp"], mask, kl_ctl.value
        )
        advantages, returns = gae(rewards, roll["old_values"], mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = whiten(advantages, mask) * mask
        model.train()
        stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "clip_frac": []}
        n = len(batch_prompts)
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(n)
            for start in range(0, n, cfg.minibatch):
                mb = order[start : start + cfg.minibatch]
                logp, values = _forward(
                    model, value_head, roll["ids"][mb], roll["attn"][mb], roll["prompt_len"]
                )
                pl, clip_frac = policy_loss(
                    logp, roll["old_logp"][mb], advantages[mb], mask[mb], cfg.clip_range
                )
                vl = value_loss(
                    values, roll["old_values"][mb], returns[mb], mask[mb], cfg.value_clip
                )
                loss = pl + cfg.vf_coef * vl
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                stats["policy_loss"].append(float(pl))
                stats["value_loss"].append(float(vl))
                stats["clip_frac"].append(float(clip_frac))
        mean_kl = float(kl.sum(dim=1).mean())
        mean_score = float(scores.mean())
        history.append(mean_score)
        row = {
            "step": step,
            "reward": mean_score,
            "kl": mean_kl,
            "kl_coef": kl_ctl.value,
            "response_tokens": float(mask.sum(1).mean()),
            "advantage_mean": float(masked_mean(advantages, mask)),
            **{k: sum(v) / len(v) for k, v in stats.items()},
        }
        kl_ctl.update(mean_kl, n)
        ctx.log_metrics(row)
        ctx.status("running", step=step, max_steps=cfg.max_steps)
        if stopper.should_stop(mean_score, mean_kl):
            ctx.log_metrics({"step": step, "early_stop": stopper.reason})
            break

    metrics: dict[str, Any] = {
        "steps": step,
        "final_reward": history[-1] if history else None,
        "first_reward": history[0] if history else None,
        "kl_coef": kl_ctl.value,
        "early_stop": stopper.reason,
        "param_change": param_change(before, model),
        "pre_rollouts": pre_status,
        **counts,
    }
    metrics["heldout_reward"] = heldout_reward(model, tokenizer, heldout, reward_fn, **gate_lengths)
    promote, metrics["gate"] = rl_gate(
        reward_before, metrics["heldout_reward"], mean_kl, cfg.kl_bound
    )
    if ctx.is_main:
        out = ctx.run_dir / ARTIFACT
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        torch.save(value_head.state_dict(), out / "value_head.pt")
        (out / "prefloop_base.txt").write_text(base_label(ctx, policy), encoding="utf-8")
    ctx.finish(metrics, artifact=ARTIFACT, promote=promote, extra={"base_policy": policy})
