from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data" / "hh-rlhf"
HH_HELPFUL_BASE = SHARED_DATA / "helpful-base" / "test.jsonl.gz"


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store.duckdb"


@pytest.fixture
def store(store_path: Path) -> Iterator[PreferenceStore]:  # noqa: F821
    from data.store import PreferenceStore

    with PreferenceStore(store_path) as opened:
        yield opened


@pytest.fixture
def hh_path() -> Path:
    if not HH_HELPFUL_BASE.exists():
        pytest.skip(f"{HH_HELPFUL_BASE} is not present (shared data)")
    return HH_HELPFUL_BASE


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian Chromium through Playwright, one per test module."""
    from tests.browsing import launched_chromium

    yield from launched_chromium()


@pytest.fixture
def labelled_store(tmp_path: Path, hh_path: Path) -> Iterator:
    from data.store import PreferenceStore

    with PreferenceStore(tmp_path / "store.duckdb") as opened:
        from tests.fakes.hh import import_hh

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

    from tests.fakes.hh import TINY
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
    if not HH_HELPFUL_BASE.exists():
        pytest.skip(f"{HH_HELPFUL_BASE} is not present (shared data)")
    return HH_HELPFUL_BASE


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    """The demo store, scored and routed once per session (loop tests copy its folder)."""
    from app.demo_data import build_demo_store
    from data.store import PreferenceStore

    folder = tmp_path_factory.mktemp("demo-template")
    with PreferenceStore(folder / "demo.duckdb") as store:
        build_demo_store(store)
    return folder
