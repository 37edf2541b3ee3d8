"""Label-efficiency benchmark (the same as `prefloop bench active-learning`); prints JSON.

Simulated annotation rounds on a labelled dataset (default: HH-RLHF helpful-base test
split from ../shared/data): random, variance, BALD and BALD+diversity, >= 5 seeds, with
the longer-response and all-labels baselines and the hybrid human + simulated-judge mode
in the same run. Writes active_learning.{json,png,md} under bench/out/. Embeddings are
cached in bench/out/al-cache.duckdb: the first run encodes ~16k texts (tens of minutes
on 2 CPU cores), later runs take minutes.

    python bench/active_learning.py [--seeds 5] [--quick] [--judge-agreement 0.7]

`--compare-encoders` runs only the encoder comparison instead: all-MiniLM-L6-v2 (mean
pooled) against smollm2-135m-instruct (last-token hidden state of prompt + response, the
`joint_tail` block), on the first `--encoder-pairs` pairs, random labels at 100, 200 and
all of the pool, 5 seeds with 95% intervals, and each encoder's encoding time:

    python bench/active_learning.py --compare-encoders [--encoder-pairs 600] [--encoder-max-length 128]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labeling.benchmark import BenchConfig, run_benchmark  # noqa: E402
from labeling.benchmark_report import write_outputs  # noqa: E402
from labeling.features import DEFAULT_FEATURES  # noqa: E402

ENCODER_RUNS = (  # (encoder, feature blocks)
    ("all-MiniLM-L6-v2", ("response", "length")),  # the default ensemble
    ("all-MiniLM-L6-v2", ("joint_tail", "length")),
    ("smollm2-135m-instruct", ("joint_tail", "length")),
)


def compare_encoders(args: argparse.Namespace) -> dict:
    """Held-out accuracy of the ensemble on each encoder's features at 100, 200, all labels."""
    import numpy as np

    from labeling.benchmark import BenchConfig, Simulator, ci95, evaluate
    from labeling.encoder import EncoderConfig
    from labeling.simdata import load_simdata, simdata_features, split_by_prompt

    data = load_simdata(args.data, limit=args.encoder_pairs)
    config = BenchConfig(seeds=args.seeds)
    test_pairs = len(data) * 2 // 5
    splits = [split_by_prompt(data, test_pairs, seed) for seed in range(args.seeds)]
    cache = Path(args.out) / "encoders-cache.duckdb"
    result: dict = {
        "pairs": len(data),
        "test_pairs": int(len(splits[0][1])),
        "pool_pairs": int(len(splits[0][0])),
        "max_length": args.encoder_max_length,
        "seeds": args.seeds,
        "runs": [],
    }
    lengths = np.array([[len(a), len(b)] for a, b in zip(data.a, data.b, strict=True)])
    longer = np.where(
        lengths[:, 0] > lengths[:, 1], 1.0, np.where(lengths[:, 0] < lengths[:, 1], 0.0, 0.5)
    )
    result["longer_response"] = ci95([evaluate(longer[t], data.y[t])[0] for _, t in splits])
    for name, features in ENCODER_RUNS:
        enc = EncoderConfig(name=name, max_length=args.encoder_max_length, batch_size=16)
        started = time.perf_counter()
        xa, xb, encoded = simdata_features(data, features, cache, config=enc)
        seconds = time.perf_counter() - started
        sim = Simulator(xa, xb, data.y, config, features)
        row = {
            "encoder": name,
            "features": list(features),
            "texts_encoded": encoded,
            "encode_s": round(seconds, 1),
            "texts_per_s": round(encoded / seconds, 2) if encoded else None,
        }
        for budget in (100, 200, "all"):
            accs = []
            for seed, (pool, test) in enumerate(splits):
                rng = np.random.default_rng(seed)
                train = pool if budget == "all" else rng.choice(pool, size=budget, replace=False)
                accs.append(sim.fit_eval(train, test, seed)[1])
            mean, half = ci95(accs)
            row[f"acc@{budget}"] = [round(mean, 4), round(half, 4)]
        print(json.dumps(row), file=sys.stderr, flush=True)
        result["runs"].append(row)
    return result


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
    parser.add_argument(
        "--compare-encoders", action="store_true", help="only the MiniLM vs SmolLM2 comparison"
    )
    parser.add_argument("--encoder-pairs", type=int, default=600, help="pairs it uses")
    parser.add_argument("--encoder-max-length", type=int, default=128, help="tokens per text")
    args = parser.parse_args()
    if args.compare_encoders:
        print(json.dumps(compare_encoders(args), indent=2))
        return
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
