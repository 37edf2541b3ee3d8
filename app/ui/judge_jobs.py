"""The Judge tab's work: start a judge batch in the background, and what the tab shows.

The config is built on the handler's thread, so a bad field is an error in the tab at
once; the batch then runs on a background thread. The API key goes from the tab's
password field straight to the batch's client: it is no part of the config and is kept
nowhere after the batch.
"""

from __future__ import annotations

import time
from typing import Any

from app.ui.background import Background, run_in_background
from app.ui.render import plain
from data.errors import ConfigError
from data.queue import queue_counts
from data.stats import human_judge_agreement
from data.store import PreferenceStore
from judges.batch import run_batch as judge_batch
from judges.batch import summary_lines
from judges.config import JudgeConfig, Price
from judges.progress import failed_judgements, judge_progress, tokens_by_model


def judge_status_markdown(store: PreferenceStore, task: Background | None) -> str:
    done = judge_progress(store)
    queues = queue_counts(store)
    lines = [
        f"**Judge queue**: {queues.judge:,} pairs ({queues.judge_unlabelled:,} without a judge "
        f"label) · **pairs with a judge label**: {done.judged_pairs:,}",
        f"**Judgements**: {done.judgements_ok} ok, {done.judgements_failed} failed",
        f"**Calls cached**: {done.cached_calls} · **tokens**: {done.prompt_tokens} prompt + "
        f"{done.completion_tokens} completion",
    ]
    if task is not None:
        state = "running" if task.running else ("failed" if task.error else "finished")
        lines.append(
            f"**Batch**: {state} (started {time.strftime('%H:%M:%S', time.localtime(task.started))})"
        )
        if task.name == "judge":
            prompt, completion, cost = _batch_cost(store, task)
            price_prompt, price_completion = task.price_per_million
            lines.append(
                f"**This batch**: {prompt} prompt + {completion} completion tokens · "
                f"**cost** ${cost:.4f} (at ${price_prompt:g} / ${price_completion:g} per 1M tokens)"
            )
        if task.error:
            lines.append(f"**Error**: {plain(task.error)}")  # endpoint text, as typed
        if task.result:
            if task.name == "judge":  # in words, as the CLI prints it; the ids stay out
                shown = " · ".join(summary_lines(task.result))
            else:
                shown = ", ".join(
                    f"{k} {v}" for k, v in task.result.items() if not isinstance(v, (list, dict))
                )
            lines.append(f"**Result**: {plain(shown)}")
    agreement = human_judge_agreement(store.labels())
    if agreement.get("pairs"):
        kappa = agreement.get("cohen_kappa")
        lines.append(
            f"**Judge vs human**: accuracy {agreement['accuracy']:.3f} on {agreement['pairs']} pairs"
            + (f", Cohen's kappa {kappa:.3f}" if kappa is not None else "")
        )
    return "  \n".join(lines)


def judge_failures(store: PreferenceStore, limit: int = 50) -> list[list[Any]]:
    return failed_judgements(store, limit)


def start_judge_batch(
    store: PreferenceStore,
    *,
    base_url: str,
    model: str,
    template: str | None,
    concurrency: int,
    limit: int | None,
    swap: bool,
    price_per_million: tuple[float, float] = (0.0, 0.0),
    backend: str = "openai",
    api_key: str | None = None,
) -> Background:
    """Check the options here (a bad one is an error in the tab at once), then judge on a
    background thread. `api_key` is handed to this batch's client and kept nowhere."""
    if not model.strip():
        raise ConfigError(
            "choose a judge model name (e.g. gpt-4o-mini, or the model your server serves; "
            "with in-process hf, a model folder or smollm2-135m-instruct)"
        )
    if any(p < 0 for p in price_per_million):
        raise ConfigError("prices per 1M tokens cannot be negative; use 0 for a free endpoint")
    config = judge_config(
        backend=backend,
        base_url=base_url.strip() or None,
        model=model.strip(),
        template=(template or "").strip() or None,
        concurrency=int(concurrency),
        limit=limit,
        swap=swap,
        price_per_million=price_per_million,
    )
    key = (api_key or "").strip() or None
    tokens_before = tokens_by_model(store)
    task = run_in_background("judge", lambda: run_batch(store, config, api_key=key))
    task.price_per_million = price_per_million
    task.tokens_before = tokens_before
    return task


def judge_config(
    *,
    backend: str,
    base_url: str | None,
    model: str,
    template: str | None,
    concurrency: int,
    limit: int | None,
    swap: bool,
    price_per_million: tuple[float, float] = (0.0, 0.0),
) -> JudgeConfig:
    """The `JudgeConfig` the CLI would build from the same values (`ConfigError` if bad).
    With backend 'hf' the model is a folder or a named model such as
    `smollm2-135m-instruct`, resolved by `data.models.resolve_model` as for `--backend hf`."""
    models = tuple(m.strip() for m in model.split(",") if m.strip())
    return JudgeConfig(
        models=models,
        base_url=base_url if backend == "openai" else None,
        backend=backend,
        concurrency=concurrency,
        swap=swap,
        limit=limit,
        template_text=template or None,
        progress=False,
        prices={m: Price(*price_per_million) for m in models if any(price_per_million)},
    )


def run_batch(
    store: PreferenceStore, config: JudgeConfig, *, api_key: str | None
) -> dict[str, Any]:
    """Judge the judge queue; returns the batch report. Progress shows up in the store as it goes."""
    return judge_batch(store, config, api_key=api_key).as_dict()


def _batch_cost(store: PreferenceStore, task: Background) -> tuple[int, int, float]:
    """Tokens this batch has used so far (calls answered from the cache cost nothing)."""
    prompt = completion = 0
    for model, (p, c) in tokens_by_model(store).items():
        p0, c0 = task.tokens_before.get(model, (0, 0))
        prompt, completion = prompt + p - p0, completion + c - c0
    return prompt, completion, Price(*task.price_per_million).cost(prompt, completion)
