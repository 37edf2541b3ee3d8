"""One judge batch: select the work, call the judge concurrently, commit as results arrive.

    report = run_batch(store, JudgeConfig(models=("gpt-4o-mini",), base_url=url, swap=True))

Calls run on one asyncio loop behind a semaphore of `concurrency`. Each finished unit
goes to the single `Writer`, which commits every `flush_every` units on its own thread
while calls continue, so the store is written by one thread and a killed batch keeps
its committed work. Starting the batch again sends only the units that have no
judgement yet; `retry_failed` sends only the failed ones; a finished batch sends none.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from data.errors import JudgeError
from data.schema import swap_verdict
from data.store import PairView, PreferenceStore
from judges.client import Completion
from judges.config import JudgeConfig
from judges.parsing import p_a_from_logprobs, parse_verdict
from judges.prompts import Template, load_template, repair_messages
from judges.store_io import (
    ORDERS_SWAP,
    Outcome,
    Unit,
    cache_key,
    prefetch_cache,
    select_work,
)
from judges.writer import Writer


class Backend(Protocol):
    endpoint: str
    logprobs_enabled: bool
    logprobs_disabled_reason: str | None

    def params(self) -> dict[str, Any]: ...

    async def complete(self, model: str, messages: list[dict[str, str]]) -> Completion: ...

    async def aclose(self) -> None: ...


@dataclass
class BatchReport:
    """What `prefloop judge` prints. `calls` counts requests sent (repairs included, SDK retries not)."""

    judged: int = 0
    labels: int = 0
    failed: int = 0
    inconsistent: int = 0
    debiased: int = 0  # pairs labelled from P(A) averaged over both orders (position bias removed)
    panel_split: int = 0
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    units: int = 0
    ensemble_disagreements: int = 0
    retracted: int = 0  # earlier labels of this judge that the new judgements contradict
    template_hash: str = ""
    batch_id: str = ""
    logprobs: bool = True
    seconds: float = 0.0
    # with several --base-url: per endpoint, requests, failures, times benched
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    # with --batch-api: the batch's id, whether it was resumed, its counts; failed lines
    batch_api: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cost_usd"] = round(self.cost_usd, 6)
        out["seconds"] = round(self.seconds, 3)
        return out


def summary_lines(result: dict[str, Any]) -> list[str]:
    """A batch report (`BatchReport.as_dict()`) in words, for people: the CLI without
    --json and the Judge tab. Ids, hashes and flags (batch_id, template_hash, units) stay
    in the JSON."""
    if not result.get("units"):
        return [
            "nothing to judge: every pair in the judge queue already has a judgement "
            "from this model and template"
        ]
    first = (
        f"judged {result['judged']} pairs: {result['labels']} labels, "
        f"{result['failed']} failed judgements"
    )
    extras = [
        (result.get("inconsistent", 0), "inconsistent across the two orders (flagged for humans)"),
        (result.get("debiased", 0), "labelled from P(A) averaged over both orders"),
        (result.get("panel_split", 0), "panel splits (flagged for humans)"),
        (
            result.get("ensemble_disagreements", 0),
            "confidently contradicted by the reward ensemble (flagged for humans)",
        ),
        (result.get("retracted", 0), "earlier labels of this judge contradicted and retracted"),
    ]
    first += "".join(f", {n} {what}" for n, what in extras if n)
    cached = f" ({result['cache_hits']} answered from the cache)" if result["cache_hits"] else ""
    cost = f", ${result['cost_usd']:.6f}" if result.get("cost_usd") else ""
    lines = [
        first,
        f"{result['calls']} calls{cached}, {result['prompt_tokens']} prompt + "
        f"{result['completion_tokens']} completion tokens{cost}, {result.get('seconds', 0):g} s",
    ]
    batch = result.get("batch_api")
    if batch and batch.get("pending"):
        lines.append(
            f"Batch API batch {batch['batch_id']} is {batch['status']} ({batch['requests']} "
            "requests): run the same command again to ingest it once it has ended"
        )
    elif batch:
        lines.append(
            f"Batch API batch {batch['batch_id']}{' (resumed)' if batch['resumed'] else ''}: "
            f"{batch['completed']} of {batch['requests']} requests answered, "
            f"{batch['failed_lines']} failed lines"
            + (f" ({batch['retried_live']} judged live)" if batch.get("retried_live") else "")
            + (f", {len(batch['listed'])} left for the next run" if batch.get("listed") else "")
            + (
                f", {batch['deferred']} units wait for the next batch"
                if batch.get("deferred")
                else ""
            )
            + "; costs at batch prices"
        )
    if not result.get("logprobs", True):
        lines.append(
            "the endpoint gave no logprobs: verdicts were parsed from text, confidences left empty"
        )
    return lines


def make_backend(config: JudgeConfig, api_key: str | None = None) -> Backend:
    """The backend `config.backend` names; `api_key` (else $OPENAI_API_KEY) goes to the
    OpenAI client only, for this batch, and is kept nowhere else."""
    if config.backend == "hf":
        from judges.hf_backend import HFBackend

        return HFBackend(config)
    if len(config.resolved_base_urls) > 1:
        from judges.replicas import ReplicaBackend

        return ReplicaBackend(config, api_key=api_key)
    from judges.client import OpenAIBackend

    return OpenAIBackend(config, api_key=api_key)


def run_batch(
    store: PreferenceStore,
    config: JudgeConfig,
    backend: Backend | None = None,
    *,
    api_key: str | None = None,
) -> BatchReport:
    """Judge the selected pairs and store calls, judgements, labels and flags.

    Raises `JudgeError` for what would fail every pair the same way (an endpoint that
    cannot be reached, a rejected key, an unknown model); the judgements finished before
    it are committed first, so running the batch again does only the rest."""
    started = time.perf_counter()
    template = load_template(config.template_path, config.template_text)
    store.set_meta(f"judge_template:{template.hash}", template.text)
    orders = ORDERS_SWAP if config.swap else ("ab",)
    units, views = select_work(
        store,
        models=config.models,
        orders=orders,
        template_hash=template.hash,
        all_unlabelled=config.all_unlabelled,
        retry_failed=config.retry_failed,
        limit=config.limit,
    )
    report = BatchReport(
        units=len(units), template_hash=template.hash, batch_id=uuid.uuid4().hex[:12]
    )
    if not units:
        report.seconds = time.perf_counter() - started
        return report
    backend = backend or make_backend(config, api_key=api_key)
    writer = Writer(
        store,
        endpoint=backend.endpoint,
        models=config.models,
        orders=orders,
        template_hash=template.hash,
        batch_id=report.batch_id,
        units=units,
        debias_margin=config.debias_margin,
    )
    prepaid: dict[str, Completion] = {}
    if config.batch_api:
        units, prepaid = _through_batch_api(
            store, config, backend, template, orders, units, views, report, api_key
        )
    try:
        if units:
            asyncio.run(
                _judge_all(units, views, template, backend, writer, config, report, prepaid)
            )
    finally:
        if hasattr(backend, "stats"):
            report.endpoints = backend.stats()
    if report.batch_api is not None and not report.batch_api["pending"]:
        from judges.openai_batch import mark_batch

        mark_batch(store, report.batch_api["batch_id"], "ingested", report.batch_api["status"])
    report.judged = writer.judged
    report.labels = writer.labels
    report.inconsistent = writer.inconsistent
    report.debiased = writer.debiased
    report.panel_split = writer.split
    report.ensemble_disagreements = writer.ensemble_disagreements
    report.retracted = writer.retracted
    report.logprobs = backend.logprobs_enabled
    report.seconds = time.perf_counter() - started
    return report


def _through_batch_api(
    store: PreferenceStore,
    config: JudgeConfig,
    backend: Backend,
    template: Template,
    orders: tuple[str, ...],
    units: list[Unit],
    views: dict[str, PairView],
    report: BatchReport,
    api_key: str | None,
) -> tuple[list[Unit], dict[str, Completion]]:
    """Send the units' first requests as one Batch API batch (or resume the stored one) and
    return the units to judge now with the batch's replies under their cache keys: the live
    path then parses, repairs (live), writes and prices them as if they had been sent live.
    Failed lines are judged live (`--batch-failed live`) or listed and left for later."""
    from judges.openai_batch import collect, scope_of

    params = backend.params()
    keys = {
        u: cache_key(
            backend.endpoint, u.model, params, _messages(template, views[u.pair_id], u.order)
        )
        for u in units
    }
    cached = {} if config.retry_failed else prefetch_cache(store, list(keys.values()))
    requests = {
        key: {
            "model": u.model,
            "messages": _messages(template, views[u.pair_id], u.order),
            **params,
        }
        for u, key in keys.items()
        if key not in cached
    }
    scope = scope_of(backend.endpoint, template.hash, config.models, orders, params)
    outcome = collect(store, config, api_key=api_key, scope=scope, requests=requests)
    if outcome is None:  # everything was in the cache
        return units, {}
    if outcome.pending:  # --batch-no-wait: nothing to ingest yet
        report.batch_api = outcome.as_dict() | {
            "retried_live": 0,
            "listed": [],
            "deferred": len(units),
        }
        return [], {}
    for completion in outcome.completions.values():
        completion.params = params
    # a resumed batch covers the units it was sent for; newer ones wait for the next batch
    kept = [u for u in units if keys[u] in outcome.keys or keys[u] in cached]
    listed: list[dict[str, str]] = []
    if config.batch_failed == "list":
        listed = [
            {
                "pair_id": u.pair_id,
                "model": u.model,
                "order": u.order,
                "error": outcome.failed[keys[u]],
            }
            for u in kept
            if keys[u] in outcome.failed
        ]
        kept = [u for u in kept if keys[u] not in outcome.failed]
    report.batch_api = outcome.as_dict() | {
        "retried_live": 0 if config.batch_failed == "list" else len(outcome.failed),
        "listed": listed,
        "deferred": len(units) - len(kept) - len(listed),
    }
    return kept, outcome.completions


async def _judge_all(
    units: list[Unit],
    views: dict[str, PairView],
    template: Template,
    backend: Backend,
    writer: Writer,
    config: JudgeConfig,
    report: BatchReport,
    prepaid: dict[str, Completion] | None = None,
) -> None:
    """`prepaid`: replies already paid for (a Batch API batch), by cache key: stored and
    counted as calls, not as cache hits."""
    from tqdm import tqdm

    messages = {u: _messages(template, views[u.pair_id], u.order) for u in units}
    keys: list[str] = []
    if not config.retry_failed:  # a retry must ask again, not replay the reply that failed
        params = backend.params()
        keys = [cache_key(backend.endpoint, u.model, params, msgs) for u, msgs in messages.items()]
    cache = prefetch_cache(writer.store, keys)
    cache.update(prepaid or {})
    semaphore = asyncio.Semaphore(config.concurrency)

    async def one(unit: Unit) -> Outcome:
        async with semaphore:
            return await judge_unit(unit, messages[unit], backend, cache)

    loop = asyncio.get_running_loop()
    # disable=None: a bar only on a terminal, so a captured stderr holds just the error line
    bar = tqdm(
        total=len(units), unit="judgement", disable=None if config.progress else True, leave=False
    )
    buffer: list[Outcome] = []
    pending: asyncio.Future[None] | None = None
    last_flush = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="judge-writer"
    ) as pool:
        tasks = [asyncio.ensure_future(one(u)) for u in units]
        try:
            for next_done in asyncio.as_completed(tasks):
                try:
                    outcome = await next_done
                except JudgeError:  # the same for every pair: keep what finished, then stop
                    if pending is not None:
                        await pending
                    await loop.run_in_executor(pool, writer.commit, buffer)
                    raise
                _account(report, outcome, config)
                buffer.append(outcome)
                bar.update(1)
                if pending is not None and pending.done():
                    pending.result()  # a failed commit stops the batch here
                    pending = None
                # while a commit is running, results pile up and go in the next, larger one
                due = (
                    len(buffer) >= config.flush_every
                    or time.monotonic() - last_flush > config.flush_seconds
                )
                if pending is None and due:
                    pending = loop.run_in_executor(pool, writer.commit, buffer)
                    buffer = []
                    last_flush = time.monotonic()
            if pending is not None:
                await pending
            await loop.run_in_executor(pool, writer.commit, buffer)
        finally:
            for task in tasks:
                task.cancel()
            bar.close()
            await backend.aclose()


def _account(report: BatchReport, outcome: Outcome, config: JudgeConfig) -> None:
    report.calls += len(outcome.calls)
    report.cache_hits += outcome.cache_hits
    if outcome.status == "failed":
        report.failed += 1
    for _key, model, _request, completion in outcome.calls:
        report.prompt_tokens += completion.prompt_tokens
        report.completion_tokens += completion.completion_tokens
        price = config.price(model)
        if price is not None:
            report.cost_usd += price.cost(
                completion.prompt_tokens, completion.completion_tokens, batch=completion.batched
            )


def _messages(template: Template, pair: PairView, order: str) -> list[dict[str, str]]:
    first, second = (
        (pair.response_a, pair.response_b) if order == "ab" else (pair.response_b, pair.response_a)
    )
    return template.messages(pair.prompt_text, first, second)


async def _ask(
    unit: Unit,
    msgs: list[dict[str, str]],
    backend: Backend,
    cache: dict[str, Completion],
    outcome: Outcome,
) -> Completion:
    """One reply for `msgs`: from the cache when this exact request was answered before."""
    if cache:  # most batches find nothing cached: then skip hashing the request twice
        hit = cache.get(cache_key(backend.endpoint, unit.model, backend.params(), msgs))
        if hit is not None and hit.cached:
            outcome.cache_hits += 1
            return hit
        if hit is not None:  # a Batch API reply: paid for in this batch, stored like a live one
            key = cache_key(backend.endpoint, unit.model, hit.params, msgs)
            outcome.calls.append((key, unit.model, {"params": hit.params, "messages": msgs}, hit))
            return hit
    completion = await backend.complete(unit.model, msgs)
    if completion.error is None:
        sent_key = cache_key(backend.endpoint, unit.model, completion.params, msgs)
        outcome.calls.append(
            (sent_key, unit.model, {"params": completion.params, "messages": msgs}, completion)
        )
    else:
        outcome.calls.append(("", unit.model, {}, completion))  # sent, so counted; never cached
    return completion


async def judge_unit(
    unit: Unit, msgs: list[dict[str, str]], backend: Backend, cache: dict[str, Completion]
) -> Outcome:
    """Ask, parse, repair once if there is no verdict; the verdict is mapped to the stored A/B."""
    outcome = Outcome(unit=unit, status="failed")
    completion = await _ask(unit, msgs, backend, cache, outcome)
    if completion.error is not None:
        outcome.error = completion.error
        return outcome
    raw = completion.text or ""
    verdict = parse_verdict(raw)
    if verdict is None:
        repair = await _ask(unit, repair_messages(msgs, raw), backend, cache, outcome)
        if repair.error is not None:
            outcome.raw_text, outcome.error = (
                raw,
                f"no verdict in reply; repair failed: {repair.error}",
            )
            return outcome
        raw = f"{raw}\n\n[repair]\n{repair.text or ''}"
        completion = repair
        verdict = parse_verdict(repair.text)
        if verdict is None:
            outcome.raw_text, outcome.error = (
                raw,
                "no verdict in reply, nor after one repair request",
            )
            return outcome
    p_shown_a = p_a_from_logprobs(completion.logprobs, verdict)
    outcome.status = "ok"
    outcome.raw_text = raw
    if unit.order == "ab":
        outcome.verdict, outcome.p_a = verdict.shown, p_shown_a
    else:
        outcome.verdict = swap_verdict(verdict.shown)
        outcome.p_a = None if p_shown_a is None else 1.0 - p_shown_a
    return outcome
