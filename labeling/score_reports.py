"""Reads of `scores` and `ensembles` for reports (the Dashboard's calibration and
uncertainty plots); `labeling/scoring.py` writes those tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from data.store import PreferenceStore

# Calibration pairs: the ones the router sent to humans at random (`route_reason` says so).
_CALIBRATION = "lower(coalesce(p.route_reason, '')) LIKE '%calib%'"


def calibration_accuracy(store: PreferenceStore) -> list[dict[str, Any]]:
    """Per ensemble version: accuracy of P(A>B) > 0.5 against human a/b labels on the
    calibration pairs (`n`), and the human labels there were when it was fitted."""
    return store.query_dicts(
        f"""
        WITH human AS (
            SELECT l.pair_id, l.verdict FROM active_labels l JOIN pairs p USING (pair_id)
            WHERE l.source = 'human' AND l.verdict IN ('a', 'b') AND {_CALIBRATION}
        )
        SELECT s.version, count(*) AS n,
               avg(CASE WHEN (s.p_mean > 0.5) = (h.verdict = 'a') THEN 1.0 ELSE 0.0 END) AS accuracy,
               (SELECT count(*) FROM active_labels x WHERE x.source = 'human'
                  AND x.created_at <= any_value(e.created_at)) AS human_labels
        FROM scores s JOIN human h USING (pair_id) JOIN ensembles e ON e.version = s.version
        GROUP BY s.version ORDER BY s.version
        """
    )


@dataclass(frozen=True)
class CalibrationCounts:
    routed: int  # calibration pairs routed to humans
    labelled: int  # of those, with a human a/b label
    ensembles: int  # ensemble versions fitted


def calibration_counts(store: PreferenceStore) -> CalibrationCounts:
    routed, labelled = store.query(
        f"""
        SELECT count(*), count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM active_labels l WHERE l.pair_id = p.pair_id
                   AND l.source = 'human' AND l.verdict IN ('a', 'b')))
        FROM pairs p WHERE {_CALIBRATION}
        """
    )[0]
    return CalibrationCounts(int(routed), int(labelled), int(store.count("ensembles")))


def latest_score_stds(store: PreferenceStore) -> list[float]:
    """The std of P(A>B) across ensemble members for every pair, latest version."""
    rows = store.query("SELECT p_std FROM scores WHERE version = (SELECT max(version) FROM scores)")
    return [r[0] for r in rows]
