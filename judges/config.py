"""What a judge batch does: one frozen config, built from CLI flags and passed in explicitly.

The API key is deliberately not a field: the client reads the variable `api_key_env` names
(`$OPENAI_API_KEY` by default) at the last moment, or takes the key handed to
`run_batch(..., api_key=)` (the Judge tab's password field), so no config dump, log line or
store row can carry it. Only the variable's name is configured.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from data.endpoints import PoolPolicy, parse_base_urls, pool_name
from data.errors import ConfigError

BACKENDS = ("openai", "hf")
BATCH_FAILED = ("live", "list")  # what --batch-api does with lines the batch failed
HTTP_CLIENTS = ("auto", "aiohttp", "httpx")  # the SDK's HTTP transport (bench/judge.py)
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens for one model."""

    prompt: float = field(default=0.0, metadata={"help": "USD per 1M prompt tokens."})
    completion: float = field(default=0.0, metadata={"help": "USD per 1M completion tokens."})
    batch_prompt: float | None = field(
        default=None,
        metadata={"help": "USD per 1M prompt tokens through the Batch API (default: half)."},
    )
    batch_completion: float | None = field(
        default=None,
        metadata={"help": "USD per 1M completion tokens through the Batch API (default: half)."},
    )

    def cost(self, prompt_tokens: int, completion_tokens: int, *, batch: bool = False) -> float:
        """US dollars for these tokens, at live prices or (`batch`) at Batch API prices."""
        prompt, completion = self.prompt, self.completion
        if batch:
            prompt = self.prompt / 2 if self.batch_prompt is None else self.batch_prompt
            completion = (
                self.completion / 2 if self.batch_completion is None else self.batch_completion
            )
        return (prompt_tokens * prompt + completion_tokens * completion) / 1_000_000


@dataclass(frozen=True)
class JudgeConfig:
    """Options of one `prefloop judge` batch."""

    models: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Judge model; repeat for a panel (the label is the majority). With --backend "
            "hf: a model folder or smollm2-135m-instruct."
        },
    )
    base_url: str | tuple[str, ...] | None = field(
        default=None,
        metadata={
            "help": "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (default: "
            "$OPENAI_BASE_URL). Repeat it (or separate URLs with commas or spaces) for replicas "
            "of the same model: requests go to the healthy one with the fewest in flight. The "
            "key is read from $OPENAI_API_KEY (or --api-key-env), sent to these endpoints, and "
            "never stored."
        },
    )
    api_key_env: str = field(
        default=DEFAULT_API_KEY_ENV,
        metadata={
            "help": "Environment variable holding this endpoint's API key (the key is sent to "
            "--base-url, whichever server that is). A named variable that is unset is an error."
        },
    )
    backend: str = field(
        default="openai",
        metadata={
            "help": "'openai': any OpenAI-compatible server; 'hf': a causal LM in this process "
            "(A vs B logprobs)."
        },
    )
    concurrency: int = field(default=8, metadata={"help": "Requests in flight at once."})
    http_client: str = field(
        default="auto",
        metadata={
            "help": "The SDK's HTTP transport: 'aiohttp' (openai[aiohttp]; less client CPU per "
            "call), 'httpx' (the SDK's default), or 'auto' (aiohttp when installed)."
        },
    )
    per_endpoint_concurrency: int | None = field(
        default=None,
        metadata={
            "help": "Requests in flight at once on each --base-url (default: no cap of its own)."
        },
    )
    bench_after: int = field(
        default=3,
        metadata={
            "help": "With several --base-url: failures in a row after which an endpoint is "
            "benched (its requests go to the others)."
        },
    )
    bench_seconds: float = field(
        default=30.0, metadata={"help": "Seconds a benched endpoint gets no requests."}
    )
    batch_api: bool = field(
        default=False,
        metadata={
            "help": "Send the batch through the OpenAI Batch API (/v1/files, /v1/batches): half "
            "price, results within 24 h. The batch id is stored, so running the same command "
            "again after a kill resumes polling it."
        },
    )
    batch_poll_seconds: float = field(
        default=10.0, metadata={"help": "Seconds between two polls of a Batch API batch."}
    )
    batch_wait: bool = field(
        default=True,
        metadata={
            "help": "Wait for the Batch API batch to end. Off (--batch-no-wait): submit it (or "
            "look at the stored one once) and return; the same command later ingests it."
        },
    )
    batch_failed: str = field(
        default="live",
        metadata={
            "help": "Lines the Batch API batch failed: 'live' judges them with live calls, "
            "'list' lists them in the report and leaves them for the next run."
        },
    )
    swap: bool = field(
        default=False,
        metadata={
            "help": "Judge both A/B orders. Disagreeing orders are labelled from P(A) averaged "
            "over both orders (this cancels position bias); with a small margin or no logprobs "
            "they get no label and are flagged for humans."
        },
    )
    debias_margin: float = field(
        default=0.1,
        metadata={
            "help": "Least |mean P(A) - 0.5| for a debiased verdict (disagreeing orders, split panels)."
        },
    )
    limit: int | None = field(default=None, metadata={"help": "Judge at most this many pairs."})
    all_unlabelled: bool = field(
        default=False,
        metadata={"help": "Judge every pair without a label, not just the judge queue."},
    )
    retry_failed: bool = field(
        default=False, metadata={"help": "Re-run only judgements that failed before."}
    )
    template_path: str | None = field(
        default=None,
        metadata={
            "help": "Template file with {{prompt}}, {{response_a}}, {{response_b}} (and the "
            "rubric); text before a '=== user ===' line is the system message."
        },
    )
    template_text: str | None = field(
        default=None,
        metadata={
            "help": "The template itself, as typed in the app's Judge tab (instead of "
            "template_path)."
        },
    )
    timeout: float = field(
        default=60.0, metadata={"help": "Seconds per request before it is retried."}
    )
    max_retries: int = field(
        default=3,
        metadata={
            "help": "Retries per request on 429 (honouring Retry-After), 5xx, timeouts, dropped "
            "connections. An endpoint that refuses connections or does not resolve stops the "
            "batch after 1 + N attempts."
        },
    )
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature of the judge."})
    max_tokens: int = field(
        default=16,
        metadata={
            "help": "Completion token cap (the default template wants one token); raise it for "
            "templates that ask for reasoning first."
        },
    )
    logprobs: bool = field(
        default=True,
        metadata={"help": "Ask for top logprobs to store P(A); switched off on a 400."},
    )
    top_logprobs: int = field(
        default=5, metadata={"help": "Alternatives per token when logprobs are on."}
    )
    prices: dict[str, Price] = field(
        default_factory=dict,
        metadata={"help": "Per-model prices for cost_usd (from --prices FILE)."},
    )
    progress: bool = field(default=True, metadata={"help": "Show a tqdm progress bar."})
    flush_every: int = field(
        default=256,
        metadata={"help": "Commit finished judgements once this many are waiting..."},
    )
    flush_seconds: float = field(
        default=0.5,
        metadata={
            "help": "...or once this long has passed: a killed batch loses at most this much."
        },
    )

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("no judge model: pass --model NAME (repeat it for a panel)")
        if len(set(self.models)) != len(self.models):
            raise ConfigError(
                f"--model given twice: {', '.join(self.models)}; name each model once"
            )
        if not _ENV_NAME.fullmatch(self.api_key_env):
            raise ConfigError(
                f"--api-key-env {self.api_key_env!r} is not a variable name; give the name "
                "(e.g. VLLM_API_KEY), not the key itself"
            )
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1 (got {self.concurrency})")
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"--limit must be >= 0 (got {self.limit})")
        if self.timeout <= 0:
            raise ConfigError(f"--timeout must be positive seconds (got {self.timeout})")
        if self.max_retries < 0:
            raise ConfigError(f"--max-retries must be >= 0 (got {self.max_retries})")
        if self.backend == "openai" and not self.resolved_base_urls:
            raise ConfigError(
                "no endpoint: pass --base-url URL (e.g. http://127.0.0.1:8000/v1) or set $OPENAI_BASE_URL"
            )
        self.pool_policy()  # a bad per-endpoint cap or bench setting fails here
        if self.http_client not in HTTP_CLIENTS:
            raise ConfigError(
                f"--http-client {self.http_client!r} is not one of {', '.join(HTTP_CLIENTS)}"
            )
        if self.batch_failed not in BATCH_FAILED:
            raise ConfigError(
                f"--batch-failed {self.batch_failed!r} is not one of {', '.join(BATCH_FAILED)}"
            )
        if self.batch_api:
            if self.backend != "openai":
                raise ConfigError("--batch-api needs --backend openai (an OpenAI-compatible API)")
            if len(self.resolved_base_urls) > 1:
                raise ConfigError(
                    "--batch-api sends one batch to one endpoint: give --base-url once"
                )
            if self.retry_failed and self.batch_failed == "list":
                raise ConfigError("--retry-failed with --batch-failed list would judge nothing")
        if self.batch_poll_seconds <= 0:
            raise ConfigError(
                f"--batch-poll-seconds must be positive (got {self.batch_poll_seconds})"
            )

    @property
    def resolved_base_urls(self) -> tuple[str, ...]:
        """Every endpoint, in the order given (several: replicas of one model)."""
        if self.backend == "hf":
            return ("hf://local",)
        return parse_base_urls(self.base_url or os.environ.get("OPENAI_BASE_URL") or "")

    @property
    def resolved_base_url(self) -> str:
        """The endpoint's name in cache keys and `judge_calls`: the URL, or for replicas
        their sorted URLs (`data.endpoints.pool_name`), whichever replica answered."""
        urls = self.resolved_base_urls
        return pool_name(urls) if urls else ""

    def pool_policy(self) -> PoolPolicy:
        return PoolPolicy(
            per_endpoint=self.per_endpoint_concurrency,
            fail_threshold=self.bench_after,
            bench_seconds=self.bench_seconds,
        )

    def price(self, model: str) -> Price | None:
        return self.prices.get(model)


def load_prices(path: str | os.PathLike[str]) -> dict[str, Price]:
    """Read a price table: JSON or TOML mapping model -> {prompt, completion} USD per 1M tokens."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"--prices {file}: no such file")
    text = file.read_text(encoding="utf-8")
    try:
        table = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"--prices {file}: not valid {file.suffix.lstrip('.') or 'JSON'} ({exc})"
        ) from None
    prices: dict[str, Price] = {}
    for model, entry in table.items():
        keys = {"prompt", "completion", "batch_prompt", "batch_completion"}
        if not isinstance(entry, dict) or not set(entry) <= keys:
            raise ConfigError(
                f'--prices {file}: entry {model!r} must be {{"prompt": USD_PER_1M, "completion": '
                'USD_PER_1M} (optionally "batch_prompt", "batch_completion": Batch API prices)'
            )
        try:
            batch = {k: float(entry[k]) for k in ("batch_prompt", "batch_completion") if k in entry}
            prices[model] = Price(
                float(entry.get("prompt", 0.0)), float(entry.get("completion", 0.0)), **batch
            )
        except (TypeError, ValueError):
            raise ConfigError(
                f"--prices {file}: entry {model!r} has a price that is not a number"
            ) from None
    return prices
