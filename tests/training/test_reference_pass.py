"""A reference pass ahead of a DPO run, and a snapshot capped at a label cut-off (real
subprocesses, a real store, the session's tiny GPT-2 folder)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data.labels import newest_label_id
from tests.fakes.hh import TINY, import_hh
from training import runfiles
from training.jobs import TrainRequest, reference_todo
from training.snapshot import export_snapshot

SETTINGS = {**TINY, "batch_size": 40, "eval_every": 0}  # 2 steps x 40 rows: every row


def test_a_reference_pass_fills_the_cache_the_dpo_run_reads(
    jobs, labelled_store, tiny_policy, tmp_path
) -> None:
    policy = str(tiny_policy)
    jobs.keep_warm(True)  # five runs: fork them from one process that has done the imports
    some = [r[0] for r in labelled_store.query("SELECT pair_id FROM pairs ORDER BY pair_id")][:5]
    listed = tmp_path / "pairs.txt"
    listed.write_text("\n".join(some) + "\n")
    part = jobs.run(
        TrainRequest("reference", policy=policy, overrides=SETTINGS, pairs=str(listed)),
        timeout=300,
    )
    assert part["status"] == "succeeded", part["log_tail"]
    assert part["metrics"]["ref_forward_pairs"] == 5 == part["config"]["ref_pairs"]
    assert part["metrics"]["ref_logprobs_added"] == labelled_store.count("ref_logprobs") == 10
    assert part["artifact_path"] is None and not part["promoted"]

    request = TrainRequest("reference", policy=policy, overrides=SETTINGS)
    rows, _, _ = reference_todo(labelled_store, request)
    pairs = labelled_store.count("pairs")
    assert len(rows) == pairs - 5  # the listed ones are cached now
    rest = jobs.run(request, timeout=300)
    assert rest["status"] == "succeeded", rest["log_tail"]
    assert rest["metrics"]["ref_forward_pairs"] == pairs - 5

    # the DPO run finds every pair cached: it computes no reference log-prob itself
    dpo = jobs.run(TrainRequest("dpo", policy=policy, max_steps=2, overrides=SETTINGS), timeout=300)
    assert dpo["status"] == "succeeded", dpo["log_tail"]
    assert dpo["metrics"]["ref_forward_pairs"] == 0
    assert dpo["metrics"]["ref_cached_pairs"] == dpo["metrics"]["snapshot_rows"]

    # and the cached values are those the DPO run computes when it does not read the cache
    fresh = jobs.run(
        TrainRequest(
            "dpo", policy=policy, max_steps=2, overrides={**SETTINGS, "cache_reference": False}
        ),
        timeout=300,
    )
    assert fresh["status"] == "succeeded", fresh["log_tail"]
    recomputed = pq.read_table(Path(fresh["run_dir"]) / runfiles.REF_LOGPROBS).to_pylist()
    cached = {
        (p, r): v
        for p, r, v in labelled_store.query("SELECT prompt_id, response_id, logp FROM ref_logprobs")
    }
    assert recomputed and len(cached) == len(recomputed)
    for row in recomputed:
        assert cached[(row["prompt_id"], row["response_id"])] == pytest.approx(
            row["logp"], abs=1e-3
        )

    # nothing is left to compute: the pass says why before it starts a process
    rows, why, _ = reference_todo(labelled_store, request)
    assert rows == [] and "cached already" in why
    again = jobs.run(request, timeout=60)
    assert again["status"] == "failed" and "no reference pass needed" in again["log_tail"]


def test_the_tiny_policy_has_no_reference_to_precompute(labelled_store) -> None:
    rows, why, _ = reference_todo(
        labelled_store, TrainRequest("reference", policy="tiny", overrides=TINY)
    )
    assert rows == [] and "no reference cache" in why


def test_a_snapshot_capped_at_a_cut_off_leaves_later_labels_out(
    labelled_store, hh_path, tmp_path
) -> None:
    cutoff = newest_label_id(labelled_store)
    before = export_snapshot(labelled_store, tmp_path / "a.parquet")
    import_hh(labelled_store, hh_path, tmp_path, 60, 10)  # 10 more labelled pairs
    # a later judge label on a pair decided before the cut-off does not change its verdict
    first = pq.read_table(tmp_path / "a.parquet").to_pylist()[0]
    labelled_store.add_label(first["pair_id"], source="human", who="late", verdict="b")
    capped = export_snapshot(labelled_store, tmp_path / "b.parquet", label_cutoff=cutoff)
    assert capped == before
    assert decided(tmp_path / "b.parquet") == decided(tmp_path / "a.parquet")
    everything = export_snapshot(labelled_store, tmp_path / "c.parquet")
    assert everything["rows"] == before["rows"] + 10
    # the run after a capped one sees the labels above the cap as new
    later = export_snapshot(labelled_store, tmp_path / "d.parquet", watermark=cutoff)
    assert later["new"] == 11  # the 10 imported pairs and the re-labelled one


def decided(path: Path) -> list[tuple[str, str, str, bool]]:
    """A snapshot's pairs, verdicts (the chosen text) and newness."""
    return [
        (r["pair_id"], r["chosen"], r["source"], r["is_new"])
        for r in pq.read_table(path).to_pylist()
    ]
