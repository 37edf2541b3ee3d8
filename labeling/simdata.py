"""Labelled pairs for simulations: read with the importer, oriented as the store orients them.

The simulated annotation rounds (`labeling.benchmark`) need every pair's texts and its
hidden true label. Pairs are oriented like the store (A = the response with the smaller
id), so "A wins" is about half the labels, not all of them, and features are embedded
through the same cache (a DuckDB store used only for its `embeddings` table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.errors import ConfigError
from data.ids import canonical_order, pair_id, prompt_id, render_messages, response_id
from data.importer import ImportOptions, parse_sources
from data.shapes import PairRecord, ResponsesRecord
from labeling.encoder import DEFAULT_ENCODER_CONFIG, EncoderConfig
from labeling.features import response_features

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "data"
    / "hh-rlhf"
    / "helpful-base"
    / "test.jsonl.gz"
)


@dataclass
class SimData:
    """N labelled pairs: y[n] = 1.0 when A is preferred, 0.0 when B is."""

    pair_ids: list[str]
    prompt_ids: list[str]
    prompts: list[str]
    a: list[str]
    b: list[str]
    y: np.ndarray
    skipped: int  # rows without a usable a/b verdict or with invalid content

    def __len__(self) -> int:
        return len(self.pair_ids)


def load_simdata(source: str | Path = DEFAULT_DATA, *, limit: int | None = None) -> SimData:
    """Read any file the importer reads; keep pairs with an a/b verdict (first occurrence)."""
    source = Path(source)
    if not source.exists():
        raise ConfigError(f"{source}: no such dataset; pass --data with a labelled preference file")
    records, problems, _ = parse_sources([str(source)], ImportOptions(skip_invalid=True))
    pairs: list[PairRecord] = []
    for record in records:
        pairs.extend(record.pairs if isinstance(record, ResponsesRecord) else [record])
    out = SimData([], [], [], [], [], np.zeros(0, np.float32), skipped=len(problems))
    seen: set[str] = set()
    ys: list[float] = []
    for rec in pairs:
        if rec.verdict not in ("a", "b"):
            out.skipped += 1
            continue
        pid = prompt_id(rec.messages)
        r1, r2 = response_id(rec.response_1), response_id(rec.response_2)
        _, _, flipped = canonical_order(r1, r2)
        key = pair_id(pid, r1, r2)
        if key in seen:
            out.skipped += 1
            continue
        seen.add(key)
        first, second = (
            (rec.response_2, rec.response_1) if flipped else (rec.response_1, rec.response_2)
        )
        first_wins = (rec.verdict == "a") != flipped
        out.pair_ids.append(key)
        out.prompt_ids.append(pid)
        out.prompts.append(render_messages(rec.messages))
        out.a.append(first)
        out.b.append(second)
        ys.append(1.0 if first_wins else 0.0)
        if limit is not None and len(ys) >= limit:
            break
    out.y = np.array(ys, dtype=np.float32)
    return out


def simdata_features(
    data: SimData,
    features: Sequence[str],
    cache_path: str | Path,
    *,
    config: EncoderConfig = DEFAULT_ENCODER_CONFIG,
) -> tuple[np.ndarray, np.ndarray, int]:
    """([N, D] A features, [N, D] B features, texts encoded) through the cache at `cache_path`."""
    from data.store import PreferenceStore

    Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
    with PreferenceStore(cache_path) as cache:
        x, encoded = response_features(
            cache, data.prompts + data.prompts, data.a + data.b, features, config=config
        )
    n = len(data)
    return x[:n], x[n:], encoded


def split_by_prompt(data: SimData, test_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pool indices, test indices): whole prompts go to test until it holds >= test_pairs."""
    rng = np.random.default_rng(seed)
    prompts = sorted(set(data.prompt_ids))
    rng.shuffle(prompts)
    by_prompt: dict[str, list[int]] = {}
    for i, p in enumerate(data.prompt_ids):
        by_prompt.setdefault(p, []).append(i)
    test: list[int] = []
    for p in prompts:
        if len(test) >= test_pairs:
            break
        test.extend(by_prompt[p])
    test_set = set(test)
    pool = [i for i in range(len(data)) if i not in test_set]
    return np.array(pool), np.array(sorted(test))
