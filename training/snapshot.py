"""Owner side of a run: the label snapshot, the prompt template and the cache keys.

The snapshot is one Parquet file of decided pairs (aggregation policy of `data.export`:
human > import > judge > model, majority, ties and both_bad left out) with, per pair,
the train/test side, whether its label is new since the parent run, and the cached
reference log-probs when the reference model and template match. No heavy imports.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from data.export import AggregationPolicy, aggregated_pairs, is_test_prompt
from data.ids import render_messages, response_id, stable_json_hash
from data.labels import newest_label_id
from data.models import converted_folder, folder_hash, is_named
from data.store import PreferenceStore

TEMPLATE_VERSION = "prefloop-plain/1"
"""Prompt = HH-style transcript + "\\n\\nAssistant:"; completion = " " + response."""


def prompt_text(messages: list[dict[str, str]]) -> str:
    transcript = render_messages(messages)
    if not transcript.startswith("\n\nHuman:"):
        transcript = "\n\nHuman: " + transcript
    return transcript + "\n\nAssistant:"


def completion_text(response: str) -> str:
    return " " + response.strip()


def model_hash(policy: str | Path) -> str | None:
    """Content hash of a local model folder (weights, config, tokenizer); else the hub id.

    A named model (`smollm2-135m-instruct`) hashes its converted folder, or is None before
    its first conversion (the trainer converts it and hashes the folder then). A hub id
    names no fixed weights here (no network at run time), so its hash is the id itself:
    point `--policy` at a local folder to make the reference cache exact.
    """
    if is_named(str(policy)):
        folder = converted_folder(str(policy))
        return folder_hash(folder) if folder else None
    path = Path(policy)
    if path.is_dir():
        return folder_hash(path)
    return hashlib.sha256(f"hub:{policy}".encode()).hexdigest()[:32]


def template_hash(max_length: int, truncation_mode: str) -> str:
    return stable_json_hash(
        {"template": TEMPLATE_VERSION, "max_length": max_length, "truncation": truncation_mode}
    )[:32]


def label_watermark(store: PreferenceStore, label_cutoff: int | None = None) -> int:
    """The newest label id a run sees (its cut-off when it has one): labels above a run's
    watermark are new to the run after it."""
    newest = newest_label_id(store)
    return newest if label_cutoff is None else min(label_cutoff, newest)


def export_eval_pairs(eval_set: Any, path: Path) -> dict[str, int]:
    """Write an evaluation file's decided pairs (`data.eval_sets.EvalSet`) in the run template."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    items = eval_set.items
    table = pa.table(
        {
            "prompt": [prompt_text(i.messages) for i in items],
            "chosen": [completion_text(i.chosen) for i in items],
            "rejected": [completion_text(i.rejected) for i in items],
            "category": pa.array([i.category for i in items], type=pa.string()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return {
        "eval_pairs": len(items),
        "eval_rows": eval_set.rows,
        "eval_undecided": eval_set.undecided,
    }


def export_feedback(
    store: PreferenceStore, path: Path, *, test_fraction: float = 0.1
) -> dict[str, int]:
    """Write the unpaired thumbs up/down rows (`data.feedback`) a KTO run trains on, in the
    snapshot's prompt/completion text and split; returns counts."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from data.feedback import feedback_rows

    rows: dict[str, list[Any]] = {
        k: [] for k in ("prompt_id", "prompt", "completion", "label", "split")
    }
    for row in feedback_rows(store):
        messages = (
            row["messages"] if isinstance(row["messages"], list) else json.loads(row["messages"])
        )
        rows["prompt_id"].append(row["prompt_id"])
        rows["prompt"].append(prompt_text(messages))
        rows["completion"].append(completion_text(row["completion"]))
        rows["label"].append(bool(row["desirable"]))
        rows["split"].append("test" if is_test_prompt(row["prompt_id"], test_fraction) else "train")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            rows,
            schema=pa.schema(
                [
                    ("prompt_id", pa.string()),
                    ("prompt", pa.string()),
                    ("completion", pa.string()),
                    ("label", pa.bool_()),
                    ("split", pa.string()),
                ]
            ),
        ),
        path,
    )
    return {
        "rows": len(rows["label"]),
        "train": rows["split"].count("train"),
        "desirable": sum(rows["label"]),
    }


def export_snapshot(
    store: PreferenceStore,
    path: Path,
    *,
    test_fraction: float = 0.1,
    watermark: int = 0,
    ref_model_hash: str | None = None,
    template: str | None = None,
    label_cutoff: int | None = None,
) -> dict[str, Any]:
    """Write the run's training pairs, from the labels up to `label_cutoff` (all when None);
    returns counts (rows, train, test, new, cached)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pairs = aggregated_pairs(store, AggregationPolicy(max_label_id=label_cutoff))
    last_label = dict(
        store.query(
            "SELECT pair_id, max(label_id) FROM active_labels "
            "WHERE ? IS NULL OR label_id <= ? GROUP BY pair_id",
            [label_cutoff, label_cutoff],
        )
    )
    cache = cached_ref_logprobs(store, ref_model_hash, template)
    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "pair_id",
            "prompt_id",
            "prompt",
            "chosen",
            "rejected",
            "chosen_id",
            "rejected_id",
            "source",
            "split",
            "last_label_id",
            "is_new",
            "ref_chosen_logps",
            "ref_rejected_logps",
        )
    }
    for pair in pairs:
        chosen, rejected = (
            (pair.response_a, pair.response_b)
            if pair.verdict == "a"
            else (pair.response_b, pair.response_a)
        )
        chosen_id, rejected_id = response_id(chosen), response_id(rejected)
        last = int(last_label.get(pair.pair_id, 0))
        values = {
            "pair_id": pair.pair_id,
            "prompt_id": pair.prompt_id,
            "prompt": prompt_text(pair.messages),
            "chosen": completion_text(chosen),
            "rejected": completion_text(rejected),
            "chosen_id": chosen_id,
            "rejected_id": rejected_id,
            "source": pair.source,
            "split": "test" if is_test_prompt(pair.prompt_id, test_fraction) else "train",
            "last_label_id": last,
            "is_new": last > watermark,
            "ref_chosen_logps": cache.get((pair.prompt_id, chosen_id), math.nan),
            "ref_rejected_logps": cache.get((pair.prompt_id, rejected_id), math.nan),
        }
        for key, value in values.items():
            rows[key].append(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path)
    cached = sum(
        1
        for c, r in zip(rows["ref_chosen_logps"], rows["ref_rejected_logps"], strict=True)
        if not (math.isnan(c) or math.isnan(r))
    )
    return {
        "rows": len(rows["pair_id"]),
        "train": rows["split"].count("train"),
        "test": rows["split"].count("test"),
        "new": sum(rows["is_new"]),
        "ref_cached_pairs": cached,
    }


def cached_ref_logprobs(
    store: PreferenceStore, ref_model_hash: str | None, template: str | None
) -> dict[tuple[str, str], float]:
    """(prompt id, response id) -> the cached reference log-prob, for this model and template."""
    if not ref_model_hash or not template:
        return {}
    return {
        (p, r): logp
        for p, r, logp in store.query(
            "SELECT prompt_id, response_id, logp FROM ref_logprobs "
            "WHERE ref_model_hash = ? AND template_hash = ?",
            [ref_model_hash, template],
        )
    }


def uncached_pairs(
    store: PreferenceStore,
    pair_ids: list[str] | None,
    ref_model_hash: str | None,
    template: str | None,
) -> list[dict[str, Any]]:
    """The pairs (all, or these ids) with a response whose reference log-prob is not cached,
    as snapshot rows (response A as `chosen`: a log-prob does not depend on the verdict)."""
    cache = cached_ref_logprobs(store, ref_model_hash, template)
    where, params = "", []
    if pair_ids is not None:
        where, params = "WHERE p.pair_id IN (SELECT unnest(?::VARCHAR[]))", [list(pair_ids)]
    rows = []
    for pair in store.pairs(where, params):
        a, b = response_id(pair.response_a), response_id(pair.response_b)
        if (pair.prompt_id, a) in cache and (pair.prompt_id, b) in cache:
            continue
        rows.append(
            {
                "pair_id": pair.pair_id,
                "prompt_id": pair.prompt_id,
                "prompt": prompt_text(pair.messages),
                "chosen": completion_text(pair.response_a),
                "rejected": completion_text(pair.response_b),
                "chosen_id": a,
                "rejected_id": b,
                "ref_chosen_logps": math.nan,
                "ref_rejected_logps": math.nan,
            }
        )
    return rows


def export_ref_pairs(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def ingest_ref_logprobs(store: PreferenceStore, path: Path) -> int:
    """Add a run's new reference log-probs to the cache table; returns rows added."""
    if not path.exists():
        return 0
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if table.num_rows == 0:
        return 0
    with store.transaction() as cur:
        before = cur.execute("SELECT count(*) FROM ref_logprobs").fetchall()[0][0]
        cur.register("_new_ref", table)
        cur.execute(
            "INSERT OR IGNORE INTO ref_logprobs "
            "SELECT prompt_id, response_id, ref_model_hash, template_hash, logp, n_tokens FROM _new_ref"
        ).fetchall()
        cur.unregister("_new_ref")
        after = cur.execute("SELECT count(*) FROM ref_logprobs").fetchall()[0][0]
    return int(after - before)


def transcript_from_prompt(prompt: str) -> str:
    """Inverse of `prompt_text`: the `render_messages` transcript (what encoders saw)."""
    transcript = prompt.removesuffix("\n\nAssistant:")
    if (
        transcript.startswith("\n\nHuman: ")
        and "\n\nAssistant:" not in transcript
        and transcript.count("\n\nHuman:") == 1
    ):
        return transcript.removeprefix("\n\nHuman: ")
    return transcript
