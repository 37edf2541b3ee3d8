"""`prefloop bench hybrid` end to end on a small slice of HH (real store, judge over HTTP)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import HH_HELPFUL_BASE, REPO


def test_hybrid_bench_small_run(tmp_path: Path, hh_path: Path) -> None:
    assert hh_path == HH_HELPFUL_BASE
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "bench",
            "hybrid",
            "--pairs",
            "80",
            "--seeds",
            "2",
            "--budgets",
            "0.3",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["pairs"] == 80 and result["seeds"] == 2
    for kind in ("single", "panel"):
        flows = {f: v["0.3"]["mean"] for f, v in result["right_labels"][kind].items()}
        assert flows["oracle"] >= max(flows.values()) - 1e-9
        # humans on 30% of the pairs can only add right labels to the judge's
        assert all(flows[f] >= flows["judge-only"] for f in ("random", "uncertainty", "default"))
    agreement = result["judge_agreement_with_humans"]["sim-j1:ab"]["mean"]
    assert abs(agreement - 0.75) < 0.03  # the simulated judge was calibrated to 0.75
    assert (tmp_path / "hybrid.png").stat().st_size > 10_000
