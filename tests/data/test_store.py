from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from data.errors import StoreError
from data.ingest import ingest
from data.schema import SCHEMA_VERSION
from data.shapes import PairRecord
from data.store import PreferenceStore

REPO = Path(__file__).resolve().parents[2]


def one_pair(store: PreferenceStore) -> str:
    result = ingest(
        store, [PairRecord([{"role": "user", "content": "hi"}], "hello", "go away")], origin="t"
    )
    return result.pair_ids[0]


def test_new_store_is_migrated_and_reopens(store_path: Path) -> None:
    with PreferenceStore(store_path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        pid = one_pair(store)
    with PreferenceStore(store_path) as again:
        assert again.schema_version() == SCHEMA_VERSION
        assert again.get_pair(pid).response_a in ("hello", "go away")


def test_second_writer_process_gets_a_clear_error(store_path: Path) -> None:
    with PreferenceStore(store_path) as store:
        one_pair(store)
        code = f"from data.store import PreferenceStore\nPreferenceStore({str(store_path)!r})"
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO
        )
        assert proc.returncode != 0
        assert "StoreLockedError" in proc.stderr
        assert "open for writing by another process" in proc.stderr
        assert store.count("pairs") == 1  # the owner is unaffected
    with PreferenceStore(store_path) as reopened:  # and the file is intact
        assert reopened.count("pairs") == 1


def test_cli_reports_locked_store_in_one_line(store_path: Path) -> None:
    with PreferenceStore(store_path) as store:
        one_pair(store)
        proc = subprocess.run(
            [sys.executable, "-m", "app", "stats", "--db", str(store_path)],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: ") and "another process" in proc.stderr


def test_labels_are_validated_and_undo_keeps_an_audit_row(store: PreferenceStore) -> None:
    pid = one_pair(store)
    with pytest.raises(StoreError, match="verdict"):
        store.add_label(pid, source="human", who="ann", verdict="left")
    with pytest.raises(StoreError, match="source"):
        store.add_label(pid, source="robot", who="ann", verdict="a")
    with pytest.raises(StoreError, match="unknown pair"):
        store.add_label("nope", source="human", who="ann", verdict="a")
    label_id = store.add_label(pid, source="human", who="ann", verdict="a", confidence=0.9)
    assert [x["label_id"] for x in store.labels()] == [label_id]
    assert store.retract_label(label_id, who="ann")
    assert not store.retract_label(label_id, who="ann")
    assert store.labels() == []
    assert store.count("labels") == 1


def test_failed_transaction_changes_nothing(store: PreferenceStore) -> None:
    pid = one_pair(store)
    with pytest.raises(RuntimeError), store.transaction() as cur:
        store.add_label(pid, source="human", who="ann", verdict="a", cursor=cur)
        raise RuntimeError("crash mid-transaction")
    assert store.labels() == []


def test_read_only_store_refuses_writes(store_path: Path) -> None:
    with PreferenceStore(store_path) as store:
        pid = one_pair(store)
    with (
        PreferenceStore(store_path, read_only=True) as ro,
        pytest.raises(StoreError, match="read-only"),
    ):
        ro.add_label(pid, source="human", who="x", verdict="a")


def test_missing_read_only_store_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="prefloop import"):
        PreferenceStore(tmp_path / "none.duckdb", read_only=True)


def test_not_a_duckdb_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_text("this is not a database")
    with pytest.raises(StoreError, match="bad.duckdb"):
        PreferenceStore(bad)


def test_an_older_store_is_migrated_on_open(store_path: Path) -> None:
    import duckdb

    from data.schema import MIGRATIONS

    first = duckdb.connect(str(store_path))  # a file written by version 1, and nothing since
    first.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    first.execute(MIGRATIONS[0])
    first.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    first.close()
    with PreferenceStore(store_path) as again:
        assert again.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
        assert again.count("pairs") == 0
        for later in ("skips", "reference_labels", "label_corrections", "active_labels",
                      "loop_rounds", "gold_answers", "adjudications", "feedback"):  # fmt: skip
            assert again.query(f"SELECT count(*) FROM {later}") == [(0,)], later


def test_active_labels_is_the_labels_that_count(store: PreferenceStore) -> None:
    from data.ingest import ingest
    from data.shapes import PairRecord

    (pair,) = ingest(
        store, [PairRecord([{"role": "user", "content": "q"}], "one", "two")], origin="t"
    ).pair_ids
    kept = store.add_label(pair, source="judge", who="m", verdict="a")
    undone = store.add_label(pair, source="human", who="ann", verdict="b")
    store.retract_label(undone)
    assert store.query("SELECT label_id FROM active_labels") == [(kept,)]
    assert store.count("labels") == 2  # the retracted one is kept for audit
