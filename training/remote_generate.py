"""Generation through OpenAI-compatible servers (`prefloop generate --base-url URL --model M`).

    rows = generate_remote(prompts, cfg, urls=("http://127.0.0.1:8000/v1",), model="M")

For `vllm serve`, llama.cpp's `llama-server` or `ollama serve`: one chat-completions
request per prompt asks for `n` samples with the stage's sampling parameters
(`temperature`, `top_p`, `max_tokens` = `max_new_tokens`, `seed`). A server that answers
fewer choices than `n` (llama.cpp and Ollama ignore `n`) is asked again for the rest, with
the seed moved on so the extra samples differ. Requests run concurrently (`concurrency`
in all, `per_endpoint_concurrency` on each replica) through `data.endpoints.EndpointPool`:
the least busy healthy replica takes the next one, a failed request is tried on another,
and a replica that keeps failing is benched. The SDK retries 429/5xx, timeouts and dropped
connections itself (`max_retries`). Each row keeps what was sent and the model name the
endpoint answered with, so `prompt_responses.meta` says where every response came from.

This module imports no torch: the run's process stays light.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from data.endpoints import EndpointPool, PoolPolicy
from data.errors import TrainingError

log = logging.getLogger("prefloop.training")

ENGINE = "openai-compatible"


@dataclass(frozen=True)
class Sampling:
    """What every request sends (the stage config's sampling fields)."""

    n: int
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int


@dataclass
class PromptResult:
    """The samples of one prompt and where they came from."""

    texts: list[str] = field(default_factory=list)
    served_model: str | None = None  # the `model` the endpoint answered with
    endpoint: str | None = None
    requests: int = 0
    error: str | None = None


def generate_remote(
    prompts: list[list[dict[str, str]]],
    sampling: Sampling,
    *,
    urls: tuple[str, ...],
    model: str,
    concurrency: int = 8,
    per_endpoint_concurrency: int | None = None,
    max_retries: int = 3,
    timeout: float = 120.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[PromptResult], list[dict[str, Any]]]:
    """`n` samples for each prompt (a message list); per prompt its texts, plus the pool's
    per-endpoint stats. Raises `TrainingError` when no prompt got an answer."""
    pool = EndpointPool(urls, PoolPolicy(per_endpoint=per_endpoint_concurrency))
    results = asyncio.run(
        _generate_all(
            prompts, sampling, pool, model, concurrency, max_retries, timeout, on_progress
        )
    )
    failed = [r for r in results if not r.texts]
    if prompts and len(failed) == len(prompts):
        raise TrainingError(
            f"no prompt got an answer from {', '.join(urls)} (model {model!r}): "
            f"{failed[0].error}; start the server (e.g. `vllm serve MODEL --port 8000`) and "
            "check --base-url (it ends in /v1) and --model"
        )
    return results, pool.stats()


async def _generate_all(
    prompts: list[list[dict[str, str]]],
    sampling: Sampling,
    pool: EndpointPool,
    model: str,
    concurrency: int,
    max_retries: int,
    timeout: float,
    on_progress: Callable[[int, int], None] | None,
) -> list[PromptResult]:
    from openai import AsyncOpenAI
    from tqdm import tqdm

    clients = [
        AsyncOpenAI(base_url=r.url, api_key="EMPTY", max_retries=max_retries, timeout=timeout)
        for r in pool.replicas
    ]
    semaphore = asyncio.Semaphore(concurrency)
    results = [PromptResult() for _ in prompts]
    done = 0
    bar = tqdm(total=len(prompts), desc="generating", unit="prompt")
    last_report = 0.0

    async def one(index: int) -> None:
        nonlocal done, last_report
        async with semaphore:
            await _sample_prompt(prompts[index], sampling, pool, clients, model, results[index])
        done += 1
        bar.update(1)
        if on_progress is not None and (
            done == len(prompts) or time.monotonic() - last_report > 0.5
        ):
            last_report = time.monotonic()
            on_progress(done, len(prompts))

    try:
        await asyncio.gather(*(one(i) for i in range(len(prompts))))
    finally:
        bar.close()
        for client in clients:
            await client.close()
    return results


async def _sample_prompt(
    messages: list[dict[str, str]],
    sampling: Sampling,
    pool: EndpointPool,
    clients: list[Any],
    model: str,
    result: PromptResult,
) -> None:
    """Ask until `n` samples are in (at most `n` requests: a server may answer one each)."""
    attempt = 0
    while len(result.texts) < sampling.n and attempt < sampling.n:
        wanted = sampling.n - len(result.texts)
        body = {
            "model": model,
            "messages": messages,
            "n": wanted,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed + attempt,
        }
        response = await _request(body, pool, clients, result)
        attempt += 1
        if response is None:
            return
        texts = [
            ((c or {}).get("message") or {}).get("content") or ""
            for c in response.get("choices") or []
        ]
        result.texts += texts[:wanted]
        result.served_model = response.get("model") or result.served_model
        if not texts:
            result.error = f"the endpoint answered no choices: {str(response)[:200]}"
            return


async def _request(
    body: dict[str, Any], pool: EndpointPool, clients: list[Any], result: PromptResult
) -> dict[str, Any] | None:
    """One chat completion as JSON, tried on each healthy replica once; None if all failed."""
    import openai

    tried: set[int] = set()
    while True:
        async with pool.slot(exclude=tried) as slot:
            result.requests += 1
            try:
                response = await clients[slot.index].post(
                    "/chat/completions", body=body, cast_to=object
                )
            except (openai.APIError, ValueError) as exc:
                slot.failed()
                result.error = f"{slot.url}: {' '.join(str(exc).split())[:300]}"
                if isinstance(exc, openai.APIConnectionError):
                    pool.bench(slot.index)
                log.warning("generation request failed on %s: %s", slot.url, result.error)
            else:
                if isinstance(response, dict):
                    slot.ok()
                    result.endpoint = slot.url
                    return response
                slot.failed()
                result.error = f"{slot.url}: not a JSON object: {str(response)[:200]}"
            tried.add(slot.index)
        if not pool.healthy_others(tried):
            return None
