"""Read import sources into raw rows that remember where they came from.

A source is a file (JSONL, JSON, CSV, Parquet, or any of them gzipped), a
Hugging Face `save_to_disk` folder, or a hub dataset id. Each row comes back as a
`RawRow` holding either a dict or the `RowProblem` that stopped it being one, so
the importer can report every bad row with its file and line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.errors import ImportValidationError, RowProblem

TEXT_SUFFIXES = {".jsonl", ".ndjson", ".json", ".csv"}


@dataclass
class RawRow:
    source: str
    line: int
    unit: str  # "line" or "row"
    value: dict[str, Any] | None
    problem: RowProblem | None = None


DEFAULT_MAX_SOURCE_BYTES = 2 * 1024**3


def read_source(
    source: str, *, split: str | None = None, max_bytes: int = DEFAULT_MAX_SOURCE_BYTES
) -> Iterator[RawRow]:
    """Yield the rows of one source; raise ImportValidationError if it cannot be read at all.

    A file (after decompression) over `max_bytes` is refused before it fills memory:
    a gzip bomb stops at the cap.
    """
    path = Path(source)
    if path.is_dir():
        yield from _read_hf_disk(path, split)
        return
    if not path.exists():
        if _looks_like_hub_id(source):
            yield from _read_hf_hub(source, split)
            return
        _fail(source, "no such file or folder")
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    kind = suffixes[-2] if compressed and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    try:
        if not compressed and path.stat().st_size > max_bytes:
            _fail(source, f"is {path.stat().st_size} bytes, over the {max_bytes}-byte import limit")
        with gzip.open(path) if compressed else path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        _fail(source, f"cannot read file: {exc}")
    if len(raw) > max_bytes:
        _fail(source, f"decompresses to more than the {max_bytes}-byte import limit")
    if kind in (".jsonl", ".ndjson"):
        yield from _read_jsonl(source, raw)
    elif kind == ".json":
        yield from _read_json(source, raw)
    elif kind == ".csv":
        yield from _read_csv(source, raw)
    elif kind == ".parquet":
        yield from _read_parquet(source, raw)
    else:
        _fail(
            source,
            f"unknown file type {kind or '(none)'!r}; use .jsonl, .json, .csv or .parquet "
            "(optionally .gz), or a Hugging Face dataset folder",
        )


def _fail(source: str, message: str) -> None:
    raise ImportValidationError([RowProblem(source, None, None, message)])


def _decode(source: str, line: int, data: bytes, unit: str = "line") -> str | RowProblem:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RowProblem(
            source,
            line,
            None,
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {exc.start + 1}); "
            "re-save the file as UTF-8",
            unit,
        )


def _read_jsonl(source: str, raw: bytes) -> Iterator[RawRow]:
    for number, line_bytes in enumerate(raw.split(b"\n"), start=1):
        if not line_bytes.strip():
            continue
        text = _decode(source, number, line_bytes)
        if isinstance(text, RowProblem):
            yield RawRow(source, number, "line", None, text)
            continue
        yield _json_row(source, number, "line", text)


def _json_row(source: str, number: int, unit: str, text: str) -> RawRow:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = RowProblem(
            source, number, None, f"invalid JSON: {exc.msg} at column {exc.colno}", unit
        )
        return RawRow(source, number, unit, None, problem)
    return _object_row(source, number, unit, value)


def _object_row(source: str, number: int, unit: str, value: Any) -> RawRow:
    if not isinstance(value, dict):
        problem = RowProblem(
            source, number, None, f"expected a JSON object, got {type(value).__name__}", unit
        )
        return RawRow(source, number, unit, None, problem)
    return RawRow(source, number, unit, value)


def _read_json(source: str, raw: bytes) -> Iterator[RawRow]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImportValidationError(
            [
                RowProblem(
                    source,
                    raw.count(b"\n", 0, exc.start) + 1,
                    None,
                    f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); re-save the file as UTF-8",
                )
            ]
        ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportValidationError(
            [RowProblem(source, exc.lineno, None, f"invalid JSON: {exc.msg} at column {exc.colno}")]
        ) from None
    if isinstance(value, dict):
        # {"data": [...]} / {"rows": [...]} wrappers are common; a lone object is one row.
        lists = [v for v in value.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
        value = lists[0] if len(value) == 1 and lists else [value]
    if not isinstance(value, list):
        _fail(source, f"expected a JSON array of objects, got {type(value).__name__}")
    for number, item in enumerate(value, start=1):
        yield _object_row(source, number, "row", item)


def _read_csv(source: str, raw: bytes) -> Iterator[RawRow]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        raise ImportValidationError(
            [
                RowProblem(
                    source,
                    raw.count(b"\n", 0, exc.start) + 1,
                    None,
                    f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start - line_start + 1}); "
                    "re-save the file as UTF-8",
                )
            ]
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        _fail(source, "CSV file has no header row")
    try:
        for row in reader:
            number = reader.line_num
            if None in row:
                yield RawRow(
                    source,
                    number,
                    "line",
                    None,
                    RowProblem(source, number, None, "more cells than header columns"),
                )
                continue
            yield RawRow(source, number, "line", {k: _csv_cell(v) for k, v in row.items()})
    except csv.Error as exc:
        raise ImportValidationError(
            [RowProblem(source, reader.line_num, None, f"malformed CSV: {exc}")]
        ) from None


def _csv_cell(value: str | None) -> Any:
    """Cells holding JSON lists (conversations, response lists) are decoded; the rest stay text."""
    if value is not None and value[:1] == "[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _read_parquet(source: str, raw: bytes) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError) as exc:
        _fail(source, f"not a readable Parquet file: {exc}")
    for number, row in enumerate(table.to_pylist(), start=1):
        yield RawRow(source, number, "row", row)


def _rows_from_dataset(source: str, dataset: Any, split: str | None) -> Iterator[RawRow]:
    if hasattr(dataset, "keys"):  # DatasetDict
        names = list(dataset.keys())
        chosen = split or ("train" if "train" in names else names[0])
        if chosen not in names:
            _fail(source, f"no split {chosen!r}; available: {', '.join(names)}")
        dataset = dataset[chosen]
    for number, row in enumerate(dataset, start=1):
        yield RawRow(source, number, "row", dict(row))


def _read_hf_disk(path: Path, split: str | None) -> Iterator[RawRow]:
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(path), f"not a Hugging Face dataset folder (save_to_disk): {exc}")
    yield from _rows_from_dataset(str(path), dataset, split)


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not any(c in source for c in " \\:")
        and "." not in parts[0]
    )


def _read_hf_hub(source: str, split: str | None) -> Iterator[RawRow]:
    import datasets

    try:
        dataset = datasets.load_dataset(source)
    except Exception as exc:  # the hub raises many types (network, auth, missing repo)
        _fail(source, f"not a local file and could not be loaded from the Hugging Face hub: {exc}")
    yield from _rows_from_dataset(source, dataset, split)
