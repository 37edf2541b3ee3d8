"""Quality control on hand-built stores (real DuckDB files, the real label path):
per-annotator numbers, position bias, adjudication in the export, gold pairs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from data.adjudication import adjudicate, next_case, split_pairs
from data.annotator_stats import annotator_table, write_csv
from data.click_batch import submit_human_label
from data.errors import ConfigError, StoreError
from data.export import AggregationPolicy, aggregated_pairs
from data.gold import GoldConfig, gold_answers, gold_scores, write_gold_config
from data.importer import ImportOptions, import_sources
from data.ingest import ingest
from data.intervals import wilson
from data.queue import Assignment, assign, claim_next, release
from data.schema import swap_verdict
from data.shapes import PairRecord
from data.store import PreferenceStore


def records(n: int, tag: str = "q") -> list[PairRecord]:
    return [
        PairRecord(
            [{"role": "user", "content": f"{tag} {i}?"}], f"good {tag} {i}", f"bad {tag} {i}"
        )
        for i in range(n)
    ]


def human_queue(store: PreferenceStore, n: int, needed: int, tag: str = "q") -> list[str]:
    ids = list(ingest(store, records(n, tag), origin="test").pair_ids)
    assign(
        store,
        [
            Assignment(p, "human", priority=float(n - i), needed_labels=needed)
            for i, p in enumerate(ids)
        ],
    )
    return ids


def give(store: PreferenceStore, who: str, stored: str, swapped: bool, wait: float = 0.0) -> str:
    """`who` takes the next pair and labels it `stored` (relative to the stored A/B), having
    seen it swapped or not: what they clicked is the verdict as shown."""
    pair_id = claim_next(store, who)
    assert pair_id is not None
    if wait:
        time.sleep(wait)  # the time from lease to label is what is measured
    shown = swap_verdict(stored) if swapped else stored
    submit_human_label(store, pair_id, who, verdict_shown=shown, swapped=swapped, leased_only=True)
    return pair_id


@pytest.fixture
def history(store: PreferenceStore) -> tuple[PreferenceStore, list[str]]:
    """Three annotators on four pairs (three labels each) and a fifth pair x undoes."""
    ids = human_queue(store, 5, needed=3)
    for stored, swapped in [("a", False), ("a", True), ("b", False), ("tie", False)]:
        give(store, "x", stored, swapped)
    assert give(store, "x", "a", False) == ids[4]
    (last,) = store.query("SELECT max(label_id) FROM labels WHERE who = 'x'")[0]
    assert store.retract_label(last, who="x")
    for _ in range(4):
        give(store, "y", "a", False, wait=0.12)
    for stored in ["a", "b", "b", "b"]:
        give(store, "z", stored, True)
    with (
        store.transaction() as cur
    ):  # z skipped the fifth pair (the skips table as the app keeps it)
        cur.execute("INSERT INTO skips (annotator, pair_id) VALUES ('z', ?)", [ids[4]]).fetchall()
    store.add_label(ids[0], source="judge", who="m", verdict="a")
    store.add_label(ids[2], source="judge", who="m", verdict="b")
    return store, ids


def test_per_annotator_numbers(history: tuple[PreferenceStore, list[str]]) -> None:
    store, _ = history
    rows = {r.annotator: r for r in annotator_table(store)}
    assert sorted(rows) == ["x", "y", "z"]
    x, y, z = rows["x"], rows["y"], rows["z"]
    assert (x.labels, x.today, y.labels, z.labels) == (4, 4, 4, 4)
    assert x.per_hour in (4.0, 2.0)  # 4 labels in one clock hour (two if it turned meanwhile)
    # the others' strict majority: x agrees on the one pair where it exists; y, z on 1 of 2
    assert (x.vs_majority.right, x.vs_majority.n) == (1, 1)
    assert (y.vs_majority.right, y.vs_majority.n) == (1, 2)
    assert (z.vs_majority.right, z.vs_majority.n) == (1, 2)
    assert (x.vs_judge.right, x.vs_judge.n, y.vs_judge.right, z.vs_judge.right) == (2, 2, 1, 2)
    assert x.vs_gold.n == 0 and x.gold_flag is False
    assert (x.tie_rate, y.tie_rate, x.both_bad_rate) == (0.25, 0.0, 0.0)
    assert (x.undo_rate, y.undo_rate) == (0.2, 0.0)
    assert (z.skip_rate, x.skip_rate) == (0.2, 0.0)
    # lease to label: y waited 0.12 s each time, x clicked at once
    assert y.median_seconds is not None and 0.12 <= y.median_seconds < 5
    assert x.median_seconds is not None and x.median_seconds < y.median_seconds


def test_position_bias_from_swapped(history: tuple[PreferenceStore, list[str]]) -> None:
    store, _ = history
    rows = {r.annotator: r for r in annotator_table(store)}
    # x: a as stored (left), a seen swapped (clicked the right), b as stored (right); tie ignored
    assert (rows["x"].left.right, rows["x"].left.n) == (1, 3)
    # y: always the left one, never swapped
    assert (rows["y"].left.right, rows["y"].left.n) == (4, 4)
    # z saw every pair swapped: stored a = clicked right; stored b = clicked left (3 times)
    assert (rows["z"].left.right, rows["z"].left.n) == (3, 4)
    four_of_four = tuple(round(x, 4) for x in wilson(4, 4))
    assert rows["y"].left.interval == four_of_four and four_of_four[1] == 1.0


def test_csv_and_cli_json(history: tuple[PreferenceStore, list[str]], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from app.cli import cli

    store, _ = history
    path = write_csv(annotator_table(store), tmp_path / "a.csv")
    header, *lines = path.read_text().splitlines()
    assert header.startswith("annotator,labels,today,per_hour,median_seconds,vs_majority,")
    assert "left_n" in header and len(lines) == 3
    db = store.path
    store.close()
    result = CliRunner().invoke(cli, ["annotators", "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    table = {r["annotator"]: r for r in json.loads(result.output)["annotators"]}
    assert table["y"]["left"] == {
        "rate": 1.0,
        "n": 4,
        "interval": [round(x, 4) for x in wilson(4, 4)],
    }


def test_adjudication_outranks_the_split_humans(history: tuple[PreferenceStore, list[str]]) -> None:
    store, ids = history
    # P3: tie / a / b, one vote each: split; the other pairs have a majority
    assert split_pairs(store) == [ids[3]]
    exported = {p.pair_id: (p.verdict, p.source) for p in aggregated_pairs(store)}
    assert ids[3] not in exported and exported[ids[2]] == ("b", "human")
    case = next_case(store)
    assert case is not None and case.pair.pair_id == ids[3] and case.waiting == 1
    assert [(v.who, v.verdict, v.swapped) for v in case.votes] == [
        ("x", "tie", False),
        ("y", "a", False),
        ("z", "b", True),
    ]
    with pytest.raises(StoreError, match="not waiting for adjudication"):
        adjudicate(store, ids[2], "judy", "a")  # 2-1 is no split
    adjudicate(store, ids[3], "judy", "a", "A answers the question")
    exported = {p.pair_id: (p.verdict, p.source) for p in aggregated_pairs(store)}
    assert exported[ids[3]] == ("a", "adjudication")
    assert split_pairs(store) == [] and next_case(store) is None
    with pytest.raises(StoreError, match="not waiting"):
        adjudicate(store, ids[3], "judy", "b")  # once settled, settled
    with pytest.raises(StoreError, match="not one of"):
        adjudicate(store, ids[3], "judy", "left")


def test_adjudication_outranks_humans_in_a_two_vote_split(store: PreferenceStore) -> None:
    (pair,) = human_queue(store, 1, needed=2)
    give(store, "x", "a", False)
    give(store, "y", "b", True)
    assert aggregated_pairs(store) == [] and split_pairs(store) == [pair]
    adjudicate(store, pair, "judy", "b")
    (only,) = aggregated_pairs(store)
    assert (only.verdict, only.source, only.votes) == ("b", "adjudication", 1)


def gold_file(tmp_path: Path, n: int, verdict: str = "a") -> Path:
    path = tmp_path / "gold.jsonl"
    rows = [
        {"prompt": f"gold {i}?", "chosen": f"right {i}", "rejected": f"wrong {i}"} for i in range(n)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_gold_import_keeps_answers_out_of_labels(store: PreferenceStore, tmp_path: Path) -> None:
    report = import_sources(store, [str(gold_file(tmp_path, 4))], ImportOptions(gold=True))
    assert report.gold_answers == 4 and report.labels == 0 and store.count("labels") == 0
    answers = gold_answers(store)
    assert len(answers) == 4 and set(answers.values()) <= {"a", "b"}
    # the file says chosen = right: the stored orientation decides a or b
    for pair in store.pairs():
        right = "a" if pair.response_a.startswith("right") else "b"
        assert answers[pair.pair_id] == right
    assert aggregated_pairs(store) == []  # gold answers are not training labels...
    asked = aggregated_pairs(store, AggregationPolicy(include_gold=True))
    assert {(p.pair_id, p.verdict, p.source) for p in asked} == {
        (p, v, "gold") for p, v in answers.items()
    }  # ...unless asked
    unlabelled = tmp_path / "plain.jsonl"
    unlabelled.write_text(json.dumps({"prompt": "p", "responses": ["x", "y"]}) + "\n")
    with pytest.raises(ConfigError, match="exactly one verdict"):
        import_sources(store, [str(unlabelled)], ImportOptions(gold=True))


def test_gold_accuracy_and_the_export_floor(store: PreferenceStore, tmp_path: Path) -> None:
    ids = human_queue(store, 6, needed=2)
    import_sources(store, [str(gold_file(tmp_path, 5))], ImportOptions(gold=True))
    answers = gold_answers(store)
    write_gold_config(store, GoldConfig(rate=1.0, window=5, min_accuracy=0.7, min_gold=3))
    for who, right in (("good", True), ("bad", False)):
        for _ in range(5):  # every next pair is gold while some are left for them
            pair_id = claim_next(store, who)
            assert pair_id in answers
            verdict = answers[pair_id] if right else swap_verdict(answers[pair_id])
            submit_human_label(
                store, pair_id, who, verdict_shown=verdict, swapped=False, leased_only=True
            )
        assert claim_next(store, who) in ids  # gold used up: the ordinary queue again
        release(store, who)
    scores = gold_scores(store)
    assert (scores["good"].right, scores["good"].n, scores["bad"].right) == (5, 5, 0)
    rows = {r.annotator: r for r in annotator_table(store)}
    assert rows["bad"].gold_flag and not rows["good"].gold_flag
    assert rows["good"].vs_gold.rate == 1.0
    # both label every ordinary pair, "bad" always the opposite of "good"
    write_gold_config(store, GoldConfig(rate=0.0))
    for pair_id in ids:
        for who, verdict in (("good", "a"), ("bad", "b")):
            assert claim_next(store, who) == pair_id
            submit_human_label(
                store, pair_id, who, verdict_shown=verdict, swapped=False, leased_only=True
            )
    assert aggregated_pairs(store) == []  # every ordinary pair split; gold pairs left out
    kept = aggregated_pairs(store, AggregationPolicy(min_annotator_gold_accuracy=0.7))
    assert {(p.pair_id, p.verdict) for p in kept} == {(p, "a") for p in ids}


def test_gold_rate_and_no_gold_for_lease_holders(store: PreferenceStore, tmp_path: Path) -> None:
    ids = human_queue(store, 240, needed=1)
    import_sources(store, [str(gold_file(tmp_path, 150))], ImportOptions(gold=True))
    answers = gold_answers(store)
    write_gold_config(store, GoldConfig(rate=0.25))
    got_gold = 0
    for _ in range(200):
        pair_id = give(store, "ann", "a", False)
        got_gold += pair_id in answers
    assert 30 <= got_gold <= 72, got_gold  # 50 expected; binomial sd 6.1
    # a lease holder keeps their pair, whatever the draw
    write_gold_config(store, GoldConfig(rate=1.0))
    held = claim_next(store, "other")
    assert held in answers
    assert all(claim_next(store, "other") == held for _ in range(5))
    assert len(ids) == 240


def test_dawid_skene_settles_splits_toward_the_careful(store: PreferenceStore) -> None:
    for _ in human_queue(store, 10, needed=3):
        give(store, "g1", "a", False)
        give(store, "g2", "a", True)
        give(store, "bad", "b", False)
    splits = human_queue(store, 4, needed=2, tag="split")
    for _ in splits:
        give(store, "g1", "a", False)
        give(store, "bad", "b", True)
    plain = {p.pair_id for p in aggregated_pairs(store)}
    assert not plain & set(splits) and len(plain) == 10
    weighed = {
        p.pair_id: p.verdict
        for p in aggregated_pairs(store, AggregationPolicy(human_model="dawid-skene"))
    }
    assert {weighed[p] for p in splits} == {"a"} and len(weighed) == 14
    with pytest.raises(ConfigError, match="human model"):
        aggregated_pairs(store, AggregationPolicy(human_model="vibes"))
