"""The OpenAI-compatible backend: one async chat call with retries, a timeout and feature fallback.

Retries: the SDK's own `max_retries` covers 408/409/429/5xx, timeouts and dropped
connections with exponential backoff (0.5 s doubling, at most 8 s, 25% jitter) and
honours `Retry-After` / `retry-after-ms` up to two minutes (a longer Retry-After is
not retried). A 200 whose body is cut short is not retried by the SDK, so this module
retries it with the same budget. A 400 that names `logprobs` switches logprobs off for
the rest of the batch and re-sends the request once without them.

An endpoint that cannot be reached (connection refused, a host that does not resolve, a
connect timeout) stops the batch with one `JudgeError` that says how to start a server,
instead of one failed judgement per pair: the first request goes out alone, so a closed
port costs exactly `1 + max_retries` connection attempts (the SDK's own retries, about
3.5 s with the defaults), and a server that goes away mid-batch stops it at the first
request whose retries all fail to connect. Dropped connections, timeouts, 429 and 5xx
from a server that does answer keep the retry-then-fail-the-pair behaviour above.

The key is the caller's `api_key` (the Judge tab's password field, for one batch), else
the variable `config.api_key_env` names (`$OPENAI_API_KEY` unless `--api-key-env NAME`),
straight into the SDK. It goes to whichever endpoint `--base-url` names. It is never
returned or logged, and an endpoint that echoes it gets it scrubbed (`judges.secrets`)
from every reply, error and exception before anything stores or shows them.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import os
import random
import socket
from dataclasses import dataclass, field, replace
from typing import Any

from data.errors import ConfigError, JudgeError
from judges.config import DEFAULT_API_KEY_ENV, JudgeConfig
from judges.secrets import scrub, scrub_exception, scrub_optional, secret_forms

log = logging.getLogger("prefloop.judges")

# one line, so the CLI prints it as its one error line and the Judge tab as its one message
START_A_SERVER = (
    "start an OpenAI-compatible server and point --base-url at it, e.g. "
    "`vllm serve MODEL --port 8000` (http://127.0.0.1:8000/v1), "
    "`llama-server -m MODEL.gguf --port 8080` (http://127.0.0.1:8080/v1) or "
    "`ollama serve` (http://127.0.0.1:11434/v1); without a server, judge in-process with "
    "--backend hf --model PATH (README: Judging without internet)"
)


class EndpointUnreachable(JudgeError):
    """No connection could be made to the endpoint (refused, unresolvable, connect timeout).
    One endpoint stops the batch; among replicas (`judges/replicas.py`) it is benched."""


@dataclass
class Completion:
    """What one call produced; `error` set means no usable reply (and nothing to cache)."""

    text: str | None = None
    logprobs: list[dict[str, Any]] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    params: dict[str, Any] = field(default_factory=dict)  # the parameters actually sent
    error: str | None = None
    cached: bool = False  # read from `judge_calls`: not sent, not paid for again
    batched: bool = False  # answered by an OpenAI Batch API batch (priced at batch prices)


def scrub_completion(completion: Completion, secrets: tuple[str, ...]) -> Completion:
    """A completion whose text and error hold no key. Logprobs are dropped if the key can
    be read from their tokens (one token, or several in a row)."""
    if not secrets:
        return completion
    logprobs = completion.logprobs
    if logprobs:
        tokens = [str(item.get("token", "")) for item in logprobs]
        joined = "".join(tokens)
        if scrub(joined, secrets) != joined:
            logprobs = None
        else:
            for item in logprobs:
                alternatives = "".join(str(t.get("token", "")) for t in item["top_logprobs"])
                if scrub(alternatives, secrets) != alternatives:
                    logprobs = None
                    break
    return replace(
        completion,
        text=scrub_optional(completion.text, secrets),
        error=scrub_optional(completion.error, secrets),
        logprobs=logprobs,
    )


def _mentions_logprobs(exc: Exception) -> bool:
    body = getattr(exc, "body", None)
    text = f"{exc} {json.dumps(body) if isinstance(body, dict | list) else body or ''}".lower()
    return "logprob" in text


class OpenAIBackend:
    """Chat completions against any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama)."""

    def __init__(self, config: JudgeConfig, api_key: str | None = None, *, http_client: Any = None):
        from openai import AsyncOpenAI

        self.config = config
        self.endpoint = config.resolved_base_url
        self.logprobs_enabled = config.logprobs
        self.logprobs_disabled_reason: str | None = None
        key = key_for(config, api_key)
        self._secrets = secret_forms(key)
        self._client = AsyncOpenAI(
            base_url=self.endpoint,
            api_key=key,
            max_retries=config.max_retries,
            timeout=config.timeout,
            http_client=http_client or make_http_client(config.http_client),
        )
        # first contact: one request alone until the endpoint has been reached once
        self._first_contact = asyncio.Lock()
        self._reached = False
        self._unreachable: JudgeError | None = None  # set once: every later call re-raises it

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
        """One reply; raises `JudgeError` for what is the same for every pair (unreachable
        endpoint, bad key, unknown model), so the batch stops instead of failing each pair.
        The key is scrubbed from the reply, its error and any exception."""
        try:
            completion = await self._complete_in_turn(model, messages)
        except Exception as exc:
            scrub_exception(exc, self._secrets)
            raise
        return scrub_completion(completion, self._secrets)

    async def _complete_in_turn(self, model: str, messages: list[dict[str, str]]) -> Completion:
        if not self._reached:
            async with self._first_contact:
                if self._unreachable is not None:
                    raise self._unreachable
                if not self._reached:
                    completion = await self._complete(model, messages)
                    self._reached = True
                    return completion
        if self._unreachable is not None:
            raise self._unreachable
        return await self._complete(model, messages)

    async def _complete(self, model: str, messages: list[dict[str, str]]) -> Completion:
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
                        self.logprobs_disabled_reason = scrub(str(exc), self._secrets)[:200]
                        log.warning(
                            "endpoint refused logprobs (%s); continuing without them",
                            self.logprobs_disabled_reason,
                        )
                    continue
                return Completion(error=f"400 bad request: {_short(exc)}", params=params)
            except openai.AuthenticationError as exc:
                raise JudgeError(
                    f"{self.endpoint} rejected the API key (401: {_short(exc)}); set "
                    f"${self.config.api_key_env} (or the Judge tab's API key) to a valid key "
                    "for this endpoint"
                ) from None
            except openai.NotFoundError as exc:  # the same for every pair: stop the batch
                raise JudgeError(
                    f"{self.endpoint}/chat/completions answered 404 for model {model!r} "
                    f"({_short(exc)}); check --model and that --base-url ends in /v1"
                ) from None
            except openai.APIConnectionError as exc:  # APITimeoutError is one too
                if _could_not_connect(exc):  # nobody there: the same for every pair
                    self._unreachable = self._unreachable_error(exc)
                    raise self._unreachable from None
                if isinstance(exc, openai.APITimeoutError):
                    return Completion(
                        error=f"timed out after {self.config.max_retries} retries "
                        f"({self.config.timeout:g} s each)",
                        params=params,
                    )
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

    def forget_unreachable(self) -> None:
        """Try this endpoint again (a replica pool does, once its bench is over)."""
        self._unreachable = None
        self._reached = False

    def _unreachable_error(self, exc: Exception) -> JudgeError:
        tries = 1 + self.config.max_retries
        tries_text = f"{tries} attempt" + ("s" if tries > 1 else "")
        reason = _connect_reason(exc, self.config.timeout)
        if self._reached:
            return EndpointUnreachable(
                f"{self.endpoint} stopped accepting connections ({reason}; {tries_text}) "
                "during the batch; the judgements finished so far are stored: restart the "
                "server and run the same command again to judge the rest"
            )
        return EndpointUnreachable(
            f"cannot reach {self.endpoint} ({reason}; {tries_text}); nothing was judged: "
            + START_A_SERVER
        )


def aiohttp_installed() -> bool:
    """Whether the SDK's aiohttp transport can be used (`pip install 'openai[aiohttp]'`)."""
    return importlib.util.find_spec("aiohttp") is not None


def make_http_client(kind: str) -> Any:
    """The SDK's HTTP client for `--http-client`: aiohttp (measured faster in
    bench/judge.py: less client CPU per call), or None for the SDK's own httpx client."""
    if kind == "httpx" or (kind == "auto" and not aiohttp_installed()):
        return None
    if not aiohttp_installed():
        raise ConfigError(
            "--http-client aiohttp needs aiohttp: pip install 'openai[aiohttp]' "
            "(or use --http-client httpx)"
        )
    from openai import DefaultAioHttpClient

    return DefaultAioHttpClient()


def key_for(config: JudgeConfig, api_key: str | None = None) -> str:
    """The key a client of `config` sends: the caller's, else the variable's (see above)."""
    return api_key or _key_from_env(config.api_key_env)


def _key_from_env(name: str) -> str:
    """The key in $`name`; without it "EMPTY" (local servers accept any key; vLLM's convention)
    for the default variable, an error for one named with --api-key-env."""
    key = os.environ.get(name)
    if key:
        return key
    if name != DEFAULT_API_KEY_ENV:
        raise ConfigError(
            f"--api-key-env {name}: ${name} is not set; export {name}=KEY (the key of this "
            "endpoint) or leave --api-key-env out to use $OPENAI_API_KEY"
        )
    return "EMPTY"


def _connect_errors() -> tuple[type[BaseException], ...]:
    """What the SDK's HTTP layer raises when no connection could be made (httpx2 or httpx)."""
    found: list[type[BaseException]] = [ConnectionRefusedError, socket.gaierror]
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found += [module.ConnectError, module.ConnectTimeout]
    return tuple(found)


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: BaseException | None = exc.__cause__
    while seen is not None and len(chain) < 16:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def _could_not_connect(exc: BaseException) -> bool:
    """True when the request never reached a server: refused, unresolvable, connect timeout.
    A dropped connection or a read timeout means a server is there, and is not this."""
    errors = _connect_errors()
    return any(isinstance(cause, errors) for cause in _causes(exc))


def _connect_reason(exc: BaseException, timeout: float) -> str:
    causes = _causes(exc)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused"
    if any(isinstance(c, socket.gaierror) for c in causes):
        return "host name not resolved"
    if any(type(c).__name__ == "ConnectTimeout" for c in causes):
        return f"no answer to connect within {timeout:g} s"
    return _short(causes[0] if causes else exc)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300]


def completion_from_json(response: Any, params: dict[str, Any]) -> Completion:
    """A Completion from a chat.completion JSON object (a live reply or a Batch API line)."""
    return _completion(response, params)


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
