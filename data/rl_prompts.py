"""The store's prompts as an RL prompt dataset for OpenRLHF or verl (`prefloop export --for`).

    write_rl_prompts(store, "prompts.jsonl", target="openrlhf")   # or "verl" -> .parquet

* `openrlhf`: JSONL, one row per prompt: `input` is the prompt's message list (train with
  `--prompt_data prompts.jsonl --input_key input --apply_chat_template`), plus
  `prompt_text` (the plain transcript) and `prompt_id`.
* `verl`: Parquet in verl's RL dataset layout: `data_source` ("prefloop"), `prompt` (the
  message list; verl's default `prompt_key`), `ability`, `reward_model`
  (`{"style": "model", "ground_truth": ""}`: the reward comes from a model, e.g.
  `prefloop serve-reward`) and `extra_info` (`split`, `index`, `prompt_id`).

`which`: every prompt, or `unlabelled` (prompts none of whose pairs has an active label:
where the policy's new samples would be worth labelling). Prompts are in prompt-id order
(a content hash: a fixed pseudo-random order); `limit` keeps the first ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data.errors import ConfigError
from data.ids import render_messages
from data.store import PreferenceStore

RL_TARGETS = ("openrlhf", "verl")
SUFFIXES = {"openrlhf": ".jsonl", "verl": ".parquet"}


def rl_prompt_rows(
    store: PreferenceStore, which: str = "all", limit: int | None = None
) -> list[dict[str, Any]]:
    """(prompt_id, messages) of the prompts to export."""
    if which not in ("all", "unlabelled"):
        raise ConfigError(f"--prompts {which!r}: use all or unlabelled")
    where = (
        ""
        if which == "all"
        else "WHERE prompt_id NOT IN (SELECT p.prompt_id FROM pairs p JOIN active_labels l "
        "USING (pair_id))"
    )
    rows = store.query(f"SELECT prompt_id, messages FROM prompts {where} ORDER BY prompt_id")
    if limit is not None:
        rows = rows[:limit]
    return [{"prompt_id": r[0], "messages": json.loads(r[1])} for r in rows]


def write_rl_prompts(
    store: PreferenceStore,
    out: str | Path,
    *,
    target: str,
    which: str = "all",
    limit: int | None = None,
) -> dict[str, Any]:
    """Write the prompt dataset for `target`; returns what was written."""
    if target not in RL_TARGETS:
        raise ConfigError(f"--for {target!r} is not one of {', '.join(RL_TARGETS)}")
    path = Path(out)
    if path.suffix != SUFFIXES[target]:
        raise ConfigError(
            f"--for {target} writes {SUFFIXES[target]}: name the output e.g. "
            f"prompts{SUFFIXES[target]} (got {path.name})"
        )
    rows = rl_prompt_rows(store, which, limit)
    if not rows:
        raise ConfigError(f"no prompts to export ({which}); import pairs first")
    path.parent.mkdir(parents=True, exist_ok=True)
    if target == "openrlhf":
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                record = {
                    "input": row["messages"],
                    "prompt_text": render_messages(row["messages"]),
                    "prompt_id": row["prompt_id"],
                }
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "data_source": ["prefloop"] * len(rows),
                "prompt": [
                    [{"role": m["role"], "content": m["content"]} for m in r["messages"]]
                    for r in rows
                ],
                "ability": ["preference"] * len(rows),
                "reward_model": [{"style": "model", "ground_truth": ""}] * len(rows),
                "extra_info": [
                    {"split": "train", "index": i, "prompt_id": r["prompt_id"]}
                    for i, r in enumerate(rows)
                ],
            }
        )
        pq.write_table(table, path)
    return {"target": target, "prompts": len(rows), "file": str(path)}
