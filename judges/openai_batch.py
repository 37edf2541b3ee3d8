"""The OpenAI Batch API for the judge (`prefloop judge --batch-api`), and its table.

    outcome = collect(store, config, api_key=None, scope=..., requests={key: body, ...})

The requests a batch would send live go into one JSONL file, one line per request, whose
`custom_id` is the request's cache key (`judges.store_io.cache_key`: the same key a live
call gets). The file is uploaded (`POST /v1/files`, purpose `batch`), a batch is created
(`POST /v1/batches`, endpoint `/v1/chat/completions`, window 24 h) and its id is committed
to `judge_api_batches` before the first poll. Then `GET /v1/batches/{id}` every
`batch_poll_seconds` until it ends; the output and error files are downloaded and each
line becomes a `Completion` (parsed by the same code as a live reply) under its key.

With `--batch-no-wait` the command submits (or polls the stored batch once) and returns
while the batch runs; the same command later ingests it. A killed prefloop leaves its
batch `submitted` here too; the same command (same endpoint,
template, models, orders and sampling parameters: the batch's `scope`) finds it and polls
it again instead of paying twice. The caller (`judges.batch.run_batch`) parses, repairs,
writes and prices the replies; failed lines are retried live or listed there.

This module owns the table `judge_api_batches`; no other module writes it.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from data.errors import JudgeError
from data.ids import stable_json_hash
from data.store import PreferenceStore
from judges.client import Completion, completion_from_json, key_for, scrub_completion
from judges.config import JudgeConfig
from judges.secrets import secret_forms

log = logging.getLogger("prefloop.judges")

TABLE = "judge_api_batches"
ENDED = ("completed", "failed", "expired", "cancelled")


@dataclass
class BatchAPIOutcome:
    """What one Batch API batch answered, by cache key."""

    batch_id: str
    resumed: bool  # an earlier, killed prefloop had submitted it
    status: str  # the provider's final status
    keys: set[str] = field(default_factory=set)  # every request key the batch holds
    completions: dict[str, Completion] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # key -> why the line failed
    polls: int = 0

    @property
    def pending(self) -> bool:
        """Still running at the provider (`--batch-no-wait`)."""
        return self.status not in ENDED

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "resumed": self.resumed,
            "status": self.status,
            "pending": self.pending,
            "requests": len(self.keys),
            "completed": len(self.completions),
            "failed_lines": len(self.failed),
            "polls": self.polls,
        }


def scope_of(
    endpoint: str,
    template_hash: str,
    models: tuple[str, ...],
    orders: tuple[str, ...],
    params: dict[str, Any],
) -> str:
    """What a resumed batch must share with the command that resumes it."""
    return stable_json_hash(
        {
            "endpoint": endpoint,
            "template_hash": template_hash,
            "models": list(models),
            "orders": list(orders),
            "params": params,
        }
    )[:32]


# -- the table ------------------------------------------------------------------------


def pending_batch(store: PreferenceStore, scope: str) -> tuple[str, list[str]] | None:
    """The newest batch of `scope` submitted and not yet ingested: (batch id, its keys)."""
    rows = store.query(
        f"SELECT batch_id, request_keys FROM {TABLE} WHERE scope = ? AND status = 'submitted' "
        "ORDER BY created_at DESC LIMIT 1",
        [scope],
    )
    return (rows[0][0], json.loads(rows[0][1])) if rows else None


def record_batch(
    store: PreferenceStore,
    *,
    batch_id: str,
    scope: str,
    endpoint: str,
    input_file_id: str,
    keys: list[str],
) -> None:
    with store.transaction() as cur:
        cur.execute(
            f"INSERT INTO {TABLE} (batch_id, scope, endpoint, input_file_id, request_keys, "
            "status) VALUES (?, ?, ?, ?, ?, 'submitted')",
            [batch_id, scope, endpoint, input_file_id, json.dumps(keys)],
        ).fetchall()


def mark_batch(store: PreferenceStore, batch_id: str, status: str, provider_status: str) -> None:
    """`ingested` once its replies are stored (then it is never polled again)."""
    with store.transaction() as cur:
        cur.execute(
            f"UPDATE {TABLE} SET status = ?, provider_status = ?, updated_at = current_timestamp "
            "WHERE batch_id = ?",
            [status, provider_status, batch_id],
        ).fetchall()


def stored_batches(store: PreferenceStore) -> list[dict[str, Any]]:
    """Every batch this store sent, newest first (for reports and tests)."""
    rows = store.query(
        f"SELECT batch_id, endpoint, input_file_id, status, provider_status, request_keys, "
        f"created_at FROM {TABLE} ORDER BY created_at DESC"
    )
    names = ("batch_id", "endpoint", "input_file_id", "status", "provider_status")
    return [
        {**dict(zip(names, r[:5], strict=True)), "requests": len(json.loads(r[5]))} for r in rows
    ]


# -- the API --------------------------------------------------------------------------


def collect(
    store: PreferenceStore,
    config: JudgeConfig,
    *,
    api_key: str | None,
    scope: str,
    requests: dict[str, dict[str, Any]],
    on_poll: Callable[[dict[str, Any]], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchAPIOutcome | None:
    """Submit `requests` (cache key -> chat-completions body) as one batch, or resume the
    pending batch of `scope`; wait for it and return its replies. None: nothing to send."""
    import openai

    endpoint = config.resolved_base_url
    key = key_for(config, api_key)
    client = openai.OpenAI(
        base_url=endpoint,
        api_key=key,
        max_retries=config.max_retries,
        timeout=config.timeout,
    )
    try:
        pending = pending_batch(store, scope)
        if pending is not None:
            batch_id, keys = pending
            resumed = True
            log.info("resuming Batch API batch %s (%d requests)", batch_id, len(keys))
        else:
            if not requests:
                return None
            keys = list(requests)
            batch_id, file_id = _submit(client, requests, endpoint)
            record_batch(
                store,
                batch_id=batch_id,
                scope=scope,
                endpoint=endpoint,
                input_file_id=file_id,
                keys=keys,
            )
            resumed = False
            log.info("submitted Batch API batch %s (%d requests)", batch_id, len(keys))
        outcome = BatchAPIOutcome(batch_id=batch_id, resumed=resumed, status="", keys=set(keys))
        batch = _wait(
            client, batch_id, config.batch_poll_seconds, outcome, on_poll, sleep, config.batch_wait
        )
        outcome.status = str(batch.get("status"))
        if outcome.status not in ENDED:  # --batch-no-wait: still running, ingest it later
            return outcome
        _read_results(client, batch, outcome, secret_forms(key))
        for key in outcome.keys - set(outcome.completions) - set(outcome.failed):
            outcome.failed[key] = f"no result line (batch {outcome.status})"
        return outcome
    except openai.APIError as exc:
        raise JudgeError(
            f"the Batch API at {endpoint} failed: {_short(exc)}; check that the endpoint "
            "offers /v1/files and /v1/batches (vLLM and llama.cpp servers do not: judge live "
            "without --batch-api), then run the same command again"
        ) from None
    finally:
        client.close()


def _submit(client: Any, requests: dict[str, dict[str, Any]], endpoint: str) -> tuple[str, str]:
    lines = "".join(
        json.dumps(
            {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": body},
            ensure_ascii=False,
        )
        + "\n"
        for key, body in requests.items()
    )
    uploaded = client.files.create(
        file=("prefloop-judge.jsonl", io.BytesIO(lines.encode("utf-8"))), purpose="batch"
    )
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"source": "prefloop judge"},
    )
    return batch.id, uploaded.id


def _wait(
    client: Any,
    batch_id: str,
    every: float,
    outcome: BatchAPIOutcome,
    on_poll: Callable[[dict[str, Any]], None] | None,
    sleep: Callable[[float], None],
    wait: bool = True,
) -> dict[str, Any]:
    """Poll until the batch ends (or, without `wait`, once)."""
    while True:
        batch = client.batches.retrieve(batch_id).model_dump()
        outcome.polls += 1
        counts = batch.get("request_counts") or {}
        log.info(
            "batch %s: %s (%s of %s done, %s failed)",
            batch_id,
            batch.get("status"),
            counts.get("completed"),
            counts.get("total"),
            counts.get("failed"),
        )
        if on_poll is not None:
            on_poll(batch)
        if batch.get("status") in ENDED or not wait:
            return batch
        sleep(every)


def _read_results(
    client: Any, batch: dict[str, Any], outcome: BatchAPIOutcome, secrets: tuple[str, ...]
) -> None:
    for name in ("output_file_id", "error_file_id"):
        file_id = batch.get(name)
        if not file_id:
            continue
        text = client.files.content(file_id).text
        for line in text.splitlines():
            if line.strip():
                _read_line(json.loads(line), outcome, secrets)
    for error in (batch.get("errors") or {}).get("data") or []:  # a batch that failed whole
        log.warning("batch %s: %s", outcome.batch_id, error.get("message"))


def _read_line(line: dict[str, Any], outcome: BatchAPIOutcome, secrets: tuple[str, ...]) -> None:
    key = line.get("custom_id")
    if key not in outcome.keys:
        return
    response = line.get("response") or {}
    body = response.get("body")
    if line.get("error") or response.get("status_code") != 200:
        message = (line.get("error") or {}).get("message") or (
            (body or {}).get("error", {}).get("message") if isinstance(body, dict) else body
        )
        reason = f"HTTP {response.get('status_code')}: {str(message)[:200]}"
        outcome.failed[key] = scrub_completion(Completion(error=reason), secrets).error or ""
        return
    request = body or {}
    completion = completion_from_json(request, {})
    if completion.error is not None:
        outcome.failed[key] = completion.error
        return
    completion.batched = True
    outcome.completions[key] = scrub_completion(completion, secrets)


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
