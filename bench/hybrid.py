"""Benchmark: how many exported labels are right when humans label a budget and a judge the rest.

    python bench/hybrid.py            # 5 seeds, budgets 10/20/30/50%, single judge and panel
    python bench/hybrid.py --quick    # 2 seeds, 30% only, 600 pairs (CI size)
    prefloop bench hybrid [...]       # the same

Data: HH-RLHF helpful-base test (one human label per pair: the truth), imported without
its labels. Judges are simulated and served over the OpenAI API by a loopback server
(`tests/fakes/openai_server.py`), so every label goes through the real `prefloop judge`
path (`judges.batch.run_batch`), and routing, scoring and export run the same code as
the CLI (`route_store`, `score_store`, `aggregated_pairs`), on real DuckDB files.
Simulated annotators label exactly the pairs in the human queue through
`data.click_batch.submit_human_label`.

The simulated judges make structured errors, not coin flips. For pair n, judge j sees

    z = q_j * t_n * (0.25 + s_n) + len_j * loglen_n + pos_j * (+1 shown "ab", -1 "ba")
        + sigma * (rho * e_n + sqrt(1 - rho^2) * e_nj)

where t_n = +1 when the human preferred stored A, s_n in [0, 1] is the preference
strength (rank of |P - 0.5| of a reward ensemble fitted on all labels: weak preferences
are judged worse), loglen_n = log(len A / len B) (length bias), pos_j a position bias
towards the response shown first, e_n noise shared by the panel (correlated errors) and
e_nj the judge's own. The verdict is sign(z) (|z| < 0.03: tie); the logprob P(A) it
reports is sigmoid(kappa_j * z), informative but over-confident. 1% of pairs get
unparseable answers (failed judgements). q_j is set by bisection so that each judge
agrees with the human label on `--judge-accuracy` of the pairs (default 0.75: the
measured agreement of the real judges in the issue).

Flows, at each human budget (share of pairs):
* judge-only: `judge --all-unlabelled`, no humans;
* random: humans on a random slice (`route --strategy random --no-promote`); the judge's
  verdicts do not depend on the routing, so this equals routing first and judging after;
* uncertainty: `judge` -> `score` -> `route --strategy variance --no-promote` (ensemble
  uncertainty only, the old ranking);
* default: `judge` -> `score` -> `route` with no flags;
* default-2-rounds: the default flow with the budget in two halves, `score` between them
  (the second half uses the judge-error model fitted on the first half's labels);
* oracle: humans exactly on the pairs whose automatic label is wrong or missing.
The measure is the share of all pairs whose exported label equals the human label
(an unlabelled pair counts as not right). Means and 95% t-intervals over seeds.
Prints one JSON object and writes JSON + PNG to bench/out/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
HH = REPO / ".." / "shared" / "data" / "hh-rlhf" / "helpful-base" / "test.jsonl.gz"
FLOWS = ("judge-only", "random", "uncertainty", "default", "default-2-rounds", "oracle")
log = logging.getLogger("bench.hybrid")


@dataclass(frozen=True)
class SimJudge:
    """One simulated judge's error structure (module docstring)."""

    name: str
    position: float  # pull towards the response shown first
    length: float  # pull towards the longer response per unit log length ratio
    kappa: float  # logprob over-confidence
    q: float = 1.0  # signal strength, set by calibrate()


JUDGES = (
    SimJudge("sim-j1", position=0.5, length=0.5, kappa=2.5),
    SimJudge("sim-j2", position=0.3, length=0.3, kappa=1.5),
)
SIGMA, TIE_BAND, FAIL_RATE = 1.0, 0.03, 0.01
RHO = 0.6  # correlation of the two judges' noise (--rho)


@dataclass
class World:
    """The pairs (store order), their truth and the judges' latent scores."""

    pair_ids: list[str]
    truth: np.ndarray  # 1.0: stored A preferred by the human
    strength: np.ndarray  # [0, 1]
    loglen: np.ndarray
    shared: np.ndarray  # e_n
    own: dict[str, np.ndarray]  # e_nj
    fails: np.ndarray  # bool
    rho: float = RHO

    def z(self, judge: SimJudge, order: str) -> np.ndarray:
        t = 2.0 * self.truth - 1.0
        noise = SIGMA * (self.rho * self.shared + math.sqrt(1 - self.rho**2) * self.own[judge.name])
        sign = 1.0 if order == "ab" else -1.0
        return (
            judge.q * t * (0.25 + self.strength)
            + judge.length * self.loglen
            + judge.position * sign
            + noise
        )


def calibrate(world: World, judge: SimJudge, accuracy: float) -> SimJudge:
    """The judge with q set so its single-order ("ab") verdicts match the truth on `accuracy`."""
    lo, hi = 0.0, 20.0
    for _ in range(40):
        mid = (lo + hi) / 2
        z = world.z(SimJudge(judge.name, judge.position, judge.length, judge.kappa, mid), "ab")
        if np.mean((z > 0) == (world.truth > 0.5)) < accuracy:
            lo = mid
        else:
            hi = mid
    return SimJudge(judge.name, judge.position, judge.length, judge.kappa, (lo + hi) / 2)


def build_template(
    path: Path, limit: int | None
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Store with the HH pairs and no labels, embeddings cached: (pair ids, truth, log
    length ratios, A features, B features), in pair-id order."""
    from data.ids import canonical_order, pair_id, prompt_id, response_id
    from data.importer import ImportOptions, parse_sources
    from data.ingest import ingest
    from data.shapes import PairRecord, ResponsesRecord
    from data.store import PreferenceStore
    from labeling.encoder import EncoderConfig
    from labeling.features import DEFAULT_FEATURES, pair_features

    records, _, _ = parse_sources([str(HH)], ImportOptions(skip_invalid=True))
    flat: list[PairRecord] = []
    for r in records:
        flat.extend(r.pairs if isinstance(r, ResponsesRecord) else [r])
    truth: dict[str, float] = {}
    keep: list[PairRecord] = []
    for rec in flat:
        if rec.verdict not in ("a", "b"):
            continue
        r1, r2 = response_id(rec.response_1), response_id(rec.response_2)
        key = pair_id(prompt_id(rec.messages), r1, r2)
        if key in truth:
            continue
        _, _, flipped = canonical_order(r1, r2)
        truth[key] = 1.0 if (rec.verdict == "a") != flipped else 0.0
        keep.append(PairRecord(rec.messages, rec.response_1, rec.response_2, None))
        if limit and len(keep) >= limit:
            break
    with PreferenceStore(path) as store:
        ingest(store, keep, origin="bench-hybrid")
        views = store.pairs("ORDER BY p.pair_id")
        pair_features(store, views, DEFAULT_FEATURES, config=EncoderConfig(progress=True))
        ids = [v.pair_id for v in views]
        loglen = np.array(
            [math.log((len(v.response_a) + 1) / (len(v.response_b) + 1)) for v in views]
        )
        xa, xb, _ = pair_features(
            store, views, DEFAULT_FEATURES, config=EncoderConfig(progress=False)
        )
    return ids, np.array([truth[i] for i in ids]), loglen, xa, xb


def preference_strength(xa: np.ndarray, xb: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Rank in [0, 1] of |P(A) - 0.5| under an ensemble fitted on every label."""
    from labeling.ensemble import EnsembleConfig, fit_ensemble, standardisation
    from labeling.features import DEFAULT_EMBEDDING_PENALTY, DEFAULT_FEATURES, penalty_scale

    mu, sigma = standardisation(np.concatenate([xa, xb]))
    sigma = sigma * penalty_scale(DEFAULT_FEATURES, xa.shape[1], DEFAULT_EMBEDDING_PENALTY)
    ens, _ = fit_ensemble(xa, xb, truth, EnsembleConfig(members=4), mu=mu, sigma=sigma)
    margin = np.abs(ens.member_p_a(xa, xb).mean(axis=0) - 0.5)
    return np.argsort(np.argsort(margin)) / max(len(margin) - 1, 1)


def make_responder(store_path: Path, world: World, judges: dict[str, SimJudge], logprobs: bool):
    """A FakeOpenAIServer responder: finds the pair and order from the request's text."""
    from data.store import PreferenceStore
    from judges.prompts import load_template
    from tests.fakes.openai_server import Reply

    template = load_template(None)
    where: dict[str, tuple[int, str]] = {}
    with PreferenceStore(store_path, read_only=True) as store:
        index = {pid: i for i, pid in enumerate(world.pair_ids)}
        for v in store.pairs("ORDER BY p.pair_id"):
            for order, (first, second) in (
                ("ab", (v.response_a, v.response_b)),
                ("ba", (v.response_b, v.response_a)),
            ):
                text = template.messages(v.prompt_text, first, second)[-1]["content"]
                where[hashlib.sha1(text.encode()).hexdigest()] = (index[v.pair_id], order)
    z = {(j, o): world.z(judges[j], o) for j in judges for o in ("ab", "ba")}

    def respond(body: dict[str, Any]) -> Reply:
        users = [m["content"] for m in body["messages"] if m.get("role") == "user"]
        found = where.get(hashlib.sha1(users[0].encode()).hexdigest())
        if found is None:
            return Reply(text="I cannot tell.", logprobs=False)
        n, order = found
        if world.fails[n]:
            return Reply(text="I cannot tell.", logprobs=False)
        value = float(z[(body["model"], order)][n])
        judge = judges[body["model"]]
        if abs(value) < TIE_BAND:
            return Reply(text="tie", logprobs=False)
        shown_first = 1.0 / (1.0 + math.exp(-judge.kappa * value))  # P(the first shown is better)
        return Reply(text="A" if value > 0 else "B", p_a=shown_first, logprobs=logprobs)

    return respond


def _copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    wal = src.with_name(src.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, dst.with_name(dst.name + ".wal"))
    return dst


def label_human_queue(store: Any, truth: dict[str, float]) -> int:
    """Simulated annotators: label every open human-queue pair with its true verdict."""
    from data.click_batch import submit_human_label

    ids = [
        r[0]
        for r in store.query("SELECT pair_id FROM human_queue WHERE human_labels < needed_labels")
    ]
    for pid in ids:
        submit_human_label(
            store, pid, "annotator", verdict_shown="a" if truth[pid] > 0.5 else "b", swapped=False
        )
    return len(ids)


def right_share(store: Any, truth: dict[str, float]) -> float:
    from data.export import aggregated_pairs

    decided = {p.pair_id: p.verdict for p in aggregated_pairs(store)}
    return float(
        np.mean([decided.get(pid) == ("a" if y > 0.5 else "b") for pid, y in truth.items()])
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    from data.store import PreferenceStore
    from judges.batch import run_batch
    from judges.config import JudgeConfig
    from labeling.router import RouterConfig, route_store
    from labeling.scoring import ScoreConfig, score_store
    from tests.fakes.openai_server import FakeOpenAIServer

    work = Path(tempfile.mkdtemp(prefix="prefloop-hybrid-"))
    started = time.perf_counter()
    # the unlabelled store with its embeddings is kept between runs (import and encoding
    # are the slow part and do not depend on the seed); every run works on copies
    template = Path(args.cache_dir) / f"hybrid-template-{args.pairs or 'all'}.duckdb"
    template.parent.mkdir(parents=True, exist_ok=True)
    ids, truth_arr, loglen, xa, xb = build_template(template, args.pairs)
    truth = dict(zip(ids, truth_arr, strict=True))
    strength = preference_strength(xa, xb, truth_arr)
    n = len(ids)
    budgets = [float(b) for b in args.budgets.split(",")]
    panels = {"single": ("sim-j1",), "panel": ("sim-j1", "sim-j2")}
    if args.no_logprobs_too:
        panels["single-no-logprobs"] = ("sim-j1",)
    results: dict[str, Any] = {k: {f: {str(b): [] for b in budgets} for f in FLOWS} for k in panels}
    agreement: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        world = World(
            ids,
            truth_arr,
            strength,
            loglen,
            rng.normal(size=n),
            {j.name: rng.normal(size=n) for j in JUDGES},
            rng.random(n) < FAIL_RATE,
            args.rho,
        )
        judges = {j.name: calibrate(world, j, args.judge_accuracy) for j in JUDGES}
        for j in judges.values():
            for order in ("ab", "ba"):
                z = world.z(j, order)
                agreement.setdefault(f"{j.name}:{order}", []).append(
                    float(np.mean((z > 0) == (truth_arr > 0.5)))
                )
        for kind, models in panels.items():
            logprobs = kind != "single-no-logprobs"
            responder = make_responder(template, world, judges, logprobs)
            judged = _copy(template, work / f"judged-{seed}-{kind}.duckdb")
            with (
                FakeOpenAIServer(responder, log_bodies=False) as server,
                PreferenceStore(judged) as store,
            ):
                config = JudgeConfig(
                    models=models,
                    base_url=server.url,
                    concurrency=16,
                    all_unlabelled=True,
                    logprobs=logprobs,
                    progress=False,
                )
                report = run_batch(store, config)
                base = right_share(store, truth)
                score_store(store, ScoreConfig(judge_targets=args.judge_targets))
            log.info("seed %d %s: judged %d pairs, right %.3f", seed, kind, report.judged, base)
            for b in budgets:
                budget = int(round(b * n))
                results[kind]["judge-only"][str(b)].append(base)
                results[kind]["oracle"][str(b)].append(min(1.0, base + budget / n))
                for flow, cfg in (
                    ("random", RouterConfig(budget, strategy="random", promote=False, seed=seed)),
                    (
                        "uncertainty",
                        RouterConfig(budget, strategy="variance", promote=False, seed=seed),
                    ),
                    ("default", RouterConfig(budget, seed=seed)),
                ):
                    path = _copy(judged, work / f"run-{seed}-{kind}-{flow}-{b}.duckdb")
                    with PreferenceStore(path) as store:
                        route_store(store, cfg)
                        label_human_queue(store, truth)
                        results[kind][flow][str(b)].append(right_share(store, truth))
                    path.unlink()
                path = _copy(judged, work / f"run-{seed}-{kind}-two-{b}.duckdb")
                with PreferenceStore(path) as store:
                    first = budget // 2
                    route_store(store, RouterConfig(first, seed=seed))
                    label_human_queue(store, truth)
                    score_store(store, ScoreConfig(judge_targets=args.judge_targets))
                    second = route_store(store, RouterConfig(budget - first, seed=seed))
                    label_human_queue(store, truth)
                    results[kind]["default-2-rounds"][str(b)].append(right_share(store, truth))
                    results.setdefault("risk_models", []).append(
                        {"seed": seed, "judges": kind, "budget": b, **(second.risk or {})}
                    )
                path.unlink()
                log.info(
                    "seed %d %s %.0f%%: %s",
                    seed,
                    kind,
                    100 * b,
                    {f: round(results[kind][f][str(b)][-1], 3) for f in FLOWS},
                )
            judged.unlink()
    shutil.rmtree(work, ignore_errors=True)
    return summarise(results, agreement, n, args, time.perf_counter() - started)


def run_real_judge(args: argparse.Namespace) -> dict[str, Any]:
    """A real local model as the judge (`--backend hf --swap`) on the first pairs: its
    agreement with the human labels, position bias, how many pairs debiasing labelled,
    and the default flow against random routing at 30% on those pairs."""
    from data.store import PreferenceStore
    from judges.batch import run_batch
    from judges.config import JudgeConfig
    from labeling.router import RouterConfig, route_store
    from labeling.signals import position_rates

    work = Path(tempfile.mkdtemp(prefix="prefloop-hybrid-real-"))
    template = Path(args.cache_dir) / f"hybrid-template-{args.real_judge_pairs}.duckdb"
    template.parent.mkdir(parents=True, exist_ok=True)
    ids, truth_arr, *_ = build_template(template, args.real_judge_pairs)
    truth = dict(zip(ids, truth_arr, strict=True))
    judged = _copy(template, work / "judged.duckdb")
    started = time.perf_counter()
    with PreferenceStore(judged) as store:
        report = run_batch(
            store,
            JudgeConfig(
                models=(args.real_judge,),
                backend="hf",
                swap=True,
                all_unlabelled=True,
                progress=True,
            ),
        )
        seconds = time.perf_counter() - started
        first_order = dict(
            store.query(
                "SELECT pair_id, verdict FROM judgements WHERE order_shown = 'ab' AND status = 'ok'"
            )
        )
        judge_only = right_share(store, truth)
        rate = position_rates(store).get(args.real_judge)
    agree = np.mean([first_order.get(p) == ("a" if y > 0.5 else "b") for p, y in truth.items()])
    budget = int(round(0.3 * len(ids)))
    flows: dict[str, list[float]] = {"random": [], "default": []}
    for seed in range(args.seeds):
        for flow, cfg in (
            ("random", RouterConfig(budget, strategy="random", promote=False, seed=seed)),
            ("default", RouterConfig(budget, seed=seed)),
        ):
            path = _copy(judged, work / f"{flow}-{seed}.duckdb")
            with PreferenceStore(path) as store:
                route_store(store, cfg)
                label_human_queue(store, truth)
                flows[flow].append(right_share(store, truth))
            path.unlink()
    shutil.rmtree(work, ignore_errors=True)
    return {
        "model": args.real_judge,
        "pairs": len(ids),
        "seconds": round(seconds, 1),
        "single_order_agreement_with_humans": round(float(agree), 4),
        "first_position_rate": None if rate is None else round(rate, 4),
        "labels": report.labels,
        "debiased": report.debiased,
        "inconsistent": report.inconsistent,
        "judge_only_right": round(judge_only, 4),
        "right_at_30pct": {k: ci95(v) for k, v in flows.items()},
    }


def ci95(values: list[float]) -> dict[str, float]:
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    half = (
        float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
        if len(v) > 1
        else 0.0
    )
    return {"mean": round(float(v.mean()), 4), "ci95": round(half, 4), "n": len(v)}


def summarise(
    results: dict[str, Any],
    agreement: dict[str, list[float]],
    n: int,
    args: argparse.Namespace,
    seconds: float,
) -> dict[str, Any]:
    risk_models = results.pop("risk_models", [])
    table = {
        kind: {
            flow: {b: ci95(v) for b, v in by_budget.items()} for flow, by_budget in flows.items()
        }
        for kind, flows in results.items()
    }
    targets = {}
    at = "0.3"
    for kind in table:
        if at not in table[kind]["default"]:
            continue
        gain = [
            d - r
            for d, r in zip(results[kind]["default"][at], results[kind]["random"][at], strict=True)
        ]
        targets[kind] = {
            "default_right": table[kind]["default"][at]["mean"],
            "random_right": table[kind]["random"][at]["mean"],
            "default_minus_random": ci95(gain),
        }
    if "panel" in targets:
        t = targets["panel"]
        t["target"] = ">= 0.92 right and >= 0.06 above random"
        t["met"] = t["default_right"] >= 0.92 and t["default_minus_random"]["mean"] >= 0.06
    for kind in ("single", "single-no-logprobs"):
        if kind in targets:
            targets[kind]["target"] = ">= 0.03 above random"
            targets[kind]["met"] = targets[kind]["default_minus_random"]["mean"] >= 0.03
    return {
        "benchmark": "hybrid",
        "pairs": n,
        "seeds": args.seeds,
        "judge_accuracy_target": args.judge_accuracy,
        "rho": args.rho,
        "judge_targets": args.judge_targets,
        "judge_agreement_with_humans": {k: ci95(v) for k, v in agreement.items()},
        "right_labels": table,
        "targets_at_30pct": targets,
        "risk_models_second_round": risk_models[-3:],
        "seconds": round(seconds, 1),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(result["right_labels"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for flow, by_budget in result["right_labels"][kind].items():
            xs = sorted(by_budget, key=float)
            ys = [by_budget[x]["mean"] for x in xs]
            err = [by_budget[x]["ci95"] for x in xs]
            ax.errorbar(
                [100 * float(x) for x in xs], ys, yerr=err, marker="o", capsize=3, label=flow
            )
        ax.set_title(f"{kind} judge ({result['pairs']} HH pairs, {result['seeds']} seeds)")
        ax.set_xlabel("human budget (% of pairs)")
        ax.set_ylabel("share of right exported labels")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--budgets", default="0.1,0.2,0.3,0.5", help="Human budgets, shares of pairs."
    )
    parser.add_argument(
        "--pairs", type=int, default=None, help="Use the first N pairs (default all)."
    )
    parser.add_argument("--judge-accuracy", type=float, default=0.75)
    parser.add_argument(
        "--no-logprobs-too", action="store_true", help="Also a single judge without logprobs."
    )
    parser.add_argument("--rho", type=float, default=RHO, help="Correlation of the judges' noise.")
    parser.add_argument(
        "--judge-targets", default="soft", help="How `score` uses judge labels: soft, hard, none."
    )
    parser.add_argument(
        "--real-judge",
        default=None,
        help="Instead: judge with this local model (--backend hf --swap), e.g. smollm2-135m-instruct.",
    )
    parser.add_argument("--real-judge-pairs", type=int, default=120)
    parser.add_argument("--quick", action="store_true", help="2 seeds, 30%% only, 600 pairs.")
    parser.add_argument("--out", default=str(REPO / "bench" / "out"))
    parser.add_argument(
        "--cache-dir",
        default=str(REPO / "bench" / "out"),
        help="Where the unlabelled store with its embeddings is kept between runs.",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budgets, args.pairs = 2, "0.3", args.pairs or 600
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    if args.real_judge:
        result = run_real_judge(args)
        print(json.dumps(result))
        return
    result = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hybrid.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "hybrid.png")
    result["outputs"] = [str(out / "hybrid.json"), str(out / "hybrid.png")]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
