"""Label-efficiency benchmark (the same as `prefloop bench active-learning`); prints JSON.

Simulated annotation rounds on a labelled dataset (default: HH-RLHF helpful-base test
split from ../shared/data): random, variance, BALD and BALD+diversity, >= 5 seeds, with
the longer-response and all-labels baselines and the hybrid human + simulated-judge mode
in the same run. Writes active_learning.{json,png,md} under bench/out/. Embeddings are
cached in bench/out/al-cache.duckdb: the first run encodes ~16k texts (tens of minutes
on 2 CPU cores), later runs take minutes.

    python bench/active_learning.py [--seeds 5] [--quick] [--judge-agreement 0.7]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labeling.benchmark import BenchConfig, run_benchmark  # noqa: E402
from labeling.benchmark_report import write_outputs  # noqa: E402
from labeling.features import DEFAULT_FEATURES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=BenchConfig.data, help="labelled preference file")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--features", default=",".join(DEFAULT_FEATURES), help="blocks of the curves"
    )
    parser.add_argument("--judge-agreement", type=float, default=0.70)
    parser.add_argument("--hybrid-budget", type=int, default=200)
    parser.add_argument(
        "--quick", action="store_true", help="skip the feature/l2 comparisons and extra curves"
    )
    parser.add_argument("--out", default=str(REPO / "bench" / "out"))
    args = parser.parse_args()
    config = BenchConfig(
        data=args.data,
        seeds=args.seeds,
        features=tuple(f for f in args.features.split(",") if f),
        judge_agreement=args.judge_agreement,
        hybrid_budget=args.hybrid_budget,
        **({"compare_features": (), "curve_features": ()} if args.quick else {}),
    )
    result = run_benchmark(config, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    result["outputs"] = write_outputs(result, Path(args.out))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
