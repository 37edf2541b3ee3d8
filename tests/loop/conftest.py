"""Fixtures for loop tests: a copy of the demo store (`demo_template`, tests/conftest.py)
and the fake OpenAI judge; `tests.fakes.loop_cli` runs `prefloop loop`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture
def loop_db(demo_template: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "store"
    shutil.copytree(demo_template, folder)
    return folder / "demo.duckdb"


@pytest.fixture
def judge_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server
