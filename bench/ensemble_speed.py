"""Speed ratios of the reward ensemble, measured in one run; prints JSON.

1. K = 8 members scored in one vectorised pass vs one member (target: <= 1.2x).
2. Rescoring 100k pairs from cached features (target: <= 1 s on CPU), and how that
   compares with re-encoding them (target: >= 100x faster). Re-encoding 100k pairs is
   not run: it is estimated from the encoder's measured rate on a sample of real texts.
3. Reading cached vectors back from the store's `embeddings` table (measured on a
   smaller table and extrapolated per vector, stated as such).

Timings are the best of several repeats (other processes share the CPU).

    python bench/ensemble_speed.py [--pairs 100000] [--sample 64]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labeling.encoder import Encoder, EncoderConfig, embed_texts  # noqa: E402
from labeling.ensemble import EnsembleConfig, fit_ensemble  # noqa: E402
from labeling.features import DEFAULT_FEATURES  # noqa: E402

HH = REPO / ".." / "shared" / "data" / "hh-rlhf" / "helpful-base" / "test.jsonl.gz"
BLOCK_DIMS = {
    "joint": 384,
    "joint_tail": 384,
    "response": 384,
    "prompt": 384,
    "prompt_x_response": 384,
    "length": 2,
}
ENCODED_BLOCKS = {"joint", "joint_tail", "response", "prompt"}


def best_of(fn, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def fitted(members: int, head: str, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xa, xb = rng.normal(size=(2, 500, dim)).astype(np.float32)
    y = (rng.random(500) < 0.5).astype(np.float32)
    ens, _ = fit_ensemble(xa, xb, y, EnsembleConfig(members=members, head=head, steps=5))
    return ens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=64, help="texts encoded to measure the rate")
    args = parser.parse_args()

    dim = sum(BLOCK_DIMS[b] for b in DEFAULT_FEATURES)
    rng = np.random.default_rng(0)
    xa = rng.normal(size=(args.pairs, dim)).astype(np.float32)
    xb = rng.normal(size=(args.pairs, dim)).astype(np.float32)
    result: dict = {"pairs": args.pairs, "features": list(DEFAULT_FEATURES), "dim": dim}

    for head in ("linear", "mlp"):
        one, eight = fitted(1, head, dim), fitted(8, head, dim)
        t1, t8 = float("inf"), float("inf")
        for _ in range(9 if head == "linear" else 2):  # interleaved, so load changes hit both
            t1 = min(t1, best_of(lambda e=one: e.member_p_a(xa, xb), repeats=1))
            t8 = min(t8, best_of(lambda e=eight: e.member_p_a(xa, xb), repeats=1))
        result[f"{head}_k1_seconds"] = round(t1, 4)
        result[f"{head}_k8_seconds"] = round(t8, 4)
        result[f"{head}_k8_over_k1"] = round(t8 / t1, 3)

    # fitting K = 8 linear heads on 10k labelled pairs (Bradley-Terry, LBFGS, one thread)
    fit_rng = np.random.default_rng(1)
    w_true = fit_rng.normal(size=dim) / np.sqrt(dim)
    fa, fb = xa[:10_000], xb[:10_000]
    fy = (fit_rng.random(10_000) < 1 / (1 + np.exp(-(fa - fb) @ w_true))).astype(np.float32)
    fit_ensemble(fa[:100], fb[:100], fy[:100], EnsembleConfig(members=8, steps=5))  # warm up torch
    start = time.perf_counter()
    fit_ensemble(fa, fb, fy, EnsembleConfig(members=8))
    result["fit_10k_pairs_k8_seconds"] = round(time.perf_counter() - start, 2)

    # re-encoding rate on real texts, joint (prompt + response) and response alone
    rows = []
    with gzip.open(HH, "rt") as handle:
        for _, line in zip(range(args.sample), handle, strict=False):
            rows.append(json.loads(line)["chosen"])
    encoder = Encoder(EncoderConfig(progress=False))
    encoder.encode(rows[:8])  # warm up
    start = time.perf_counter()
    encoder.encode(rows)
    joint_rate = len(rows) / (time.perf_counter() - start)
    responses = [r.rsplit("\n\nAssistant:", 1)[-1] for r in rows]
    start = time.perf_counter()
    encoder.encode(responses)
    response_rate = len(rows) / (time.perf_counter() - start)
    n_blocks = {b: 2 * args.pairs for b in DEFAULT_FEATURES if b in ENCODED_BLOCKS}  # A and B texts
    est_encode = sum(
        n / (response_rate if b == "response" else joint_rate) for b, n in n_blocks.items()
    )
    rescore = result["linear_k8_seconds"]
    result.update(
        {
            "encode_texts_per_s_joint": round(joint_rate, 1),
            "encode_texts_per_s_response": round(response_rate, 1),
            "reencode_estimated_seconds": round(est_encode, 1),
            "rescore_100k_seconds": rescore,
            "rescore_speedup_vs_reencode": round(est_encode / rescore, 1),
        }
    )

    # reading cached vectors back from DuckDB (20k vectors, extrapolated per vector)
    from data.store import PreferenceStore

    with tempfile.TemporaryDirectory() as tmp, PreferenceStore(Path(tmp) / "cache.duckdb") as store:
        texts = [f"text {i}" for i in range(20_000)]
        vectors = rng.normal(size=(len(texts), 384)).astype(np.float32)
        import pyarrow as pa

        from data.ids import text_hash
        from labeling.encoder import cache_key

        key = cache_key(EncoderConfig())
        with store.transaction() as cur:
            cur.register(
                "_v",
                pa.table(
                    {
                        "encoder": [key] * len(texts),
                        "text_hash": [text_hash(t) for t in texts],
                        "vector": pa.array(vectors.tolist(), type=pa.list_(pa.float32())),
                    }
                ),
            )
            cur.execute("INSERT INTO embeddings SELECT * FROM _v").fetchall()
        t_load = best_of(lambda: embed_texts(store, texts, encoder=lambda: 1 / 0), repeats=3)
        per_vector = t_load / len(texts)
        total_vectors = sum(n_blocks.values())
        result.update(
            {
                "cache_read_20k_vectors_seconds": round(t_load, 3),
                "cache_read_estimated_seconds_for_100k_pairs": round(
                    per_vector * total_vectors * args.pairs / 100_000, 2
                ),
            }
        )
    result["targets"] = {
        "k8_over_k1<=1.2": result["linear_k8_over_k1"] <= 1.2,
        "rescore_100k<=1s": rescore <= 1.0,
        "speedup>=100x": result["rescore_speedup_vs_reencode"] >= 100,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
