"""`prefloop score`: fit a new ensemble version on the current labels and score every pair.

Steps: aggregate the active labels into one training verdict per pair (the store-wide
policy of `data.export`: human > import > judge > model, majority, ties left out),
embed every pair's texts through the cache, fit the K heads, write the version to
`ensembles`, each pair's member probabilities to `scores`, and the artifact to
``<store stem>.artifacts/ensemble-v<N>/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from data.errors import ConfigError
from labeling.encoder import EncoderConfig, cache_key
from labeling.ensemble import EnsembleConfig, RewardEnsemble, fit_ensemble, standardisation
from labeling.features import (
    DEFAULT_EMBEDDING_PENALTY,
    DEFAULT_FEATURES,
    check_features,
    pair_features,
    penalty_scale,
)

if TYPE_CHECKING:
    from data.store import PreferenceStore


@dataclass(frozen=True)
class ScoreConfig:
    """Everything `prefloop score` needs."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    features: tuple[str, ...] = DEFAULT_FEATURES  # feature blocks, see labeling.features
    min_labels: int = 8  # refuse to fit on fewer labelled pairs than this
    judge_targets: str = (
        "soft"  # judge labels as soft targets at the judge's accuracy, hard, or none
    )
    embedding_penalty: float = (
        DEFAULT_EMBEDDING_PENALTY  # L2 on embedding weights vs length weights
    )
    artifact_root: str | None = None  # default: <store stem>.artifacts next to the store


@dataclass
class ScoreReport:
    version: int
    labelled_pairs: int
    scored_pairs: int
    texts_encoded: int
    artifact: str
    metrics: dict[str, float]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


JUDGE_TARGETS = ("soft", "hard", "none")


def training_targets(
    store: PreferenceStore, judge_targets: str = "soft", prior_judge_accuracy: float = 0.75
) -> dict[str, float]:
    """pair_id -> P(A preferred) to fit on: human and import labels first.

    Pairs whose best label is a judge's (or a model's) enter as soft targets at the
    judge's estimated accuracy (``soft``: 'a' -> acc, 'b' -> 1 - acc, where acc is the
    judges' agreement with humans on pairs both labelled, shrunk towards
    `prior_judge_accuracy` with 20 pairs' weight), as hard 1/0 targets (``hard``), or not
    at all (``none``). An ensemble that learns what humans think can then disagree with
    the judge where the judge is wrong.
    """
    from data.export import AggregationPolicy, active_labels, aggregate_verdicts

    if judge_targets not in JUDGE_TARGETS:
        raise ConfigError(
            f"--judge-targets {judge_targets!r} is not one of {', '.join(JUDGE_TARGETS)}"
        )
    labels = active_labels(store)
    decided = aggregate_verdicts(labels, AggregationPolicy(include_ties=False))
    trusted = {"human", "import"}
    accuracy = 1.0
    if judge_targets == "soft":
        human = aggregate_verdicts(labels, AggregationPolicy(("human",)))
        auto = aggregate_verdicts(labels, AggregationPolicy(("judge", "model")))
        both = [
            (human[p][0] == auto[p][0])
            for p in human.keys() & auto.keys()
            if human[p][0] in ("a", "b") and auto[p][0] in ("a", "b")
        ]
        accuracy = (prior_judge_accuracy * 20 + sum(both)) / (20 + len(both))
    out = {}
    for pid, (verdict, source, _) in decided.items():
        if verdict not in ("a", "b"):
            continue
        if source in trusted or judge_targets == "hard":
            out[pid] = 1.0 if verdict == "a" else 0.0
        elif judge_targets == "soft":
            out[pid] = accuracy if verdict == "a" else 1.0 - accuracy
    return out


def artifact_root(store: PreferenceStore, config: ScoreConfig) -> Path:
    if config.artifact_root:
        return Path(config.artifact_root)
    path = Path(store.path)
    return path.with_name(path.stem + ".artifacts")


def score_store(
    store: PreferenceStore, config: ScoreConfig = ScoreConfig(), *, encoder: Any | None = None
) -> ScoreReport:
    """Fit ensemble version N+1 on the current labels and score every pair with it."""
    import pyarrow as pa

    started = time.perf_counter()
    features = check_features(config.features)
    targets = training_targets(store, config.judge_targets)
    if len(targets) < config.min_labels:
        raise ConfigError(
            f"{store.path} has {len(targets)} pair(s) with an a/b verdict; the ensemble needs at "
            f"least {config.min_labels}: label more pairs (or import labelled data), or lower --min-labels"
        )
    previous = calibration_check(store, targets)
    views = store.pairs("ORDER BY p.pair_id")
    xa, xb, encoded = pair_features(store, views, features, config=config.encoder, encoder=encoder)
    index = {v.pair_id: i for i, v in enumerate(views)}
    labelled = [index[pid] for pid in sorted(targets) if pid in index]
    y = np.array([targets[views[i].pair_id] for i in labelled], dtype=np.float32)
    mu, sigma = standardisation(np.concatenate([xa, xb]))
    sigma = sigma * penalty_scale(features, xa.shape[1], config.embedding_penalty)
    ensemble, metrics = fit_ensemble(
        xa[labelled], xb[labelled], y, config.ensemble, mu=mu, sigma=sigma
    )
    member_p = ensemble.member_p_a(xa, xb)  # [K, N]

    version = int(store.scalar("SELECT coalesce(max(version), 0) FROM ensembles")) + 1
    folder = artifact_root(store, config) / f"ensemble-v{version}"
    ensemble.save(
        folder,
        encoder=config.encoder.name,
        features=list(features),
        max_length=config.encoder.max_length,
        normalize=config.encoder.normalize,
        version=version,
    )
    metrics.update(previous)
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    run_config = {
        "features": list(features),
        "encoder": asdict(config.encoder),
        "encoder_cache_key": cache_key(config.encoder),
        "ensemble": asdict(config.ensemble),
        "artifact": str(folder),
    }
    table = pa.table(
        {
            "pair_id": [v.pair_id for v in views],
            "version": pa.array([version] * len(views), type=pa.int32()),
            "member_p_a": pa.array(member_p.T.tolist(), type=pa.list_(pa.float32())),
            "p_mean": member_p.mean(axis=0).astype(np.float64),
            "p_std": member_p.std(axis=0).astype(np.float64),
        }
    )
    with store.transaction() as cur:
        cur.execute(
            "INSERT INTO ensembles (version, encoder, config, metrics) VALUES (?, ?, ?, ?)",
            [version, config.encoder.name, json.dumps(run_config), json.dumps(metrics)],
        ).fetchall()
        cur.register("_scores", table)
        cur.execute(
            "INSERT INTO scores SELECT pair_id, version, member_p_a, p_mean, p_std FROM _scores"
        ).fetchall()
        cur.unregister("_scores")
    return ScoreReport(
        version,
        len(labelled),
        len(views),
        encoded,
        str(folder),
        metrics,
        round(time.perf_counter() - started, 3),
    )


def calibration_check(store: PreferenceStore, targets: dict[str, float]) -> dict[str, float]:
    """Accuracy of the latest ensemble on the labelled calibration slice it routed.

    Calibration pairs were picked at random, and the ensemble scored them before anyone
    labelled them, so this is an unbiased estimate of its accuracy (empty before any).
    """
    version = latest_version(store)
    if version is None:
        return {}
    rows = store.query(
        "SELECT s.pair_id, s.p_mean FROM scores s JOIN pairs p USING (pair_id) "
        "WHERE s.version = ? AND p.route_reason = 'calibration'",
        [version],
    )
    hits = [(p_mean > 0.5) == (targets[pid] > 0.5) for pid, p_mean in rows if pid in targets]
    if not hits:
        return {}
    return {
        "calibration_version": float(version),
        "calibration_pairs": float(len(hits)),
        "calibration_accuracy": float(np.mean(hits)),
    }


def latest_version(store: PreferenceStore) -> int | None:
    value = store.scalar("SELECT max(version) FROM ensembles")
    return None if value is None else int(value)


def ensemble_config(store: PreferenceStore, version: int) -> dict[str, Any]:
    raw = store.scalar("SELECT config FROM ensembles WHERE version = ?", [version])
    if raw is None:
        raise ConfigError(f"no ensemble version {version} in {store.path}; run `prefloop score`")
    return json.loads(raw)


def latest_artifact(store: PreferenceStore) -> str:
    """The folder of the latest ensemble version (what `--reward` and `eval --model` take)."""
    version = latest_version(store)
    if version is None:
        raise ConfigError(
            f"{store.path} has no fitted ensemble; run `prefloop score --db {store.path}`"
        )
    return str(ensemble_config(store, version)["artifact"])


def load_ensemble(store: PreferenceStore, version: int | None = None) -> RewardEnsemble:
    """The saved artifact of an ensemble version (default: the latest)."""
    version = version or latest_version(store)
    if version is None:
        raise ConfigError(
            f"{store.path} has no fitted ensemble; run `prefloop score --db {store.path}`"
        )
    return RewardEnsemble.load(ensemble_config(store, version)["artifact"])


def stored_scores(
    store: PreferenceStore, version: int, pair_ids: list[str] | None = None
) -> dict[str, np.ndarray]:
    """pair_id -> member P(A > B) for one ensemble version."""
    rows = store.query("SELECT pair_id, member_p_a FROM scores WHERE version = ?", [version])
    wanted = None if pair_ids is None else set(pair_ids)
    return {
        pid: np.asarray(p, dtype=np.float32) for pid, p in rows if wanted is None or pid in wanted
    }
