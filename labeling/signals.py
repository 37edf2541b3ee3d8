"""What the store knows about how likely a pair's automatic label is to be wrong.

`read_signals` gathers, for each pair, the evidence the router weighs (`labeling.label_risk`):

* ``reason``: why the pair has no usable automatic label, or None when it has one:
  ``panel_split`` (the judges disagreed; also set when a split was resolved by the
  panel's mean P(A)), ``judge_inconsistent`` (the two orders disagreed and could not be
  debiased), ``judge_failed`` (every call failed), ``judge_tie`` (tie or both_bad),
  ``unjudged`` (no judgement yet: the judge may still label it);
* ``auto_verdict``: the verdict the export would take without human labels
  (import > judge > model, majority within the source, see `data.export`);
* ``margin``: 2 * P(verdict) - 1 from the judge's logprobs (NaN without logprobs);
* ``panel_disagreement``: 1 - share of the panel that voted for the label;
* ``position``: the judge's position prior: +logit(first-position rate) when it picked
  the response shown first in a single-order judgement, -logit(rate) when it picked the
  second, 0 with both orders. The rate is measured per model over all its judgements, so
  a judge that picks "A" 80% of the time makes its "A" verdicts suspect;
* ``length``: log((len(chosen) + 1) / (len(rejected) + 1)) of the automatic verdict
  (positive when the judge picked the longer response; judges favour longer answers);
* ``ens_against``: the reward ensemble's probability of the side the automatic label
  did not pick, computed now from the stored scores (NaN without a verdict or scores);
* ``ens_std``: the spread of the ensemble members' P(A) (NaN without scores).

Ensemble signals come from the latest version for pairs still to route. For pairs that
humans labelled (`as_of_human_label=True`, the training rows of the judge-error model)
they come from the latest version fitted *before* the pair's first human label, so an
ensemble that has since learned the human's answer cannot leak it into the fit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from data.export import AggregationPolicy, aggregate_verdicts

if TYPE_CHECKING:
    from data.store import PreferenceStore

NO_LABEL_REASONS = ("panel_split", "judge_inconsistent", "judge_failed", "judge_tie")
FEATURES = ("margin", "panel_disagreement", "position", "length", "ens_against", "ens_std")
AUTO_SOURCES = ("import", "judge", "model")


@dataclass
class PairSignals:
    """Signals of `pair_ids`, one entry per pair in each field (see the module docstring)."""

    pair_ids: list[str]
    reason: list[str | None]
    auto_verdict: list[str | None]
    margin: np.ndarray
    panel_disagreement: np.ndarray
    position: np.ndarray
    length: np.ndarray
    ens_against: np.ndarray
    ens_std: np.ndarray

    def __len__(self) -> int:
        return len(self.pair_ids)

    def matrix(self) -> np.ndarray:
        """[N, len(FEATURES)] with NaN where a signal is missing."""
        return np.stack([getattr(self, name) for name in FEATURES], axis=1).astype(np.float64)

    def subset(self, index: list[int] | np.ndarray) -> PairSignals:
        index = list(index)
        return PairSignals(
            [self.pair_ids[i] for i in index],
            [self.reason[i] for i in index],
            [self.auto_verdict[i] for i in index],
            *(getattr(self, name)[index] for name in FEATURES),
        )


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1.0 - p))


def latest_judge_labels(
    store: PreferenceStore, pair_ids: list[str] | None = None
) -> dict[str, tuple[str, str, float | None, dict]]:
    """pair_id -> (who, verdict, confidence, meta) of its newest active judge label."""
    where = "" if pair_ids is None else "AND pair_id IN (SELECT unnest(?::VARCHAR[]))"
    rows = store.query(
        f"SELECT pair_id, who, verdict, confidence, meta FROM active_labels WHERE source = 'judge' "
        f"{where} "
        "QUALIFY row_number() OVER (PARTITION BY pair_id ORDER BY created_at DESC, label_id DESC) = 1",
        [] if pair_ids is None else [list(pair_ids)],
    )
    return {
        pid: (who, verdict, confidence, json.loads(meta) if meta else {})
        for pid, who, verdict, confidence, meta in rows
    }


def position_rates(store: PreferenceStore) -> dict[str, float]:
    """model -> share of its a/b judgements that picked the response shown first (smoothed)."""
    rows = store.query(
        """
        SELECT model,
               sum(CASE WHEN (order_shown = 'ab' AND verdict = 'a')
                          OR (order_shown = 'ba' AND verdict = 'b') THEN 1 ELSE 0 END),
               count(*)
        FROM judgements WHERE status = 'ok' AND verdict IN ('a', 'b') GROUP BY model
        """
    )
    return {model: (first + 1.0) / (n + 2.0) for model, first, n in rows}


def read_signals(
    store: PreferenceStore, pair_ids: list[str], *, as_of_human_label: bool = False
) -> PairSignals:
    """The signals of `pair_ids` (in that order)."""
    n = len(pair_ids)
    nan = np.full(n, np.nan)
    out = PairSignals(
        list(pair_ids),
        [None] * n,
        [None] * n,
        nan.copy(),
        np.zeros(n),
        np.zeros(n),
        np.zeros(n),
        nan.copy(),
        nan.copy(),
    )
    if not n:
        return out
    index = {pid: i for i, pid in enumerate(pair_ids)}
    ids = [list(pair_ids)]
    wanted = "pair_id IN (SELECT unnest(?::VARCHAR[]))"

    labels = store.query_dicts(
        f"SELECT pair_id, source, verdict, confidence FROM active_labels WHERE {wanted} "
        "AND source IN ('import', 'judge', 'model')",
        ids,
    )
    decided = aggregate_verdicts(labels, AggregationPolicy(AUTO_SOURCES, include_ties=True))
    judge_meta = latest_judge_labels(store, pair_ids)
    judged = dict(
        store.query(
            f"SELECT pair_id, bool_or(status = 'ok') FROM judgements WHERE {wanted} GROUP BY pair_id",
            ids,
        )
    )
    flags: dict[str, set[str]] = {}
    for pid, flag in store.query(
        f"SELECT pair_id, flag FROM pair_flags WHERE {wanted} "
        "AND flag IN ('judge_panel_split', 'judge_inconsistent')",
        ids,
    ):
        flags.setdefault(pid, set()).add(flag)
    lengths = {
        pid: (la, lb)
        for pid, la, lb in store.query(
            f"""SELECT p.pair_id, length(ra.text), length(rb.text) FROM pairs p
            JOIN responses ra ON ra.response_id = p.response_a_id
            JOIN responses rb ON rb.response_id = p.response_b_id WHERE p.{wanted}""",
            ids,
        )
    }
    rates = position_rates(store)

    for pid, i in index.items():
        verdict = decided.get(pid, (None,))[0]
        out.auto_verdict[i] = verdict
        pair_flags = flags.get(pid, set())
        if "judge_panel_split" in pair_flags:
            out.reason[i] = "panel_split"
        elif verdict in ("tie", "both_bad"):
            out.reason[i] = "judge_tie"
        elif verdict is None:
            if "judge_inconsistent" in pair_flags:
                out.reason[i] = "judge_inconsistent"
            elif pid in judged:
                out.reason[i] = "judge_inconsistent" if judged[pid] else "judge_failed"
            else:
                out.reason[i] = "unjudged"
        if verdict not in ("a", "b"):
            continue
        la, lb = lengths[pid]
        chosen, rejected = (la, lb) if verdict == "a" else (lb, la)
        out.length[i] = math.log((chosen + 1.0) / (rejected + 1.0))
        _, meta_verdict, confidence, meta = judge_meta.get(pid, (None, None, None, {}))
        if meta_verdict != verdict:
            continue  # the automatic label is not this judge's (an import, say)
        if confidence is not None:
            out.margin[i] = 2.0 * confidence - 1.0
        agreement = meta.get("agreement")
        if agreement is not None:
            out.panel_disagreement[i] = 1.0 - float(agreement)
        votes = meta.get("votes") or {}
        orders = meta.get("orders") or []
        if len(orders) == 1 and votes:
            terms = []
            for model, vote in votes.items():
                if vote not in ("a", "b") or model in (meta.get("debiased") or {}):
                    continue
                first = (orders[0] == "ab") == (vote == "a")
                rate = min(max(rates.get(model, 0.5), 0.02), 0.98)
                terms.append(logit(rate) if first else -logit(rate))
            if terms:
                out.position[i] = float(np.mean(terms))

    _ensemble_signals(store, out, index, ids, as_of_human_label)
    return out


def _ensemble_signals(
    store: PreferenceStore,
    out: PairSignals,
    index: dict[str, int],
    ids: list[list[str]],
    as_of_human_label: bool,
) -> None:
    if as_of_human_label:
        sql = """
        WITH first_human AS (
            SELECT pair_id, min(created_at) AS labelled_at FROM active_labels
            WHERE source = 'human'
              AND pair_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY pair_id
       ), before AS (
            SELECT f.pair_id, max(e.version) AS version FROM first_human f
            JOIN ensembles e ON e.created_at < f.labelled_at GROUP BY f.pair_id
       )
        SELECT s.pair_id, s.p_mean, s.p_std FROM before b
        JOIN scores s ON s.pair_id = b.pair_id AND s.version = b.version
        """
    else:
        sql = """
        SELECT pair_id, p_mean, p_std FROM scores
        WHERE version = (SELECT max(version) FROM ensembles)
          AND pair_id IN (SELECT unnest(?::VARCHAR[]))
        """
    for pid, p_mean, p_std in store.query(sql, ids):
        i = index[pid]
        out.ens_std[i] = p_std
        verdict = out.auto_verdict[i]
        if verdict in ("a", "b"):
            out.ens_against[i] = 1.0 - p_mean if verdict == "a" else p_mean


_HUMAN_LABELS_SQL = """
SELECT l.pair_id, l.source, l.verdict, l.confidence, p.route_reason FROM active_labels l
JOIN pairs p USING (pair_id)
WHERE l.source = 'human'
"""


def human_checked(store: PreferenceStore) -> tuple[PairSignals, np.ndarray, np.ndarray]:
    """Pairs with both an automatic and a human a/b verdict: their signals (as of their
    first human label), whether the automatic label was wrong, and which were calibration."""
    rows = store.query_dicts(_HUMAN_LABELS_SQL)
    human = aggregate_verdicts(rows, AggregationPolicy(("human",)))
    calibration = {r["pair_id"] for r in rows if r["route_reason"] == "calibration"}
    ids = sorted(human)
    signals = read_signals(store, ids, as_of_human_label=True)
    keep = [i for i, v in enumerate(signals.auto_verdict) if v in ("a", "b")]
    signals = signals.subset(keep)
    wrong = np.array(
        [human[p][0] != v for p, v in zip(signals.pair_ids, signals.auto_verdict, strict=True)],
        dtype=bool,
    )
    on_slice = np.array([p in calibration for p in signals.pair_ids], dtype=bool)
    return signals, wrong, on_slice
