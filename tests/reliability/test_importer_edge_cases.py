"""Importer edge cases that used to end in a traceback or pass silently (issue 14, class 7).

Each case is a real file imported through the real CLI (`prefloop import`), atomically
and with `--skip-invalid`: atomically it fails with one located line and stores nothing;
with `--skip-invalid` the good row is stored and the bad one is in the report, named.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from data.errors import PrefloopError
from data.store import PreferenceStore

GOOD = {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}
GOOD_LINE = json.dumps(GOOD)
DEEP = "[" * 100_000 + "]" * 100_000

# name, file suffix, bad row as written, the field named, words in the message
CASES = [
    (
        "deep nesting",
        "jsonl",
        '{"prompt": ' + DEEP + ', "chosen": "a", "rejected": "b"}',
        None,
        "nested too deeply",
    ),
    (
        "nesting past the cap",
        "jsonl",
        '{"prompt": "p", "chosen": "a", "rejected": "b", "meta": ' + "[" * 40 + "]" * 40 + "}",
        "meta",
        "nested more than 32 levels",
    ),
    (
        "lone surrogate",
        "jsonl",
        '{"prompt": "hi \\ud800 there", "chosen": "a", "rejected": "b"}',
        "prompt",
        "lone surrogate",
    ),
    (
        "lone surrogate in a key",
        "jsonl",
        '{"prompt": "p", "chosen": "a", "rejected": "b", "x\\udc00": 1}',
        "x\\udc00",
        "lone surrogate",
    ),
    (
        "NaN score",
        "jsonl",
        '{"prompt": "p", "responses": ["a", "b"], "scores": [NaN, 1]}',
        "scores[0]",
        "finite",
    ),
    (
        "infinite score",
        "jsonl",
        '{"prompt": "p", "responses": ["a", "b"], "scores": [1, Infinity]}',
        "scores[1]",
        "finite",
    ),
    (
        "score as text 'nan'",
        "jsonl",
        '{"prompt": "p", "responses": ["a", "b"], "scores": ["nan", 1]}',
        "scores[0]",
        "finite",
    ),
    (
        "duplicate key",
        "jsonl",
        '{"prompt": "p", "chosen": "a", "rejected": "b", "chosen": "c"}',
        "chosen",
        "more than once",
    ),
    (
        "duplicate key nested",
        "jsonl",
        '{"prompt": [{"role": "user", "content": "x", "content": "y"}], "chosen": "a", "rejected": "b"}',
        "prompt.content",
        "more than once",
    ),
    (
        "system-only prompt",
        "jsonl",
        json.dumps(
            {"prompt": [{"role": "system", "content": "be nice"}], "chosen": "a", "rejected": "b"}
        ),
        "prompt",
        "no user message",
    ),
    (
        "system-only shared prefix",
        "jsonl",
        json.dumps(
            {
                "chosen": [
                    {"role": "system", "content": "s"},
                    {"role": "assistant", "content": "a"},
                ],
                "rejected": [
                    {"role": "system", "content": "s"},
                    {"role": "assistant", "content": "b"},
                ],
            }
        ),
        "prompt",
        "no user message",
    ),
    (
        "zero-width space",
        "jsonl",
        json.dumps({"prompt": "p", "chosen": "Paris", "rejected": "Par\u200bis"}),
        "rejected",
        "invisible",
    ),
    (
        "byte-order mark inside",
        "jsonl",
        json.dumps({"prompt": "p", "response_a": "\ufeffyes", "response_b": "yes"}),
        "response_b",
        "invisible",
    ),
    (
        "soft hyphen",
        "jsonl",
        json.dumps({"prompt": "p", "chosen": "co\u00adoperate", "rejected": "cooperate"}),
        "rejected",
        "invisible",
    ),
    (
        "NFC vs NFD",
        "jsonl",
        json.dumps({"prompt": "p", "chosen": "caf\u00e9", "rejected": "cafe\u0301"}),
        "rejected",
        "invisible",
    ),
    (
        "invisible duplicate in a list",
        "jsonl",
        json.dumps({"prompt": "p", "responses": ["ok", "o\u200dk"]}),
        "responses",
        "invisible",
    ),
    (
        "too many turns",
        "jsonl",
        json.dumps(
            {"prompt": [{"role": "user", "content": "x"}] * 300, "chosen": "a", "rejected": "b"}
        ),
        "prompt",
        "turn limit",
    ),
    (
        "prompt too long across turns",
        "jsonl",
        json.dumps(
            {
                "prompt": [{"role": "user", "content": "x" * 150_000}] * 3,
                "chosen": "a",
                "rejected": "b",
            }
        ),
        "prompt",
        "across its turns",
    ),
    (
        "too many responses",
        "jsonl",
        json.dumps({"prompt": "p", "responses": [f"r{i}" for i in range(300)]}),
        "responses",
        "over the 256 limit",
    ),
    (
        "deep nesting in a .json array",
        "json",
        '{"prompt": "p", "chosen": "a", "rejected": "b", "m": ' + "[" * 40 + "]" * 40 + "}",
        "m",
        "nested more than",
    ),
    (
        "duplicate key in a .json array",
        "json",
        '{"prompt": "p", "prompt": "q", "chosen": "a", "rejected": "b"}',
        "prompt",
        "more than once",
    ),
    (
        "surrogate in a .json array",
        "json",
        '{"prompt": "\\udfff", "chosen": "a", "rejected": "b"}',
        "prompt",
        "lone surrogate",
    ),
]


def _good_line(bad: str) -> str:
    """A good first row of the bad row's shape (the first row fixes a file's shape)."""
    if '"responses"' in bad:
        return json.dumps({"prompt": "Name a colour.", "responses": ["red", "blue"]})
    if '"response_a"' in bad:
        return json.dumps({"prompt": "Name a colour.", "response_a": "red", "response_b": "blue"})
    return GOOD_LINE


def _write(tmp: Path, suffix: str, bad: str) -> Path:
    path = tmp / f"rows.{suffix}"
    if suffix == "jsonl":
        path.write_text(_good_line(bad) + "\n" + bad + "\n", encoding="utf-8")
    else:
        path.write_text("[" + _good_line(bad) + ",\n" + bad + "]", encoding="utf-8")
    return path


def _run(*args: str) -> tuple[int, str]:
    """Exit code and output of `prefloop ARGS`; a traceback (any other exception) fails."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    out = result.output
    if isinstance(result.exception, PrefloopError):  # `prefloop` prints it as one line
        return 1, out + f"Error: {result.exception}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}"
    )
    return result.exit_code, out


@pytest.mark.parametrize(
    ("name", "suffix", "bad", "field", "words"), CASES, ids=[c[0] for c in CASES]
)
def test_edge_case_is_a_located_problem(
    tmp_path: Path, name: str, suffix: str, bad: str, field: str | None, words: str
) -> None:
    source = _write(tmp_path, suffix, bad)
    db = str(tmp_path / "s.duckdb")
    code, out = _run("import", str(source), "--db", db)
    assert code != 0, f"{name}: imported although the row is bad"
    where = f"{source}:2" if suffix == "jsonl" else f"{source}: row 2"
    assert where in out and words in out, out
    if field is not None:
        assert f"field '{field}'" in out, out
    with PreferenceStore(db) as store:
        assert store.count("pairs") == 0

    report = tmp_path / "rejected.jsonl"
    code, out = _run("import", str(source), "--db", db, "--skip-invalid", "--report", str(report))
    assert code == 0, out
    with PreferenceStore(db) as store:
        assert store.count("pairs") == 1
    (problem,) = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert problem["line"] == 2 and words in problem["message"]
    assert problem["field"] == field


def test_csv_with_byte_order_mark_reads_its_first_column(tmp_path: Path) -> None:
    source = tmp_path / "excel.csv"
    source.write_bytes(b"\xef\xbb\xbfprompt,chosen,rejected\r\nWhat is 2 + 2?,4,5\r\n")
    db = str(tmp_path / "s.duckdb")
    code, out = _run("import", str(source), "--db", db)
    assert code == 0, out
    with PreferenceStore(db) as store:
        assert store.count("pairs") == 1
        ((text,),) = store.query("SELECT text FROM prompts")
        assert "\ufeff" not in text


def test_jsonl_with_byte_order_mark_reads_its_first_line(tmp_path: Path) -> None:
    source = tmp_path / "bom.jsonl"
    source.write_bytes(b"\xef\xbb\xbf" + GOOD_LINE.encode() + b"\n")
    code, out = _run("import", str(source), "--db", str(tmp_path / "s.duckdb"))
    assert code == 0, out


def test_csv_cell_with_repeated_key_names_the_column(tmp_path: Path) -> None:
    source = tmp_path / "conv.csv"
    cell = '"[{""role"": ""user"", ""role"": ""user"", ""content"": ""hi""}]"'
    source.write_text(f"prompt,chosen,rejected\n{cell},a,b\nok,a,b\n", encoding="utf-8")
    code, out = _run("import", str(source), "--db", str(tmp_path / "s.duckdb"))
    assert code != 0 and f"{source}:2: field 'prompt.role'" in out, out


def test_identical_texts_apart_from_invisibles_are_kept_as_written(tmp_path: Path) -> None:
    """The normalisation is for comparison only: a distinct pair keeps its exact text."""
    row = {"prompt": "p", "chosen": "caf\u00e9\u200b!", "rejected": "cafe"}
    source = tmp_path / "ok.jsonl"
    source.write_text(json.dumps(row) + "\n", encoding="utf-8")
    db = str(tmp_path / "s.duckdb")
    code, out = _run("import", str(source), "--db", db)
    assert code == 0, out
    with PreferenceStore(db) as store:
        texts = {r[0] for r in store.query("SELECT text FROM responses")}
    assert "caf\u00e9\u200b!" in texts


def count_cases() -> int:
    """Cases tried here (README's reliability table): the table plus the four tests below it."""
    return len(CASES) + 4
