"""Pre-generated PPO rollouts: a PPO run's first batch, sampled ahead of the run.

In rm+ppo a round's PPO run cannot start before the round's reward model is trained, but
what it samples first does not depend on that model: its first batch's prompts and its
starting policy (the base with a fresh adapter, or the promoted PPO adapter it warm
starts from) are known once the round's cut-off is. A pipelined loop runs this next to
the reward model's training; the PPO run then scores these samples instead of drawing
its own (its first batch costs no generation), and its gate's "before" reward scores
the greedy completions made here. The samples are as random as the run's own would be,
but not the same draw, so a run with them differs from one without.

It plans as the PPO run does (the same snapshot, cut-off, warm start, settings and seed),
and writes `pre_rollouts.pt` with the key the PPO run checks (`ppo.pre_rollout_key`).
"""

from __future__ import annotations

from training.ppo import (
    PPOStageConfig,
    first_batch,
    load_policy,
    pre_rollout_key,
    rollout_prompts,
    sample,
)
from training.rl_gate import greedy_completions
from training.run_context import RunContext

PRE_ROLLOUTS = "pre_rollouts.pt"

__all__ = ["PPOStageConfig", "PRE_ROLLOUTS", "run"]


def run(ctx: RunContext) -> None:
    import torch

    cfg = ctx.stage_config(PPOStageConfig)
    torch.manual_seed(cfg.seed)
    prompts, heldout, counts, rows = rollout_prompts(ctx, cfg)
    _, tokenizer, model = load_policy(ctx, cfg, rows)
    model.eval()
    ctx.follow_cpu_share_in(model)
    first = first_batch(prompts, cfg)
    ctx.status("running", message=f"sampling the first batch of {len(first)} prompts")
    sampled = sample(model, tokenizer, first, cfg)
    completions = (
        greedy_completions(
            model,
            tokenizer,
            heldout,
            max_new_tokens=cfg.max_new_tokens,
            max_prompt_tokens=cfg.max_prompt_tokens,
        )
        if heldout
        else []
    )
    if ctx.is_main:
        torch.save(
            {
                "key": pre_rollout_key(ctx, cfg, first, heldout),
                "ids": sampled["ids"],
                "prompt_mask": sampled["prompt_mask"],
                "heldout_completions": completions,
            },
            ctx.run_dir / PRE_ROLLOUTS,
        )
    metrics = {"first_batch": len(first), "heldout_prompts": len(heldout), **counts}
    ctx.finish(metrics, artifact=PRE_ROLLOUTS, promote=False)
