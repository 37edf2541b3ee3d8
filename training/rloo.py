"""RLOO stage: TRL `RLOOTrainer` with the reward model or ensemble as `reward_funcs`.

Critic-free like GRPO: each prompt gets `num_generations` completions, and a completion's
advantage is its reward minus the mean reward of the other completions of its prompt
(REINFORCE leave-one-out). The loop, the LoRA policy and the promotion gate are GRPO's
(`training.grpo.train_critic_free`); only TRL's trainer and config differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.grpo import GRPOStageConfig, train_critic_free
from training.run_context import RunContext
from training.stage_config import help_field


@dataclass(frozen=True)
class RLOOStageConfig(GRPOStageConfig):
    """RLOO through TRL (fields as GRPO's; TRL's RLOO default KL weight)."""

    beta: float = help_field(0.05, "KL penalty to the reference (adapter-disabled base).")


def run(ctx: RunContext) -> None:
    from trl import RLOOConfig, RLOOTrainer

    train_critic_free(ctx, RLOOStageConfig, RLOOConfig, RLOOTrainer)
