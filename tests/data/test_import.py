from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data.errors import ImportValidationError
from data.importer import ImportOptions, import_sources
from data.shapes import ShapeConfig
from data.store import PreferenceStore

ROWS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"},
    {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon"},
]


def write_jsonl(path: Path, rows: list[dict], gz: bool = False) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_hh_helpful_base_counts_and_reports_the_two_identical_pairs(
    store: PreferenceStore, hh_path: Path, tmp_path: Path
) -> None:
    with pytest.raises(ImportValidationError) as failure:
        import_sources(store, [str(hh_path)], ImportOptions())
    assert [(p.line, p.field) for p in failure.value.problems] == [
        (722, "rejected"),
        (2169, "rejected"),
    ]
    assert "identical" in str(failure.value) and "test.jsonl.gz:722" in str(failure.value)
    assert store.count("pairs") == 0  # atomic

    report = import_sources(
        store,
        [str(hh_path)],
        ImportOptions(skip_invalid=True, report_path=str(tmp_path / "rej.jsonl")),
    )
    assert (report.imported_pairs, report.labels, report.invalid) == (2352, 2352, 2)
    rejected = [json.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejected] == [722, 2169]
    multi_turn = store.scalar("SELECT count(*) FROM prompts WHERE json_array_length(messages) > 1")
    assert multi_turn > 1000  # multi-turn dialogues are kept as conversations
    # HH orientation: every import label says the chosen one won
    with gzip.open(hh_path) as handle:
        first = json.loads(handle.readline())
    chosen_final = first["chosen"].rsplit("\n\nAssistant: ", 1)[1]
    pair = store.pairs(
        "WHERE p.prompt_id IN (SELECT prompt_id FROM prompts WHERE text LIKE '%turkeys%')"
    )[0]
    verdict = store.labels("AND pair_id = ?", [pair.pair_id])[0]["verdict"]
    assert (pair.response_a if verdict == "a" else pair.response_b) == chosen_final

    again = import_sources(
        store,
        [str(hh_path)],
        ImportOptions(skip_invalid=True, report_path=str(tmp_path / "r2.jsonl")),
    )
    assert (again.imported_pairs, again.labels, again.duplicates) == (0, 0, 2352)
    assert store.count("labels") == 2352


def test_every_file_type_reads_the_same_rows(store: PreferenceStore, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", ROWS)
    write_jsonl(tmp_path / "b.jsonl.gz", ROWS, gz=True)
    (tmp_path / "c.json").write_text(json.dumps(ROWS))
    with (tmp_path / "d.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["prompt", "chosen", "rejected"])
        writer.writeheader()
        writer.writerows(ROWS)
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "e.parquet")
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "hf"))
    for name in ("a.jsonl", "b.jsonl.gz", "c.json", "d.csv", "e.parquet", "hf"):
        report = import_sources(store, [str(tmp_path / name)], ImportOptions())
        assert report.rows == 2, name
    assert store.count("pairs") == 2 and store.count("labels") == 2


def test_same_pair_in_either_order_is_one_pair_with_consistent_verdicts(
    store: PreferenceStore, tmp_path: Path
) -> None:
    rows = [
        {"prompt": "p", "response_a": "x", "response_b": "y", "label": "a"},
        {"prompt": "p", "response_a": "y", "response_b": "x", "label": "b"},  # same judgement
    ]
    report = import_sources(store, [str(write_jsonl(tmp_path / "p.jsonl", rows))], ImportOptions())
    assert (report.imported_pairs, report.duplicates, report.labels) == (1, 1, 1)
    pair = store.pairs()[0]
    verdict = store.labels()[0]["verdict"]
    assert (pair.response_a if verdict == "a" else pair.response_b) == "x"


def test_shapes(store: PreferenceStore, tmp_path: Path) -> None:
    conv = [
        {
            "prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "hello"}],
            "rejected": [{"role": "assistant", "content": "no"}],
        },
        {
            "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "yes"}],
            "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "nah"}],
        },
    ]
    import_sources(
        store, [str(write_jsonl(tmp_path / "conv.jsonl", conv))], ImportOptions(format="trl")
    )
    responses = [{"prompt": "r", "responses": ["one", "two", "three"], "scores": [1, 3, 3]}]
    report = import_sources(
        store, [str(write_jsonl(tmp_path / "resp.jsonl", responses))], ImportOptions()
    )
    assert report.imported_pairs == 3 and report.labels == 3
    verdicts = sorted(x["verdict"] for x in store.labels("AND meta->>'origin' = 'resp.jsonl'"))
    assert verdicts.count("tie") == 1
    many = [{"prompt": "m", "responses": [f"answer {i}" for i in range(8)]}]
    report = import_sources(
        store,
        [str(write_jsonl(tmp_path / "many.jsonl", many))],
        ImportOptions(shape=ShapeConfig(max_pairs_per_prompt=5)),
    )
    assert report.imported_pairs == 5 and report.labels == 0
    assert store.scalar("SELECT count(*) FROM prompt_responses WHERE origin = 'many.jsonl'") == 8


@pytest.mark.parametrize(
    ("content", "line", "field", "message"),
    [
        (
            b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": \n',
            2,
            None,
            "invalid JSON",
        ),
        (
            b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "\xff", "chosen": "a", "rejected": "b"}\n',
            2,
            None,
            "UTF-8",
        ),
        (b'{"prompt": "p", "chosen": "a"}\n', 1, "rejected", "missing"),
        (b'{"prompt": "", "chosen": "a", "rejected": "b"}\n', 1, "prompt", "empty"),
        (b'{"prompt": "p", "chosen": 3, "rejected": "b"}\n', 1, "chosen", "must be a string"),
        (b'{"prompt": "p", "chosen": "same", "rejected": "same"}\n', 1, "rejected", "identical"),
        (
            b'{"prompt": "p", "chosen": "' + b"x" * 50 + b'", "rejected": "b"}\n',
            1,
            "chosen",
            "limit",
        ),
        (b'{"question": "p", "answer": "a"}\n', 1, None, "unknown row shape"),
        (b"[1, 2]\n", 1, None, "expected a JSON object"),
        (
            b'{"prompt": "p", "response_a": "a", "response_b": "b", "label": "left"}\n',
            1,
            "label",
            "must be one of",
        ),
    ],
)
def test_bad_rows_are_located_and_nothing_is_imported(
    store: PreferenceStore,
    tmp_path: Path,
    content: bytes,
    line: int,
    field: str | None,
    message: str,
) -> None:
    import_sources(store, [str(write_jsonl(tmp_path / "ok.jsonl", [ROWS[0]]))], ImportOptions())
    before = store.query("SELECT * FROM labels")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    with pytest.raises(ImportValidationError) as failure:
        import_sources(store, [str(bad)], ImportOptions(shape=ShapeConfig(max_text_chars=40)))
    problem = failure.value.problems[0]
    assert (problem.source, problem.line, problem.field) == (str(bad), line, field)
    assert message in problem.message
    assert f"bad.jsonl:{line}" in str(failure.value)
    assert store.count("pairs") == 1 and store.query("SELECT * FROM labels") == before


def test_csv_and_json_locations(store: PreferenceStore, tmp_path: Path) -> None:
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text('prompt,chosen,rejected\np,a,b\n"multi\nline",a,b\n,a,b\n')
    with pytest.raises(ImportValidationError) as failure:
        import_sources(store, [str(bad_csv)], ImportOptions())
    assert (failure.value.problems[0].line, failure.value.problems[0].field) == (5, "prompt")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text(json.dumps([ROWS[0], {"prompt": "p", "chosen": None, "rejected": "b"}]))
    with pytest.raises(ImportValidationError, match=r"bad.json: row 2: field 'chosen': is missing"):
        import_sources(store, [str(bad_json)], ImportOptions())


def test_skip_invalid_keeps_good_rows_and_reports(store: PreferenceStore, tmp_path: Path) -> None:
    rows = [ROWS[0], {"prompt": "p"}, ROWS[1]]
    report = import_sources(
        store,
        [str(write_jsonl(tmp_path / "mix.jsonl", rows))],
        ImportOptions(skip_invalid=True, report_path=str(tmp_path / "rej.jsonl")),
    )
    assert (report.imported_pairs, report.invalid) == (2, 1)
    assert json.loads((tmp_path / "rej.jsonl").read_text())["line"] == 2


def test_unknown_file_type_and_missing_file(store: PreferenceStore, tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ImportValidationError, match="unknown file type"):
        import_sources(store, [str(tmp_path / "x.txt")], ImportOptions())
    with pytest.raises(ImportValidationError, match="no such file"):
        import_sources(store, [str(tmp_path / "nope.jsonl")], ImportOptions())


def test_oversized_and_bomb_files_are_refused(store: PreferenceStore, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.jsonl.gz"
    bomb.write_bytes(gzip.compress(b"\x00" * 5_000_000))  # 5 MB of NULs in a few KB
    assert bomb.stat().st_size < 50_000
    with pytest.raises(ImportValidationError, match="decompresses to more than"):
        import_sources(store, [str(bomb)], ImportOptions(max_source_bytes=1_000_000))
    big = write_jsonl(tmp_path / "big.jsonl", ROWS * 100)
    with pytest.raises(ImportValidationError, match="import limit"):
        import_sources(store, [str(big)], ImportOptions(max_source_bytes=1_000))
    not_gzip = tmp_path / "fake.jsonl.gz"
    not_gzip.write_bytes(b"this is not gzip at all")
    with pytest.raises(ImportValidationError, match="cannot read file"):
        import_sources(store, [str(not_gzip)], ImportOptions())
    assert store.count("pairs") == 0
