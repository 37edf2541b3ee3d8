"""The judge as a reward (RLAIF): P(completion better than a reference completion).

    reward = PairwiseJudgeReward(store, JudgeConfig(models=("m",), base_url=url))
    reward([RewardItem(prompt, completion, reference), ...])  # -> [0.8, 0.2, ...]

Each item is one request with the batch's template, the completion shown first (A) and the
reference second (B). The reward is the judge's P(A) from its logprobs where the endpoint
gives them, else 1 / 0.5 / 0 for an A / tie / B verdict; an item the judge could not answer
(or without a reference) gets 0.5, the reward of "no better, no worse". Calls go through
the judge cache (`judge_calls`): a completion judged before against the same reference is
not sent again. The GRPO and RLOO trainers reach this through `judges.reward_server`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from data.store import PreferenceStore
from judges.batch import Backend, judge_unit, make_backend
from judges.config import JudgeConfig
from judges.prompts import load_template
from judges.store_io import Outcome, Unit, cache_key, prefetch_cache
from judges.writer import write_calls

NEUTRAL = 0.5  # no verdict, or nothing to compare with
VERDICT_REWARD = {"a": 1.0, "tie": NEUTRAL, "both_bad": NEUTRAL, "b": 0.0}


@dataclass(frozen=True)
class RewardItem:
    """One completion to reward: the prompt as text, the completion, the reference."""

    prompt: str
    completion: str
    reference: str


@dataclass
class RewardStats:
    """What the reward endpoint has done (the loop reports it)."""

    items: int = 0
    calls: int = 0
    cache_hits: int = 0
    failed: int = 0


class PairwiseJudgeReward:
    """Pairwise judge rewards for one judge model, cached in the store."""

    def __init__(
        self,
        store: PreferenceStore,
        config: JudgeConfig,
        *,
        backend: Backend | None = None,
        api_key: str | None = None,
    ):
        self.store = store
        self.config = config
        self.model = config.models[0]  # a panel's first model: one verdict per completion
        self.template = load_template(config.template_path)
        self.backend = backend
        self.api_key = api_key
        self.stats = RewardStats()

    def __call__(self, items: list[RewardItem]) -> list[float]:
        asked = [i for i, item in enumerate(items) if item.reference.strip()]
        rewards = [NEUTRAL] * len(items)
        if not asked:
            return rewards
        outcomes = asyncio.run(self._judge([items[i] for i in asked]))
        for i, outcome in zip(asked, outcomes, strict=True):
            rewards[i] = reward_of(outcome)
        self.stats.items += len(items)
        self.stats.calls += sum(len(o.calls) for o in outcomes)
        self.stats.cache_hits += sum(o.cache_hits for o in outcomes)
        self.stats.failed += sum(o.status != "ok" for o in outcomes)
        return rewards

    async def _judge(self, items: list[RewardItem]) -> list[Outcome]:
        backend = self.backend or make_backend(self.config, api_key=self.api_key)
        try:
            messages = [
                self.template.messages(item.prompt, item.completion, item.reference)
                for item in items
            ]
            params = backend.params()
            keys = [cache_key(backend.endpoint, self.model, params, m) for m in messages]
            cache = prefetch_cache(self.store, keys)
            semaphore = asyncio.Semaphore(self.config.concurrency)

            async def one(key: str, msgs: list[dict[str, str]]) -> Outcome:
                async with semaphore:
                    return await judge_unit(
                        Unit(f"reward:{key}", self.model, "ab"), msgs, backend, cache
                    )

            outcomes = list(
                await asyncio.gather(*(one(k, m) for k, m in zip(keys, messages, strict=True)))
            )
        finally:
            if self.backend is None:
                await backend.aclose()
        write_calls(self.store, backend.endpoint, outcomes)
        return outcomes


def reward_of(outcome: Outcome) -> float:
    """P(A) where the judge gave logprobs, else the verdict's reward; 0.5 without a verdict."""
    if outcome.status != "ok" or outcome.verdict is None:
        return NEUTRAL
    if outcome.p_a is not None:
        return float(outcome.p_a)
    return VERDICT_REWARD.get(outcome.verdict, NEUTRAL)
