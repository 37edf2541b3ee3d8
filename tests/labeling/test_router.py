from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.errors import ConfigError
from data.ingest import ingest
from data.shapes import PairRecord
from labeling.acquisition import variance
from labeling.ensemble import EnsembleConfig
from labeling.router import RouterConfig, calibration_size, plan_routes, route_store
from labeling.scoring import ScoreConfig, score_store, stored_scores

# Length features need no encoder, so these tests exercise the whole score -> route path fast.
LENGTH_ONLY = ScoreConfig(features=("length",), ensemble=EnsembleConfig(members=4), min_labels=8)


def seeded_store(store, labelled: int = 20, unlabelled: int = 40):
    rng = np.random.default_rng(0)
    records = []
    for i in range(labelled + unlabelled):
        a = "word " * int(rng.integers(1, 60))
        b = "text " * int(rng.integers(1, 60))
        verdict = ("a" if len(a) > len(b) else "b") if i < labelled else None
        records.append(
            PairRecord(
                [{"role": "user", "content": f"question {i}"}], a + str(i), b + str(i), verdict
            )
        )
    ingest(store, records, origin="test")
    return store


def queues(store) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"human": [], "judge": [], "unrouted": []}
    for pid, queue in store.query("SELECT pair_id, queue FROM pairs ORDER BY pair_id"):
        out[queue].append(pid)
    return out


def labelled_ids(store) -> set[str]:
    return {r[0] for r in store.query("SELECT DISTINCT pair_id FROM labels")}


def test_route_spends_budget_with_calibration_and_sends_the_rest_to_the_judge(store):
    seeded_store(store)
    score_store(store, LENGTH_ONLY)
    report = route_store(
        store,
        RouterConfig(
            human_budget=10, strategy="variance", calibration_fraction=0.2, seed=1, diversity=False
        ),
    )
    q = queues(store)
    assert report.human == len(q["human"]) == 10
    assert report.calibration == 2 and report.active == 8 and report.promoted == 0
    assert report.judge == len(q["judge"]) == 30
    # labelled pairs need no routing; every unlabelled pair is in exactly one queue
    assert set(q["unrouted"]) == labelled_ids(store)
    assert not set(q["human"]) & set(q["judge"])
    # the active picks are the highest-variance pairs outside the calibration slice
    reasons = dict(store.query("SELECT pair_id, route_reason FROM pairs WHERE queue = 'human'"))
    scores = stored_scores(store, report.version)
    calibration = {p for p, r in reasons.items() if r == "calibration"}
    others = [p for p in q["human"] + q["judge"] if p not in calibration]
    var = {p: float(variance(scores[p][:, None])[0]) for p in others}
    top8 = sorted(others, key=lambda p: -var[p])[:8]
    assert {p for p, r in reasons.items() if r == "active:variance"} == set(top8)


def test_pairs_without_a_usable_label_are_promoted_first_and_count_against_the_budget(store):
    seeded_store(store)
    score_store(store, LENGTH_ONLY)
    route_store(store, RouterConfig(human_budget=5, seed=0))
    judged = [
        r[0]
        for r in store.query(
            "SELECT pair_id FROM pairs WHERE queue = 'judge' ORDER BY pair_id LIMIT 3"
        )
    ]
    with store.transaction() as cur:
        cur.execute(
            "INSERT INTO pair_flags (pair_id, flag) VALUES (?, 'judge_inconsistent'), "
            "(?, 'judge_panel_split'), (?, 'judge_ensemble_disagree')",
            judged,
        ).fetchall()
    report = route_store(store, RouterConfig(human_budget=3, seed=0))
    # the 5 unstarted human pairs are re-chosen with the 3 new slots: 8 picks, 2 promoted
    assert report.human == 8 and report.human_queue_total == 8 and report.promoted == 2
    assert report.by_reason["promoted:judge_inconsistent"] == 1
    assert report.by_reason["promoted:panel_split"] == 1
    rows = dict(store.query("SELECT pair_id, queue FROM pairs WHERE pair_id IN (?, ?)", judged[:2]))
    assert set(rows.values()) == {"human"}
    # the ensemble-disagreement flag is a risk signal now, not a promotion
    assert "judge_ensemble_disagree" not in str(report.by_reason)
    # a budget smaller than the flagged set is still respected
    with store.transaction() as cur:
        cur.execute("UPDATE pairs SET queue = 'judge' WHERE queue = 'human'").fetchall()
    small = route_store(store, RouterConfig(human_budget=1))
    assert small.human == 1 and small.promoted == 1 and small.unlabelled_left == 1


def test_promoted_pairs_lead_the_human_queue(store):
    seeded_store(store)
    first = sorted(
        set(r[0] for r in store.query("SELECT pair_id FROM pairs")) - labelled_ids(store)
    )[0]
    with store.transaction() as cur:
        cur.execute(
            "INSERT INTO pair_flags (pair_id, flag) VALUES (?, 'judge_inconsistent')", [first]
        ).fetchall()
    score_store(store, LENGTH_ONLY)
    route_store(store, RouterConfig(human_budget=6, seed=0))
    top = store.query(
        "SELECT pair_id, route_reason FROM pairs WHERE queue = 'human' ORDER BY priority DESC LIMIT 1"
    )
    assert top == [(first, "promoted:judge_inconsistent")]


def test_cold_start_routes_at_random_and_says_so(store):
    seeded_store(store, labelled=0, unlabelled=30)
    report = route_store(store, RouterConfig(human_budget=7, strategy="bald", seed=0))
    assert report.version is None and "prefloop score" in report.note
    assert report.human == 7 and report.judge == 23


def test_diverse_batch_from_stored_features(store):
    seeded_store(store)
    score_store(store, LENGTH_ONLY)
    report = route_store(store, RouterConfig(human_budget=8, strategy="bald", seed=0))
    assert report.human == 8 and len({p["pair_id"] for p in report.human_pairs}) == 8


def test_bad_router_options():
    with pytest.raises(ConfigError, match="strategy"):
        RouterConfig(human_budget=1, strategy="margin").check()
    with pytest.raises(ConfigError, match="human-budget"):
        RouterConfig(human_budget=-1).check()


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 40),
    n_promoted=st.integers(0, 10),
    budget=st.integers(0, 30),
    fraction=st.floats(0, 1),
    diverse=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_plan_invariants(n, n_promoted, budget, fraction, diverse, seed):
    rng = np.random.default_rng(seed)
    candidates = [f"c{i}" for i in range(n)]
    promoted = [f"c{i}" for i in range(min(n_promoted // 2, n))] + [
        f"p{i}" for i in range(n_promoted - min(n_promoted // 2, n))
    ]
    scores = rng.random(n)
    vectors = rng.normal(size=(n, 3)) if diverse else None
    config = RouterConfig(human_budget=budget, calibration_fraction=fraction, seed=seed)
    plan = plan_routes(candidates, promoted, scores, config, vectors=vectors)
    ids = [a.pair_id for a in plan]
    assert len(ids) == len(set(ids))  # never both queues
    assert set(ids) == set(candidates) | set(promoted[:budget])
    human = [a for a in plan if a.queue == "human"]
    assert len(human) == min(
        budget, len(set(candidates) | set(promoted))
    )  # budget filled, never exceeded
    assert [a.pair_id for a in human[: min(budget, len(promoted))]] == promoted[:budget]
    n_cal = sum(a.reason == "calibration" for a in human)
    available = len(set(candidates) - set(promoted[:budget]))
    assert n_cal == min(
        calibration_size(budget, fraction), budget - min(budget, len(promoted)), available
    )
    priorities = [a.priority for a in human]
    assert priorities == sorted(priorities, reverse=True) and len(set(priorities)) == len(
        priorities
    )


def test_next_score_reports_accuracy_on_the_labelled_calibration_slice(store):
    from data.click_batch import submit_human_label

    seeded_store(store)
    first = score_store(store, LENGTH_ONLY)
    assert "calibration_accuracy" not in first.metrics
    route_store(store, RouterConfig(human_budget=10, calibration_fraction=0.4, seed=3))
    calibration = [
        r[0] for r in store.query("SELECT pair_id FROM pairs WHERE route_reason = 'calibration'")
    ]
    assert len(calibration) == 4
    p_mean = dict(
        store.query("SELECT pair_id, p_mean FROM scores WHERE version = ?", [first.version])
    )
    verdicts = ["a", "b", "a", "a"]
    for pid, verdict in zip(calibration, verdicts, strict=True):
        submit_human_label(store, pid, "ann", verdict_shown=verdict, swapped=False)
    expected = np.mean(
        [(p_mean[p] > 0.5) == (v == "a") for p, v in zip(calibration, verdicts, strict=True)]
    )
    second = score_store(store, LENGTH_ONLY)
    assert second.metrics["calibration_pairs"] == 4
    assert second.metrics["calibration_version"] == first.version
    assert second.metrics["calibration_accuracy"] == expected


def test_rounds_never_exceed_the_budget_nor_move_held_or_labelled_pairs(store):
    from data.click_batch import submit_human_label
    from data.queue import claim_next

    seeded_store(store, labelled=20, unlabelled=60)
    score_store(store, LENGTH_ONLY)
    open_total = 0
    for round_, budget in enumerate((10, 0, 7, 5)):
        before = dict(store.query("SELECT pair_id, queue FROM pairs"))
        labelled = {r[0] for r in store.query("SELECT pair_id FROM labels WHERE source = 'human'")}
        leased = {r[0] for r in store.query("SELECT pair_id FROM leases")}
        report = route_store(store, RouterConfig(human_budget=budget, seed=round_))
        after = dict(store.query("SELECT pair_id, queue FROM pairs"))
        open_total += budget
        assert report.human_queue_total == open_total  # grows by exactly the budget
        assert all(after[p] == before[p] for p in labelled | leased)
        # annotators take two pairs: one labelled, one only leased
        got = claim_next(store, f"ann{round_}")
        if got:
            submit_human_label(store, got, f"ann{round_}", verdict_shown="a", swapped=False)
            open_total -= 1
        claim_next(store, f"lease{round_}")


def test_nothing_to_route_says_why(store):
    seeded_store(store, labelled=6, unlabelled=0)
    report = route_store(store, RouterConfig(human_budget=3))
    assert report.human == 0 and report.note.startswith(
        "nothing to route: of 6 pairs, 6 carry an import label (imports count as ground truth;"
    )
    assert "--labels as-reference" in report.note
