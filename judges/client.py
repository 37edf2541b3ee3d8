"""The OpenAI-compatible backend: one async chat call with retries, a timeout and feature fallback.

Retries: the SDK's own `max_retries` covers 408/409/429/5xx, timeouts and dropped
connections with exponential backoff (0.5 s doubling, at most 8 s, 25% jitter) and
honours `Retry-After` / `retry-after-ms` up to two minutes (a longer Retry-After is
not retried). A 200 whose body is cut short is not retried by the SDK, so this module
retries it with the same budget. A 400 that names `logprobs` switches logprobs off for
the rest of the batch and re-sends the request once without them.

The key comes from `$OPENAI_API_KEY` straight into the SDK; it is never returned,
logged or put in a `Completion`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from dataclasses import dataclass, field
from typing import Any

from data.errors import JudgeError
from judges.config import JudgeConfig

log = logging.getLogger("prefloop.judges")


@dataclass
class Completion:
    """What one call produced; `error` set means no usable reply (and nothing to cache)."""

    text: str | None = None
    logprobs: list[dict[str, Any]] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    params: dict[str, Any] = field(default_factory=dict)  # the parameters actually sent
    error: str | None = None
    cached: bool = False


def _mentions_logprobs(exc: Exception) -> bool:
    body = getattr(exc, "body", None)
    text = f"{exc} {json.dumps(body) if isinstance(body, dict | list) else body or ''}".lower()
    return "logprob" in text


class OpenAIBackend:
    """Chat completions against any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama)."""

    def __init__(self, config: JudgeConfig):
        from openai import AsyncOpenAI

        self.config = config
        self.endpoint = config.resolved_base_url
        self.logprobs_enabled = config.logprobs
        self.logprobs_disabled_reason: str | None = None
        # local servers accept any key; "EMPTY" is the vLLM convention
        api_key = os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._client = AsyncOpenAI(
            base_url=self.endpoint,
            api_key=api_key,
            max_retries=config.max_retries,
            timeout=config.timeout,
        )

    def params(self) -> dict[str, Any]:
        """Sampling parameters of the next request; part of every cache key."""
        params: dict[str, Any] = {
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        if self.logprobs_enabled:
            params.update(logprobs=True, top_logprobs=self.config.top_logprobs)
        return params

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, model: str, messages: list[dict[str, str]]) -> Completion:
        import openai

        attempts = 0
        while True:
            params = self.params()
            try:
                # the SDK's generic `post` keeps its retries, timeouts and error types but skips
                # the typed request/response models: ~40% less client CPU per call, which is
                # what limits throughput at high concurrency
                response = await self._client.post(
                    "/chat/completions",
                    body={"model": model, "messages": messages, **params},
                    cast_to=object,
                )
                return _completion(response, params)
            except openai.BadRequestError as exc:
                if params.get("logprobs") and _mentions_logprobs(exc):
                    if self.logprobs_enabled:
                        self.logprobs_enabled = False
                        self.logprobs_disabled_reason = str(exc)[:200]
                        log.warning(
                            "endpoint refused logprobs (%s); continuing without them",
                            self.logprobs_disabled_reason,
                        )
                    continue
                return Completion(error=f"400 bad request: {_short(exc)}", params=params)
            except openai.AuthenticationError as exc:
                raise JudgeError(
                    f"{self.endpoint} rejected the API key (401: {_short(exc)}); "
                    "set $OPENAI_API_KEY to a valid key for this endpoint"
                ) from None
            except openai.NotFoundError as exc:  # the same for every pair: stop the batch
                raise JudgeError(
                    f"{self.endpoint}/chat/completions answered 404 for model {model!r} "
                    f"({_short(exc)}); check --model and that --base-url ends in /v1"
                ) from None
            except openai.APITimeoutError:
                return Completion(
                    error=f"timed out after {self.config.max_retries} retries "
                    f"({self.config.timeout:g} s each)",
                    params=params,
                )
            except openai.APIConnectionError as exc:
                return Completion(
                    error=f"connection failed after {self.config.max_retries} retries: "
                    f"{_short(exc.__cause__ or exc)}",
                    params=params,
                )
            except openai.APIStatusError as exc:
                return Completion(
                    error=f"HTTP {exc.status_code} after {self.config.max_retries} "
                    f"retries: {_short(exc)}",
                    params=params,
                )
            except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
                if attempts < self.config.max_retries:
                    attempts += 1
                    await asyncio.sleep(
                        min(0.5 * 2 ** (attempts - 1), 8.0) * (1 - 0.25 * random.random())
                    )
                    continue
                return Completion(
                    error=f"unreadable response body after {attempts} retries: {_short(exc)}",
                    params=params,
                )


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300]


def _completion(response: Any, params: dict[str, Any]) -> Completion:
    """A Completion from a chat.completion JSON object."""
    choices = response.get("choices") if isinstance(response, dict) else None
    if not choices:
        return Completion(error=f"response had no choices: {str(response)[:200]}", params=params)
    choice = choices[0] or {}
    text = (choice.get("message") or {}).get("content")
    content = (choice.get("logprobs") or {}).get("content")
    logprobs = None
    if content:
        logprobs = [
            {
                "token": item.get("token", ""),
                "logprob": item.get("logprob"),
                "top_logprobs": [
                    {"token": t.get("token", ""), "logprob": t.get("logprob")}
                    for t in item.get("top_logprobs") or []
                ],
            }
            for item in content
        ]
    usage = response.get("usage") or {}
    return Completion(
        text=text,
        logprobs=logprobs,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        params=params,
    )
