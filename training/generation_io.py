"""Owner side of `prefloop generate`: which prompts to sample for, and storing the results.

Sampled responses go in through `data.ingest.ingest` with origin `generate`: every new
response is stored and linked to its prompt (sampling parameters in
`prompt_responses.meta`), and the responses of a prompt form new, unlabelled pairs.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from data.errors import ConfigError
from data.ids import prompt_id, response_id
from data.ingest import ingest
from data.shapes import PairRecord, ResponsesRecord
from data.store import PreferenceStore
from training.snapshot import prompt_text

PROMPTS = "prompts.parquet"
GENERATIONS = "generations.parquet"


def select_prompts(store: PreferenceStore, which: str) -> list[list[dict[str, str]]]:
    """Message lists for `all`, `unlabelled` (no active label on any of its pairs) or a FILE."""
    if which == "all":
        rows = store.query("SELECT messages FROM prompts ORDER BY prompt_id")
    elif which == "unlabelled":
        rows = store.query(
            "SELECT messages FROM prompts WHERE prompt_id NOT IN (SELECT p.prompt_id FROM pairs p "
            "JOIN active_labels l USING (pair_id)) ORDER BY prompt_id"
        )
    else:
        return _prompts_from_file(Path(which))
    return [json.loads(r[0]) for r in rows]


def _prompts_from_file(path: Path) -> list[list[dict[str, str]]]:
    if not path.exists():
        raise ConfigError(
            f"--prompts {path}: no such file; use all, unlabelled or a .txt/.jsonl file"
        )
    out: list[list[dict[str, str]]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"{path}:{number}: not JSON ({exc.msg}); one object per line"
                ) from None
            value = value.get("prompt") if isinstance(value, dict) else value
            if isinstance(value, str):
                out.append([{"role": "user", "content": value}])
            elif isinstance(value, list) and all(isinstance(m, dict) for m in value):
                out.append(value)
            else:
                raise ConfigError(
                    f"{path}:{number}: field 'prompt' must be a string or a list of messages"
                )
        else:
            out.append([{"role": "user", "content": line.strip()}])
    return out


def export_prompts(
    store: PreferenceStore, which: str, path: Path, max_prompts: int | None = None
) -> int:
    """Write the prompts to generate for; `max_prompts` keeps the first ones by prompt id
    (a content hash, so a fixed pseudo-random sample)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    prompts = select_prompts(store, which)
    if not prompts:
        raise ConfigError(f"--prompts {which}: no prompts to generate for")
    if max_prompts is not None:
        prompts = prompts[:max_prompts]
    pq.write_table(
        pa.table(
            {
                "prompt_id": [prompt_id(m) for m in prompts],
                "messages": [json.dumps(m) for m in prompts],
                "prompt": [prompt_text(m) for m in prompts],
            }
        ),
        path,
    )
    return len(prompts)


def ingest_generations(store: PreferenceStore, path: Path, who: str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    by_prompt: dict[str, dict[str, Any]] = {}
    for row in rows:
        text = row["response"].strip()
        if not text:
            continue
        entry = by_prompt.setdefault(
            row["prompt_id"], {"messages": json.loads(row["messages"]), "responses": []}
        )
        if text not in entry["responses"]:
            entry["responses"].append(text)
    records = []
    for entry in by_prompt.values():
        messages, responses = entry["messages"], entry["responses"]
        pairs = [PairRecord(messages, a, b) for a, b in itertools.combinations(responses, 2)]
        records.append(ResponsesRecord(messages, responses, pairs))
    params = rows[0]["sampling"] if rows else "{}"
    with store.transaction() as cur:
        result = ingest(store, records, origin="generate", who=who, source="model", cursor=cur)
        for row in rows:
            cur.execute(
                "UPDATE prompt_responses SET meta = ? WHERE prompt_id = ? AND response_id = ? "
                "AND origin = 'generate' AND meta IS NULL",
                [
                    json.dumps({"run_id": who, **json.loads(row["sampling"])}),
                    row["prompt_id"],
                    response_id(row["response"].strip()),
                ],
            ).fetchall()
    return {
        "generated": len(rows),
        "prompts": len(by_prompt),
        "new_responses": result.responses,
        "new_pairs": result.imported_pairs,
        "sampling": json.loads(params),
    }
