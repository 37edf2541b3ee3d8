"""Benchmark: time from a label click to the next pair shown, with concurrent annotators.

    python bench/app.py                 # 100k-pair store, 16 annotators, 25 labels each
    python bench/app.py --quick         # CI size: 10k pairs, 4 annotators, 10 labels each

The store is built with `data.ingest.ingest` (synthetic pairs, all routed to the human
queue), the app runs as a real `prefloop serve --auth` subprocess on 127.0.0.1, and each
annotator logs in as its own user and, in its own thread, does what the browser does on a
click: one HTTP POST to the `label_a` endpoint with the pair on screen (the annotate events
skip Gradio's queue). The reply carries the next pair (prompt, A, B, progress), so its wall
time is "label click -> next pair shown" minus the browser's rendering. Reported in the same run, for ratios:

* `api_1`: one annotator alone through the API (no contention);
* `api_N`: N concurrent annotators through the API (the figure the goal is about);
* `direct_N`: the same label + next-pair work called in-process from N threads,
  without HTTP/Gradio: what the store and queue themselves cost.

Prints one JSON object. Goal: p99 of `api_N` <= 150 ms at N = 16 on a 100k-pair store.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_store(path: Path, pairs: int) -> float:
    from data.ingest import ingest
    from data.queue import Assignment, assign
    from data.shapes import PairRecord
    from data.store import PreferenceStore

    started = time.perf_counter()
    records = (
        PairRecord(
            [{"role": "user", "content": f"Synthetic question {i} about sorting lists?"}],
            f"Answer {i}: use `sorted(xs)`; it returns a new list.",
            f"Answer {i}: no idea.",
        )
        for i in range(pairs)
    )
    with PreferenceStore(path) as store:
        result = ingest(store, records, origin="bench")
        n = len(result.pair_ids)
        assign(
            store,
            [
                Assignment(pid, "human", priority=float((i * 7919) % n))
                for i, pid in enumerate(result.pair_ids)
            ],
        )
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(latencies: list[float], seconds: float) -> dict[str, float]:
    ms = [x * 1000 for x in latencies]
    return {
        "labels": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
        "max_ms": round(max(ms), 1),
        "labels_per_s": round(len(ms) / seconds, 1),
    }


def run_annotators(fn, count: int, per_annotator: int, warmup: int) -> dict[str, float]:  # noqa: ANN001
    """fn(index, latencies, n_labels, warmup) runs one annotator; returns the pooled summary."""
    latencies: list[list[float]] = [[] for _ in range(count)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def one(index: int) -> None:
        try:
            fn(index, latencies[index], per_annotator, warmup, barrier)
        except BaseException as exc:  # noqa: BLE001 - reported, not swallowed
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise errors[0]
    return summary([x for per in latencies for x in per], seconds)


def api_annotator(url: str, prefix: str):  # noqa: ANN201
    """An annotator as the browser is one: log in, then one POST per click (the events skip the queue)."""
    import httpx

    def fn(index: int, out: list[float], n: int, warmup: int, barrier: threading.Barrier) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            http.post(
                "login", data={"username": f"{prefix}{index}", "password": "pw"}
            ).raise_for_status()
            session = {"session_hash": f"bench-{prefix}{index}"}

            def call(api_name: str, *data: object) -> list[object]:
                response = http.post(
                    f"gradio_api/run/{api_name}", json={"data": list(data), **session}
                )
                response.raise_for_status()
                return response.json()["data"]

            pair_id = call("next_pair")[3]
            for _ in range(warmup):
                pair_id = call("label_a", pair_id, "")[3]
            barrier.wait()
            for _ in range(n):
                started = time.perf_counter()
                shown = call("label_a", pair_id, "")
                out.append(time.perf_counter() - started)
                pair_id = shown[3]
                assert pair_id, "the queue ran dry: build a bigger store"

    return fn


def direct_annotator(store_path: Path):  # noqa: ANN201
    from app.ui.annotate import AnnotationService
    from data.store import PreferenceStore

    store = PreferenceStore(store_path)
    annotator = AnnotationService(store)

    def fn(index: int, out: list[float], n: int, warmup: int, barrier: threading.Barrier) -> None:
        user = f"direct{index}"
        shown = annotator.next(user)
        for _ in range(warmup):
            shown, _ = annotator.click(user, shown.pair_id, "a", None)
        barrier.wait()
        for _ in range(n):
            started = time.perf_counter()
            shown, _ = annotator.click(user, shown.pair_id, "a", None)  # what a click does
            out.append(time.perf_counter() - started)

    return fn, store


def serve(store_path: Path, users: Path, port: int) -> subprocess.Popen[bytes]:
    import httpx

    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app",
            "serve",
            "--db",
            str(store_path),
            "--auth",
            str(users),
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start within 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=16)
    parser.add_argument("--labels", type=int, default=25, help="measured labels per annotator")
    parser.add_argument(
        "--warmup", type=int, default=2, help="unmeasured labels per annotator first"
    )
    parser.add_argument(
        "--quick", action="store_true", help="10k pairs, 4 annotators, 10 labels each"
    )
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.annotators, args.labels = 10_000, 4, 10
    from app.ui.auth import add_user

    tmp = Path(tempfile.mkdtemp(prefix="prefloop-bench-app-"))
    store_path = tmp / "bench.duckdb"
    build_seconds = build_store(store_path, args.pairs)
    users = tmp / "users.json"
    add_user(users, "solo0", "pw", "annotator")
    for i in range(args.annotators):
        add_user(users, f"ann{i}", "pw", "annotator")

    direct_fn, store = direct_annotator(store_path)
    direct = run_annotators(direct_fn, args.annotators, args.labels, args.warmup)
    store.close()

    port = free_port()
    proc = serve(store_path, users, port)
    try:
        url = f"http://127.0.0.1:{port}/"
        api_1 = run_annotators(api_annotator(url, "solo"), 1, args.labels, args.warmup)
        api_n = run_annotators(api_annotator(url, "ann"), args.annotators, args.labels, args.warmup)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result = {
        "benchmark": "app label->next pair",
        "pairs": args.pairs,
        "annotators": args.annotators,
        "labels_per_annotator": args.labels,
        "store_build_s": round(build_seconds, 1),
        "cpu_count": os.cpu_count(),
        f"direct_{args.annotators}": direct,
        "api_1": api_1,
        f"api_{args.annotators}": api_n,
        "ratio_api_n_p99_vs_api_1_p99": round(api_n["p99_ms"] / api_1["p99_ms"], 2),
        "ratio_api_n_p99_vs_direct_p99": round(api_n["p99_ms"] / direct["p99_ms"], 2),
        "goal_p99_ms": 150,
        "goal_met": api_n["p99_ms"] <= 150,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
