"""Several replicas of one judge endpoint behind one backend (`--base-url` repeated).

    backend = ReplicaBackend(JudgeConfig(models=("m",), base_url=("http://a/v1", "http://b/v1")))

Each replica is an `OpenAIBackend` of its own (its client, retries, first contact). A
request goes to the healthy replica with the fewest requests in flight and room under
`--per-endpoint-concurrency` (`data.endpoints.EndpointPool`). A reply that failed after
the replica's own retries (5xx, 429, timeouts, dropped connections) counts against that
replica and the request is sent once more to another healthy one; `--bench-after`
failures in a row bench a replica for `--bench-seconds`. A replica that refuses
connections is benched at once; only when every replica is unreachable does the batch
stop. The replicas serve the same model, so the cache key names the set of replicas
(`data.endpoints.pool_name`), never the one that answered.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from data.endpoints import EndpointPool
from judges.client import Completion, EndpointUnreachable, OpenAIBackend
from judges.config import JudgeConfig

log = logging.getLogger("prefloop.judges")


class ReplicaBackend:
    """One judge backend over several OpenAI-compatible endpoints serving the same model."""

    def __init__(self, config: JudgeConfig, api_key: str | None = None):
        urls = config.resolved_base_urls
        self.config = config
        self.members = [OpenAIBackend(replace(config, base_url=url), api_key) for url in urls]
        self.pool = EndpointPool(urls, config.pool_policy())
        self.endpoint = self.pool.name
        self.logprobs_enabled = config.logprobs
        self.logprobs_disabled_reason: str | None = None

    def params(self) -> dict[str, Any]:
        """The same sampling parameters for every replica (logprobs off for all once one
        refuses them, so the cache key does not depend on who answered)."""
        return self.members[0].params() if self.logprobs_enabled else self._without_logprobs()

    def _without_logprobs(self) -> dict[str, Any]:
        return {"temperature": self.config.temperature, "max_tokens": self.config.max_tokens}

    async def aclose(self) -> None:
        for member in self.members:
            await member.aclose()

    def stats(self) -> list[dict[str, object]]:
        """Per replica: requests, failures, times benched, most in flight."""
        return self.pool.stats()

    async def complete(self, model: str, messages: list[dict[str, str]]) -> Completion:
        """One reply from some replica; a failure is tried once on each other healthy one."""
        tried: set[int] = set()
        last: Completion | None = None
        unreachable: EndpointUnreachable | None = None
        while True:
            async with self.pool.slot(exclude=tried) as slot:
                member = self.members[slot.index]
                member.logprobs_enabled = self.logprobs_enabled
                try:
                    completion = await member.complete(model, messages)
                except EndpointUnreachable as exc:
                    slot.failed()
                    self.pool.bench(slot.index)
                    member.forget_unreachable()  # tried again once its bench is over
                    log.warning("endpoint %s benched: %s", slot.url, exc)
                    unreachable = exc
                else:
                    self._share_logprobs_state(member)
                    if completion.error is None:
                        slot.ok()
                        return completion
                    slot.failed()
                    last = completion
                tried.add(slot.index)
            if self.pool.healthy_others(tried):
                log.info("retrying a request on another endpoint after %s failed", slot.url)
                continue
            if last is not None:
                return last
            if not self.pool.healthy_others(set()):
                raise EndpointUnreachable(
                    f"every endpoint ({', '.join(m.endpoint for m in self.members)}) refuses "
                    f"connections or is benched; last: {unreachable}"
                ) from None
            return Completion(error=f"endpoint unreachable: {unreachable}", params=self.params())

    def _share_logprobs_state(self, member: OpenAIBackend) -> None:
        if self.logprobs_enabled and not member.logprobs_enabled:
            self.logprobs_enabled = False
            self.logprobs_disabled_reason = member.logprobs_disabled_reason
