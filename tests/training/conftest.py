"""Fixtures for training tests: a small labelled store from real HH-RLHF pairs."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest

TINY = {"tiny_layers": 2, "tiny_width": 64, "tiny_vocab": 512, "max_length": 96, "batch_size": 4}


def write_hh_subset(hh_path: Path, out: Path, start: int, count: int) -> Path:
    with gzip.open(hh_path, "rt", encoding="utf-8") as handle:
        lines = [line for i, line in enumerate(handle) if start <= i < start + count]
    out.write_text("".join(lines), encoding="utf-8")
    return out


def import_hh(store, hh_path: Path, tmp_path: Path, start: int, count: int) -> None:
    from data.importer import ImportOptions, import_sources

    src = write_hh_subset(hh_path, tmp_path / f"hh-{start}-{count}.jsonl", start, count)
    import_sources(store, [str(src)], ImportOptions(skip_invalid=True))


@pytest.fixture
def labelled_store(tmp_path: Path, hh_path: Path) -> Iterator:
    from data.store import PreferenceStore

    with PreferenceStore(tmp_path / "store.duckdb") as opened:
        import_hh(opened, hh_path, tmp_path, 0, 60)
        yield opened


@pytest.fixture
def jobs(labelled_store, tmp_path: Path) -> Iterator:
    from training.jobs import JobManager

    manager = JobManager(labelled_store, tmp_path / "runs")
    yield manager
    for run in manager.runs():
        if run["status"] in ("queued", "running"):
            manager.cancel(run["run_id"])
    manager.close()


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory, hh_path_session) -> Path:
    """A tiny GPT-2 + BPE folder built once per session (a fixed reference for cache tests)."""
    import json

    from training.models import build_tiny_policy
    from training.stage_config import StageConfig

    texts = []
    with gzip.open(hh_path_session, "rt", encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if i >= 200:
                break
            row = json.loads(line)
            texts += [row["chosen"], row["rejected"]]
    out = tmp_path_factory.mktemp("tiny") / "policy"
    cfg = StageConfig(**{k: v for k, v in TINY.items() if k.startswith("tiny_")})
    build_tiny_policy(texts, out, cfg)
    return out


@pytest.fixture(scope="session")
def hh_path_session() -> Path:
    from tests.conftest import HH_HELPFUL_BASE

    if not HH_HELPFUL_BASE.exists():
        pytest.skip(f"{HH_HELPFUL_BASE} is not present (shared data)")
    return HH_HELPFUL_BASE
