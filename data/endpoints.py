"""Several replicas of one OpenAI-compatible endpoint: which one takes the next request.

    pool = EndpointPool(("http://a:8000/v1", "http://b:8000/v1"), PoolPolicy(per_endpoint=16))
    async with pool.slot() as slot:          # the healthy replica with the fewest requests
        reply = await call(slot.url)         # in flight and room under its own limit
        slot.failed() if reply is bad else slot.ok()

Balancing is by in-flight count: a slow replica holds its requests longer, so it gets
fewer new ones. Each replica has its own cap (`per_endpoint`); when every replica is full
the caller waits for a free slot. Health: `fail_threshold` failures in a row bench a
replica for `bench_seconds` (it takes no requests meanwhile, unless every replica is
benched: then the one whose bench ends first is tried, so a batch never deadlocks).
A success clears the count.

The judge (`judges/replicas.py`) and generation (`training/remote_generate.py`) share this
module; it lives in `data` because both import only `data`. It is plain asyncio: no HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from data.errors import ConfigError

_SEPARATORS = re.compile(r"[\s,]+")


def parse_base_urls(values: str | Iterable[str] | None) -> tuple[str, ...]:
    """Endpoint URLs from a flag given once or repeated, each value comma/space separated;
    trailing slashes dropped, duplicates removed, order kept."""
    if values is None:
        return ()
    items = [values] if isinstance(values, str) else list(values)
    urls: list[str] = []
    for item in items:
        for url in _SEPARATORS.split(item or ""):
            url = url.strip().rstrip("/")
            if not url:
                continue
            if not re.match(r"^https?://", url):
                raise ConfigError(
                    f"--base-url {url!r} is not an http(s) URL; write e.g. http://127.0.0.1:8000/v1"
                )
            if url not in urls:
                urls.append(url)
    return tuple(urls)


def pool_name(urls: Iterable[str]) -> str:
    """The name of a set of replicas, the same whichever answered and in whatever order
    they were given: one URL is itself (so caches of one endpoint stay valid), several are
    their sorted URLs joined by a space. Cache keys and `judge_calls.endpoint` use it."""
    ordered = sorted(set(urls))
    return ordered[0] if len(ordered) == 1 else " ".join(ordered)


@dataclass(frozen=True)
class PoolPolicy:
    """How requests are spread over replicas and when a failing one is benched."""

    per_endpoint: int | None = field(
        default=None,
        metadata={"help": "Requests in flight at once per endpoint (default: no own cap)."},
    )
    fail_threshold: int = field(
        default=3,
        metadata={"help": "Failures in a row that bench an endpoint."},
    )
    bench_seconds: float = field(
        default=30.0,
        metadata={"help": "Seconds a benched endpoint takes no requests."},
    )

    def __post_init__(self) -> None:
        if self.per_endpoint is not None and self.per_endpoint < 1:
            raise ConfigError(
                f"--per-endpoint-concurrency must be at least 1 (got {self.per_endpoint})"
            )
        if self.fail_threshold < 1:
            raise ConfigError(f"fail_threshold must be at least 1 (got {self.fail_threshold})")
        if self.bench_seconds < 0:
            raise ConfigError(f"bench_seconds must be >= 0 (got {self.bench_seconds})")


@dataclass
class Replica:
    """One endpoint's counters (`EndpointPool.stats()` reports them)."""

    url: str
    index: int
    in_flight: int = 0
    max_in_flight: int = 0
    requests: int = 0
    failures: int = 0
    failures_in_row: int = 0
    benched: int = 0  # times benched
    benched_until: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "url": self.url,
            "requests": self.requests,
            "failures": self.failures,
            "benched": self.benched,
            "max_in_flight": self.max_in_flight,
        }


class Slot:
    """One request's hold on a replica; report how it went with `ok()` or `failed()`."""

    def __init__(self, pool: EndpointPool, replica: Replica):
        self._pool = pool
        self.replica = replica
        self.outcome: bool | None = None

    @property
    def url(self) -> str:
        return self.replica.url

    @property
    def index(self) -> int:
        return self.replica.index

    def ok(self) -> None:
        self.outcome = True

    def failed(self) -> None:
        self.outcome = False


class EndpointPool:
    """Least-in-flight choice among healthy replicas, a cap per replica, benching."""

    def __init__(
        self,
        urls: Iterable[str],
        policy: PoolPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.replicas = [Replica(url, i) for i, url in enumerate(urls)]
        if not self.replicas:
            raise ConfigError("no endpoint: pass --base-url URL (repeat it for replicas)")
        self.policy = policy or PoolPolicy()
        self._clock = clock
        self._changed: asyncio.Condition | None = None  # made on the running loop

    @property
    def name(self) -> str:
        return pool_name(r.url for r in self.replicas)

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def _has_room(self, replica: Replica) -> bool:
        cap = self.policy.per_endpoint
        return cap is None or replica.in_flight < cap

    def _choose(self, exclude: set[int]) -> Replica | None:
        now = self._clock()
        candidates = [r for r in self.replicas if r.index not in exclude] or self.replicas
        healthy = [r for r in candidates if r.benched_until <= now]
        if not healthy:  # every candidate is benched: try the one whose bench ends first
            healthy = [min(candidates, key=lambda r: r.benched_until)]
        free = [r for r in healthy if self._has_room(r)]
        if not free:
            return None
        return min(free, key=lambda r: (r.in_flight, r.requests, r.index))

    def healthy_others(self, exclude: set[int]) -> bool:
        """Whether a replica outside `exclude` is not benched (worth retrying a request on)."""
        now = self._clock()
        return any(r.index not in exclude and r.benched_until <= now for r in self.replicas)

    def bench(self, index: int, seconds: float | None = None) -> None:
        """Take a replica out for `seconds` (default: the policy's), e.g. one that refused
        connections."""
        replica = self.replicas[index]
        replica.benched += 1
        replica.failures_in_row = 0
        replica.benched_until = self._clock() + (
            self.policy.bench_seconds if seconds is None else seconds
        )

    @contextlib.asynccontextmanager
    async def slot(self, exclude: Iterable[int] = ()) -> AsyncIterator[Slot]:
        """Hold a slot on the best replica (not one in `exclude`, unless no other is left);
        waits while every candidate is at its cap. A slot left without `ok()`/`failed()`
        (an exception, a cancel) counts as neither."""
        skip = set(exclude)
        changed = self._condition()
        async with changed:
            while (replica := self._choose(skip)) is None:
                await changed.wait()
            replica.in_flight += 1
            replica.requests += 1
            replica.max_in_flight = max(replica.max_in_flight, replica.in_flight)
        slot = Slot(self, replica)
        try:
            yield slot
        finally:
            async with changed:
                replica.in_flight -= 1
                if slot.outcome is True:
                    replica.failures_in_row = 0
                    replica.benched_until = 0.0
                elif slot.outcome is False:
                    replica.failures += 1
                    replica.failures_in_row += 1
                    if replica.failures_in_row >= self.policy.fail_threshold:
                        self.bench(replica.index)
                changed.notify_all()

    def stats(self) -> list[dict[str, object]]:
        return [r.as_dict() for r in self.replicas]
