"""Unpaired thumbs up/down (prompt / completion / label rows): stored once, errors located."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.errors import ImportValidationError
from data.feedback import feedback_rows
from data.importer import ImportOptions, import_sources
from data.store import PreferenceStore


def write(path: Path, rows: list[dict]) -> str:
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return str(path)


def test_feedback_is_stored_once_and_a_changed_label_replaces_it(
    store: PreferenceStore, tmp_path: Path
) -> None:
    rows = [
        {"prompt": "How do I sort?", "completion": "Use sorted().", "label": True},
        {"prompt": "How do I sort?", "completion": "No idea.", "label": "down"},
        {"prompt": [{"role": "user", "content": "Hi"}], "completion": "Hello!", "label": 1},
    ]
    path = write(tmp_path / "thumbs.jsonl", rows)
    assert import_sources(store, [path], ImportOptions()).feedback == 3
    assert import_sources(store, [path], ImportOptions()).feedback == 0  # nothing doubles
    rows[2]["label"] = "0"
    assert (
        import_sources(store, [write(tmp_path / "thumbs.jsonl", rows)], ImportOptions()).feedback
        == 1
    )
    stored = {(r["completion"], r["desirable"]) for r in feedback_rows(store)}
    assert stored == {("Use sorted().", True), ("No idea.", False), ("Hello!", False)}
    assert store.count("pairs") == 0 and store.count("labels") == 0  # no pairs are made up


def test_a_label_that_says_nothing_is_refused_with_file_line_and_field(
    store: PreferenceStore, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "bad.jsonl",
        [
            {"prompt": "q", "completion": "c", "label": True},
            {"prompt": "q", "completion": "d", "label": "maybe"},
        ],
    )
    with pytest.raises(ImportValidationError) as error:
        import_sources(store, [path], ImportOptions())
    assert "bad.jsonl:2" in str(error.value) and "label" in str(error.value)
    assert store.count("feedback") == 0  # atomic: the good row is not stored either
