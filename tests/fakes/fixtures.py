"""Pytest fixtures for the fake OpenAI server, importable by any suite's conftest.py:

    from tests.fakes.fixtures import fake_openai_server  # noqa: F401

then `def test_x(fake_openai_server): ...` gets a running server that answers "A"
(script it with `.push(...)`, or set `.responder`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture
def fake_openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server
