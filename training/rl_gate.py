"""Promotion gate of the RL stages (PPO, GRPO, RLOO): did the held-out reward hold up?

DPO and reward-model runs are gated on held-out preference accuracy (`run_context.gate`). A
policy trained against a reward has no such label-based score, so its gate compares
the reward of greedy completions on held-out prompts before training (the starting
policy: the base, or the parent for an incremental run) and after, and checks that the
KL to the reference stayed within the stage's bound. Greedy decoding makes the two
measurements comparable: the same prompts, no sampling noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RewardFn = Callable[[list[str], list[str]], list[float]]


def heldout_reward(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    reward_fn: RewardFn,
    *,
    max_new_tokens: int,
    max_prompt_tokens: int,
) -> float | None:
    """Mean reward of the model's greedy completions of `prompts` (None without prompts)."""
    if not prompts:
        return None
    completions = greedy_completions(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        max_prompt_tokens=max_prompt_tokens,
    )
    return mean_reward(reward_fn, prompts, completions)


def mean_reward(reward_fn: RewardFn, prompts: list[str], completions: list[str]) -> float:
    scores = reward_fn(list(prompts), list(completions))
    return float(sum(scores) / len(scores))


def greedy_completions(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    max_prompt_tokens: int,
) -> list[str]:
    """The model's greedy completions of `prompts` (what the gate scores)."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end
    try:
        enc = tokenizer(
            prompts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_prompt_tokens,
        ).to(model.device)
    finally:
        tokenizer.padding_side = side
    was_training = model.training
    model.eval()
    with torch.no_grad():
        generated = model.generate(
            **enc,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    if was_training:
        model.train()
    return tokenizer.batch_decode(
        generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
    )


def rl_gate(
    before: float | None, after: float | None, kl: float | None, kl_bound: float | None
) -> tuple[bool, dict[str, Any]]:
    """Promote unless the held-out reward dropped or the KL ran past its bound."""
    numbers: dict[str, Any] = {
        "heldout_reward_before": before,
        "heldout_reward_after": after,
        "kl": kl,
        "kl_bound": kl_bound,
    }
    if before is None or after is None:
        return True, {**numbers, "rule": "no held-out prompts to compare: promote"}
    reward_ok = after >= before
    kl_ok = kl is None or kl_bound is None or kl <= kl_bound
    return reward_ok and kl_ok, {
        **numbers,
        "rule": "promote if held-out reward after >= before and KL <= kl_bound",
    }
