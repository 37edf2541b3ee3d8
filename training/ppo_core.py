"""The arithmetic of PPO for language models, as small pure functions over tensors.

Shapes: `[batch, T]` over response tokens, with `mask` 1 for real tokens. Each function
matches the formula in its docstring; tests check them against hand-computed values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return out if shift_mean else out + mean


def kl_penalized_rewards(
    score: torch.Tensor,
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token reward r_t = -kl_coef * (logp_t - ref_logp_t), plus the sequence score at
    the last real token. Returns (rewards, per-token kl)."""
    kl = (logp - ref_logp) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    rewards[torch.arange(rewards.size(0)), last] += score
    return rewards * mask, kl


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation.

    delta_t = r_t + gamma * V_{t+1} - V_t (V after the last real token is 0);
    A_t = delta_t + gamma * lam * A_{t+1}; returns R_t = A_t + V_t.
    """
    values = values * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(rewards.size(0), dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(rewards.size(1))):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < rewards.size(1) else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * mask


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate: mean over tokens of max(-A * ratio, -A * clip(ratio, 1-c, 1+c)).
    Returns (loss, fraction of tokens where clipping was active)."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_frac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clip_frac


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
) -> torch.Tensor:
    """0.5 * mean of max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


@dataclass
class AdaptiveKLController:
    """Ziegler et al. (2019): beta <- beta * (1 + clip(KL/target - 1, -0.2, 0.2) * n / horizon)."""

    value: float = 0.05
    target: float = 6.0
    horizon: int = 10_000

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


@dataclass
class PlateauStopper:
    """Stop when the mean reward has not improved by `min_delta` over the last `patience`
    updates, or when the KL to the reference exceeds `kl_bound`."""

    patience: int = 5
    min_delta: float = 0.01
    kl_bound: float = 20.0
    rewards: list[float] = field(default_factory=list)
    reason: str | None = None

    def should_stop(self, mean_reward: float, kl: float) -> bool:
        self.rewards.append(mean_reward)
        if kl > self.kl_bound:
            self.reason = f"kl {kl:.3f} > bound {self.kl_bound}"
            return True
        if self.patience and len(self.rewards) > self.patience:
            best_before = max(self.rewards[: -self.patience])
            if max(self.rewards[-self.patience :]) < best_before + self.min_delta:
                self.reason = (
                    f"mean reward did not improve by {self.min_delta} over the last "
                    f"{self.patience} updates"
                )
                return True
        return False
