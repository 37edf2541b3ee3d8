"""Store benchmark: import throughput, next-pair query latency, concurrent label writes.

Prints one JSON object. Every figure comes with a baseline measured in the same run:
- import: bulk Arrow ingest vs naive row-at-a-time INSERTs (on a sample);
- next pairs: the two-stage top-K query vs the same question as one plain SQL query;
- label writes: 16 concurrent writer threads vs 1 thread.

Usage: python bench/store.py [--pairs 100000] [--large 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data import click_batch, queue  # noqa: E402
from data.ids import canonical_messages_json, pair_id, prompt_id, render_messages, response_id  # noqa: E402
from data.importer import ImportOptions, import_sources  # noqa: E402
from data.store import PreferenceStore  # noqa: E402


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.array(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "n": len(samples),
    }


def synthetic_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    words = [
        "the",
        "a",
        "model",
        "answer",
        "helpful",
        "short",
        "long",
        "code",
        "python",
        "list",
        "explain",
        "why",
        "how",
        "safe",
    ]
    rows = []
    for i in range(n):
        prompt = f"Question {i}: " + " ".join(rng.choices(words, k=12))
        rows.append(
            {
                "prompt": prompt,
                "chosen": f"Good answer {i}: " + " ".join(rng.choices(words, k=40)),
                "rejected": f"Bad answer {i}: " + " ".join(rng.choices(words, k=25)),
            }
        )
    return rows


def bench_import(tmp: Path, n: int, naive_n: int) -> dict[str, object]:
    path = tmp / "synthetic.jsonl"
    with path.open("w") as handle:
        for row in synthetic_rows(n):
            handle.write(json.dumps(row) + "\n")
    with PreferenceStore(tmp / "import.duckdb") as store:
        start = time.perf_counter()
        report = import_sources(store, [str(path)], ImportOptions())
        seconds = time.perf_counter() - start
        assert report.imported_pairs == n
    naive_rows = synthetic_rows(naive_n, seed=1)
    with PreferenceStore(tmp / "naive.duckdb") as store:
        start = time.perf_counter()
        naive_insert(store, naive_rows)
        naive_seconds = time.perf_counter() - start
    rate, naive_rate = n / seconds, naive_n / naive_seconds
    return {
        "pairs": n,
        "seconds": round(seconds, 3),
        "pairs_per_s": round(rate),
        "naive_rows": naive_n,
        "naive_pairs_per_s": round(naive_rate),
        "speedup_vs_naive": round(rate / naive_rate, 1),
    }


def naive_insert(store: PreferenceStore, rows: list[dict[str, str]]) -> None:
    """The obvious loop: one statement per prompt, response, pair and label."""
    with store.transaction() as cur:
        for row in rows:
            messages = [{"role": "user", "content": row["prompt"]}]
            pid = prompt_id(messages)
            cur.execute(
                "INSERT OR IGNORE INTO prompts (prompt_id, messages, text) VALUES (?, ?, ?)",
                [pid, canonical_messages_json(messages), render_messages(messages)],
            ).fetchall()
            ids = []
            for text in (row["chosen"], row["rejected"]):
                rid = response_id(text)
                ids.append(rid)
                cur.execute(
                    "INSERT OR IGNORE INTO responses (response_id, text) VALUES (?, ?)", [rid, text]
                ).fetchall()
            a, b = sorted(ids)
            key = pair_id(pid, a, b)
            cur.execute(
                "INSERT OR IGNORE INTO pairs (pair_id, prompt_id, response_a_id, response_b_id, origin) "
                "VALUES (?, ?, ?, ?, 'naive')",
                [key, pid, a, b],
            ).fetchall()
            cur.execute(
                "INSERT INTO labels (pair_id, source, who, verdict) VALUES (?, 'import', 'import', ?)",
                [key, "a" if ids[0] == a else "b"],
            ).fetchall()


def build_queue_store(path: Path, n: int, annotators: int = 16) -> PreferenceStore:
    """n pairs in the human queue with random priorities, 5% already labelled, leases held."""
    store = PreferenceStore(path)
    with store.transaction() as cur:
        cur.execute(
            f"""INSERT INTO pairs (pair_id, prompt_id, response_a_id, response_b_id, origin)
                SELECT md5(i::VARCHAR)[:32], md5('p' || i)[:32], md5('a' || i)[:32], md5('b' || i)[:32],
                       'bench' FROM range({n}) t(i)"""
        ).fetchall()
        cur.execute(
            """INSERT INTO labels (pair_id, source, who, verdict)
                SELECT pair_id, 'human', 'ann' || (hash(pair_id) % 16), 'a'
                FROM pairs USING SAMPLE 5 PERCENT (reservoir, 7)"""
        ).fetchall()
    rng = np.random.default_rng(0)
    ids = [r[0] for r in store.query("SELECT pair_id FROM pairs")]
    priorities = rng.random(len(ids))
    queue.assign(
        store,
        [
            queue.Assignment(p, "human", float(x), needed_labels=2)
            for p, x in zip(ids, priorities, strict=True)
        ],
    )
    for k in range(annotators):
        queue.claim_next(store, f"ann{k}")
    return store


def bench_next_pairs(tmp: Path, n: int, calls: int, naive_calls: int) -> dict[str, object]:
    start = time.perf_counter()
    store = build_queue_store(tmp / f"queue{n}.duckdb", n)
    build_seconds = time.perf_counter() - start
    cur = store.cursor()
    fast, naive = [], []
    for i in range(calls):
        who = f"ann{i % 16}"
        t = time.perf_counter()
        got = queue.next_pair_ids(store, who, 5)
        fast.append(time.perf_counter() - t)
    for i in range(naive_calls):
        who = f"ann{i % 16}"
        t = time.perf_counter()
        expected = [
            r[0]
            for r in cur.execute(
                queue.NAIVE_NEXT_PAIRS_SQL, {"annotator": who, "limit": 5}
            ).fetchall()
        ]
        naive.append(time.perf_counter() - t)
        got = queue.next_pair_ids(store, who, 5)
        assert got == expected, "the fast query must answer exactly what the plain one does"
    store.close()
    result = {
        "pairs": n,
        "build_s": round(build_seconds, 1),
        "indexed": percentiles(fast),
        "naive_full_scan": percentiles(naive),
    }
    result["speedup_p50"] = round(
        result["naive_full_scan"]["p50_ms"] / result["indexed"]["p50_ms"], 1
    )
    return result


def bench_label_writes(tmp: Path, n: int, threads: int, per_thread: int) -> dict[str, object]:
    def run(thread_count: int, label_count: int, tag: str) -> tuple[list[float], int]:
        store = build_queue_store(tmp / f"writes-{tag}.duckdb", n, annotators=0)
        latencies: list[float] = []
        lock = threading.Lock()

        def annotator(k: int) -> None:
            who = f"{tag}{k}"
            mine = []
            for _ in range(label_count):
                pid = queue.claim_next(store, who)
                t = time.perf_counter()
                click_batch.submit_human_label(
                    store, pid, who, verdict_shown="a", swapped=k % 2 == 0
                )
                mine.append(time.perf_counter() - t)
            with lock:
                latencies.extend(mine)

        workers = [threading.Thread(target=annotator, args=(k,)) for k in range(thread_count)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        stored = store.scalar(f"SELECT count(*) FROM labels WHERE who LIKE '{tag}%'")
        store.close()
        return latencies, stored

    concurrent, stored = run(threads, per_thread, "c")
    single, _ = run(1, per_thread * 2, "s")
    assert stored == threads * per_thread, "every acknowledged label must be stored"
    result = {
        "pairs": n,
        "threads": threads,
        "labels": stored,
        "concurrent": percentiles(concurrent),
        "single_thread": percentiles(single),
    }
    result["p99_ratio_vs_single"] = round(
        result["concurrent"]["p99_ms"] / result["single_thread"]["p99_ms"], 2
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", type=int, default=100_000, help="pairs for import and the small queue"
    )
    parser.add_argument("--large", type=int, default=1_000_000, help="pairs for the large queue")
    parser.add_argument("--quick", action="store_true", help="small sizes for CI")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.large = 5_000, 20_000
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        result = {
            "benchmark": "store",
            "import": bench_import(tmp, args.pairs, naive_n=min(5_000, args.pairs)),
            "next_pairs": [
                bench_next_pairs(tmp, size, calls=300, naive_calls=10)
                for size in (args.pairs, args.large)
            ],
            "label_writes": bench_label_writes(tmp, args.pairs, threads=16, per_thread=20),
        }
    result["targets"] = {
        "import_pairs_per_s>=20000": result["import"]["pairs_per_s"] >= 20_000,
        "next_pairs_p99_ms<=20_at_large": result["next_pairs"][-1]["indexed"]["p99_ms"] <= 20,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
