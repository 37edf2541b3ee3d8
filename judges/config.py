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

from data.errors import ConfigError

BACKENDS = ("openai", "hf")
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens for one model."""

    prompt: float = field(default=0.0, metadata={"help": "USD per 1M prompt tokens."})
    completion: float = field(default=0.0, metadata={"help": "USD per 1M completion tokens."})

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1_000_000


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
    base_url: str | None = field(
        default=None,
        metadata={
            "help": "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (default: "
            "$OPENAI_BASE_URL). The key is read from $OPENAI_API_KEY (or --api-key-env), sent "
            "to this endpoint, and never stored."
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
        if self.backend == "openai" and not self.resolved_base_url:
            raise ConfigError(
                "no endpoint: pass --base-url URL (e.g. http://127.0.0.1:8000/v1) or set $OPENAI_BASE_URL"
            )

    @property
    def resolved_base_url(self) -> str:
        if self.backend == "hf":
            return "hf://local"
        return (self.base_url or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/")

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
        if not isinstance(entry, dict) or not set(entry) <= {"prompt", "completion"}:
            raise ConfigError(
                f'--prices {file}: entry {model!r} must be {{"prompt": USD_PER_1M, "completion": USD_PER_1M}}'
            )
        try:
            prices[model] = Price(
                float(entry.get("prompt", 0.0)), float(entry.get("completion", 0.0))
            )
        except (TypeError, ValueError):
            raise ConfigError(
                f"--prices {file}: entry {model!r} has a price that is not a number"
            ) from None
    return prices
