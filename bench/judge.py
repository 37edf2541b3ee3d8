"""Benchmark: judge-batch throughput against a loopback server with a fixed latency.

    python bench/judge.py            # 1,000 HH-RLHF pairs at concurrency 16 and 64, c=1 on 100
    python bench/judge.py --quick    # CI size: 200 pairs, c=1 on 20

The fake OpenAI-compatible server (tests/fakes/openai_server.py) runs in its own process
and answers every request after `--latency` seconds (default 0.1). Each run starts from a
fresh copy of the same store (the first N pairs of HH-RLHF helpful-base test, routed to
the judge queue) and goes through the whole batch path: the real `openai` client, the
semaphore, parsing, and the store writer. The main runs use the judge's default HTTP
transport (`--http-client auto`: the SDK's aiohttp transport when `openai[aiohttp]` is
installed); `transports` then compares c=1 and c=64 for each transport: aiohttp, the
SDK's default httpx client (keep-alive pool), and httpx without connection reuse. Concurrency 1 would take latency x N seconds
(100 s for 1,000 pairs), so it is measured on a subset; throughput is pairs per second,
and the ratios compare throughputs measured in this same run. Then: a second run over
the finished store must make zero calls, and `--swap` must make exactly twice the calls.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
HH = REPO / ".." / "shared" / "data" / "hh-rlhf" / "helpful-base" / "test.jsonl.gz"


def build_store(path: Path, pairs: int) -> int:
    from data.importer import ImportOptions, import_sources
    from data.store import PreferenceStore

    with PreferenceStore(path) as store:
        import_sources(
            store,
            [str(HH)],
            ImportOptions(
                format="hh", skip_invalid=True, report_path=str(path.parent / "rejected.jsonl")
            ),
        )
        with store.transaction() as cur:
            cur.execute("UPDATE pairs SET queue = 'human'").fetchall()
            cur.execute(
                "UPDATE pairs SET queue = 'judge' WHERE pair_id IN "
                "(SELECT pair_id FROM pairs ORDER BY pair_id LIMIT ?)",
                [pairs],
            ).fetchall()
        return int(store.scalar("SELECT count(*) FROM pairs WHERE queue = 'judge'"))


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--latency", str(latency)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def server_requests(process: subprocess.Popen[str]) -> int:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("stats\n")
    process.stdin.flush()
    return int(json.loads(process.stdout.readline())["requests"])


def run(
    template: Path,
    work: Path,
    url: str,
    *,
    concurrency: int,
    limit: int | None,
    swap: bool = False,
    store_path: Path | None = None,
    transport: str = "auto",
) -> dict[str, object]:
    from data.store import PreferenceStore
    from judges.batch import run_batch
    from judges.client import OpenAIBackend
    from judges.config import JudgeConfig

    if store_path is None:
        store_path = work / f"c{concurrency}{'-swap' if swap else ''}.duckdb"
        shutil.copyfile(template, store_path)
    config = JudgeConfig(
        models=("bench-judge",),
        base_url=url,
        concurrency=concurrency,
        limit=limit,
        swap=swap,
        progress=False,
        timeout=30,
        max_retries=2,
        http_client="httpx" if transport == "httpx-no-reuse" else transport,
    )
    backend = None
    if transport == "httpx-no-reuse":  # a new connection for every request
        import httpx2

        backend = OpenAIBackend(
            config,
            http_client=httpx2.AsyncClient(
                limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=0),
                timeout=30,
            ),
        )
    with PreferenceStore(store_path) as store:
        started, cpu = time.perf_counter(), time.process_time()
        report = run_batch(store, config, backend=backend)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "concurrency": concurrency,
        "transport": transport,
        "swap": swap,
        "pairs": report.judged,
        "calls": report.calls,
        "labels": report.labels,
        "failed": report.failed,
        "seconds": round(seconds, 3),
        "client_cpu_s": round(cpu, 3),
        "client_cpu_ms_per_call": round(1000 * cpu / report.calls, 3) if report.calls else None,
        "pairs_per_s": round(report.judged / seconds, 2) if report.judged else None,
        "store": str(store_path),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI size: 200 pairs, c=1 on 20.")
    parser.add_argument(
        "--pairs", type=int, default=None, help="Pairs per run (default 1000; quick 200)."
    )
    parser.add_argument(
        "--c1-pairs",
        type=int,
        default=None,
        help="Pairs for concurrency 1 (default 100; quick 20).",
    )
    parser.add_argument("--latency", type=float, default=0.1, help="Server latency in seconds.")
    parser.add_argument(
        "--no-transports", action="store_true", help="Skip the comparison of HTTP transports."
    )
    args = parser.parse_args()
    pairs = args.pairs or (200 if args.quick else 1000)
    c1_pairs = args.c1_pairs or (20 if args.quick else 100)
    if not HH.exists():
        sys.exit(f"{HH} not found: the benchmark reads the shared HH-RLHF helpful-base test split")

    work = Path(tempfile.mkdtemp(prefix="prefloop-bench-judge-"))
    server, url = start_server(args.latency)
    try:
        template = work / "template.duckdb"
        judge_pairs = build_store(template, pairs)
        # warm-up (imports, first connection), not measured: c=1 would otherwise pay for it
        shutil.copyfile(template, work / "warmup.duckdb")
        run(template, work, url, concurrency=1, limit=2, store_path=work / "warmup.duckdb")
        runs = [run(template, work, url, concurrency=1, limit=c1_pairs)]
        for concurrency in (16, 64):
            runs.append(run(template, work, url, concurrency=concurrency, limit=None))
        before = server_requests(server)
        rerun = run(
            template, work, url, concurrency=64, limit=None, store_path=Path(str(runs[-1]["store"]))
        )
        rerun_requests = server_requests(server) - before
        swap = run(template, work, url, concurrency=64, limit=None, swap=True)
        transports: dict[str, dict[str, object]] = {}
        from judges.client import aiohttp_installed

        kinds = (
            ["aiohttp", "httpx", "httpx-no-reuse"]
            if aiohttp_installed()
            else ["httpx", "httpx-no-reuse"]
        )
        for kind in [] if args.no_transports else kinds:
            one = run(template, work, url, concurrency=1, limit=c1_pairs, transport=kind)
            many = run(template, work, url, concurrency=64, limit=None, transport=kind)
            transports[kind] = {
                "c1_pairs_per_s": one["pairs_per_s"],
                "c64_pairs_per_s": many["pairs_per_s"],
                "ratio_64_vs_1": round(many["pairs_per_s"] / one["pairs_per_s"], 1),
                "c64_client_cpu_ms_per_call": many["client_cpu_ms_per_call"],
            }
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    by_c = {r["concurrency"]: r for r in runs}
    plain_calls = by_c[64]["calls"]
    result = {
        "bench": "judge",
        "latency_s": args.latency,
        "pairs": judge_pairs,
        "c1_pairs": c1_pairs,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "runs": [{k: v for k, v in r.items() if k != "store"} for r in runs],
        "throughput_ratio_16_vs_1": round(by_c[16]["pairs_per_s"] / by_c[1]["pairs_per_s"], 1),
        "throughput_ratio_64_vs_1": round(by_c[64]["pairs_per_s"] / by_c[1]["pairs_per_s"], 1),
        "goal_ratio_64_vs_1": 50,
        "rerun_calls": rerun["calls"],
        "rerun_server_requests": rerun_requests,
        "swap_calls": swap["calls"],
        "plain_calls": plain_calls,
        "swap_call_ratio": round(swap["calls"] / plain_calls, 3) if plain_calls else None,
        "swap_seconds": swap["seconds"],
        "default_transport": "aiohttp" if _aiohttp() else "httpx",
        "transports": transports,
    }
    print(json.dumps(result, indent=2))


def _aiohttp() -> bool:
    from judges.client import aiohttp_installed

    return aiohttp_installed()


if __name__ == "__main__":
    main()
