from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `tests.fakes` is imported from the repository root
    sys.path.insert(0, str(REPO))

from tests.fakes.judging import prefers_good  # noqa: E402
from tests.fakes.openai_server import FakeOpenAIServer  # noqa: E402


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    """A running fake OpenAI server that prefers the response containing GOOD (a consistent judge)."""
    with FakeOpenAIServer(prefers_good) as server:
        yield server
