from __future__ import annotations

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
