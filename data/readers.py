"""Read import sources into raw rows that remember where they came from.

A source is a file (JSONL, JSON, CSV, Parquet, or any of them gzipped), a
Hugging Face `save_to_disk` folder, or a hub dataset id. Each row comes back as a
`RawRow` holding either a dict or the `RowProblem` that stopped it being one, so
the importer can report every bad row with its file and line.

JSON is read strictly (`ReadLimits`): a JSONL line over `max_line_bytes` is refused
before it is decoded or parsed (JSONL is streamed, so memory stays near one line),
objects nested deeper than `max_depth`, a key given twice in one object, and a lone
UTF-16 surrogate escape (``"\\ud800"``) are each a located problem. A UTF-8 byte-order
mark at the start of a JSONL, JSON or CSV file is dropped.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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


@dataclass(frozen=True)
class ReadLimits:
    """Limits on raw rows, applied before a row's shape is looked at."""

    max_line_bytes: int = 8 * 1024**2  # a longer JSONL line is refused unparsed (bounds memory)
    max_depth: int = 32  # arrays/objects inside each other, the row object counting 1
    max_json_bytes: int = 512 * 1024**2  # a .json/.csv file is parsed whole: use JSONL past this


def read_source(
    source: str,
    *,
    split: str | None = None,
    max_bytes: int = DEFAULT_MAX_SOURCE_BYTES,
    limits: ReadLimits = ReadLimits(),  # noqa: B008 - frozen, shared safely
) -> Iterator[RawRow]:
    """Yield the rows of one source; raise ImportValidationError if it cannot be read at all.

    A file (after decompression) over `max_bytes` is refused before it fills memory:
    a gzip bomb stops at the cap. JSONL is streamed line by line; JSON and CSV files are
    parsed whole, so they are also held to `limits.max_json_bytes`.
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
    except OSError as exc:
        _fail(source, f"cannot read file: {exc}")
    if kind in (".jsonl", ".ndjson"):
        yield from _read_jsonl(source, path, compressed, max_bytes, limits)
        return
    if kind in (".json", ".csv") and max_bytes > limits.max_json_bytes:
        max_bytes = limits.max_json_bytes
    try:
        with gzip.open(path) if compressed else path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        _fail(source, f"cannot read file: {exc}")
    if len(raw) > max_bytes:
        hint = (
            " (JSON and CSV files are read whole: convert it to JSONL)"
            if kind
            in (
                ".json",
                ".csv",
            )
            else ""
        )
        _fail(source, f"decompresses to more than the {max_bytes}-byte import limit{hint}")
    if kind == ".json":
        yield from _read_json(source, raw.removeprefix(codecs.BOM_UTF8), limits)
    elif kind == ".csv":
        yield from _read_csv(source, raw.removeprefix(codecs.BOM_UTF8), limits)
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


def _read_jsonl(
    source: str, path: Path, compressed: bool, max_bytes: int, limits: ReadLimits
) -> Iterator[RawRow]:
    """Stream lines; an over-long line is skipped unread (a located problem), not held."""
    total = 0
    cap = limits.max_line_bytes
    try:
        with gzip.open(path) if compressed else path.open("rb") as handle:
            readline = handle.readline
            number = 0
            while True:
                number += 1
                line_bytes = readline(cap + 1)  # C-level; never more than the cap is held
                length = len(line_bytes)
                if length > cap and not line_bytes.endswith(b"\n"):
                    line_bytes, length = b"", length + _skip_line(handle)
                total += length
                if total > max_bytes:
                    _fail(source, f"decompresses to more than the {max_bytes}-byte import limit")
                if not length:
                    return
                if number == 1:
                    line_bytes = line_bytes.removeprefix(codecs.BOM_UTF8)
                if length > cap:
                    yield _line_too_long(source, number, length, limits)
                    continue
                if not line_bytes.strip():
                    continue
                try:
                    text = line_bytes.decode("utf-8")
                except UnicodeDecodeError:
                    yield RawRow(source, number, "line", None, _decode(source, number, line_bytes))  # type: ignore[arg-type]
                    continue
                yield _json_row(source, number, "line", text, limits)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        _fail(source, f"cannot read file: {exc}")


def _skip_line(handle: IO[bytes]) -> int:
    """Read on to the end of an over-long line in chunks, keeping none of it; bytes read."""
    skipped = 0
    while True:
        chunk = handle.readline(1024**2)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped


def _line_too_long(source: str, number: int, length: int, limits: ReadLimits) -> RawRow:
    problem = RowProblem(
        source,
        number,
        None,
        f"line is {length} bytes, over the {limits.max_line_bytes}-byte line limit; "
        "split the row, or raise ReadLimits.max_line_bytes",
    )
    return RawRow(source, number, "line", None, problem)


class _JSONRowError(Exception):
    """A JSON value that parses but may not be imported; field and message as in RowProblem."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class _Repeated(dict):  # type: ignore[type-arg]
    """An object in which some key was given more than once (`repeated` names it)."""

    repeated = ""


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class _Checks:
    """Which walks a parsed value needs (each is skipped when the text rules it out)."""

    repeated: bool
    depth: bool
    surrogates: bool

    def any(self) -> bool:
        return self.repeated or self.depth or self.surrogates


_repeats_seen = [0]  # grows whenever any object repeats a key (a hint, never reset)


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    seen: set[str] = set()
    marked = _Repeated(value)
    marked.repeated = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    _repeats_seen[0] += 1
    return marked


_DECODER = json.JSONDecoder(object_pairs_hook=_no_repeats)  # one decoder: made once, not per row
_NO_CHECKS = _Checks(repeated=False, depth=False, surrogates=False)


def parse_json(text: str, limits: ReadLimits) -> tuple[Any, _Checks]:
    """`json.loads` keeping repeated keys visible, and the checks the value still needs.

    Raises json.JSONDecodeError, or _JSONRowError for nesting the parser cannot follow.
    """
    before = _repeats_seen[0]
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise _JSONRowError(
            None,
            f"is nested too deeply for the JSON parser (only {limits.max_depth} levels of "
            "arrays/objects inside each other are accepted); flatten the row",
        ) from None
    repeated = _repeats_seen[0] != before  # another thread's repeat only costs a walk
    depth = text.count("[") + text.count("{") > limits.max_depth
    surrogates = "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None
    if not (repeated or depth or surrogates):
        return value, _NO_CHECKS
    return value, _Checks(repeated, depth, surrogates)


def _safe(text: str) -> str:
    """A name fit to print and to write as UTF-8: lone surrogates shown as escapes."""
    return text if not _SURROGATE.search(text) else ascii(text)[1:-1]


def check_value(value: Any, checks: _Checks, limits: ReadLimits) -> None:
    """Raise _JSONRowError naming the top-level field that holds a repeated key, nesting
    past `limits.max_depth` or a lone surrogate. Iterative: deep values cannot overflow."""
    if not checks.any():
        return
    items = value.items() if isinstance(value, dict) else [(None, value)]
    base = 2 if isinstance(value, dict) else 1
    if isinstance(value, _Repeated):
        raise _JSONRowError(_safe(value.repeated), _REPEATED)
    for key, item in items:
        field = None if key is None else _safe(str(key))
        if checks.surrogates and key is not None and _SURROGATE.search(str(key)):
            raise _JSONRowError(field, "is a field name with a lone surrogate; rename it")
        stack = [(item, base)]
        while stack:
            node, depth = stack.pop()
            if isinstance(node, str):
                if checks.surrogates and (found := _SURROGATE.search(node)):
                    raise _JSONRowError(
                        field,
                        f"holds a lone surrogate {ascii(found.group())[1:-1]}, which is not "
                        "Unicode text; write the character itself, or a matching "
                        "\\ud8xx\\udcxx pair",
                    )
                continue
            if not isinstance(node, dict | list):
                continue
            if depth > limits.max_depth:
                raise _JSONRowError(
                    field,
                    f"is nested more than {limits.max_depth} levels deep (arrays/objects "
                    "inside each other); flatten it, or raise ReadLimits.max_depth",
                )
            if isinstance(node, _Repeated):
                inner = _safe(node.repeated)
                raise _JSONRowError(inner if field is None else f"{field}.{inner}", _REPEATED)
            if isinstance(node, dict):
                stack.extend((k, depth + 1) for k in node if checks.surrogates)
                stack.extend((child, depth + 1) for child in node.values())
            else:
                stack.extend((child, depth + 1) for child in node)


_REPEATED = "is given more than once in one JSON object; keep one (which one counts is not defined)"


def _json_row(
    source: str,
    number: int,
    unit: str,
    text: str,
    limits: ReadLimits = ReadLimits(),  # noqa: B008
) -> RawRow:
    try:
        value, checks = parse_json(text, limits)
        if checks is not _NO_CHECKS:
            check_value(value, checks, limits)
    except json.JSONDecodeError as exc:
        problem = RowProblem(
            source, number, None, f"invalid JSON: {exc.msg} at column {exc.colno}", unit
        )
        return RawRow(source, number, unit, None, problem)
    except _JSONRowError as exc:
        return RawRow(
            source, number, unit, None, RowProblem(source, number, exc.field, exc.message, unit)
        )
    return _object_row(source, number, unit, value)


def _object_row(source: str, number: int, unit: str, value: Any) -> RawRow:
    if not isinstance(value, dict):
        problem = RowProblem(
            source, number, None, f"expected a JSON object, got {type(value).__name__}", unit
        )
        return RawRow(source, number, unit, None, problem)
    return RawRow(source, number, unit, value)


def _read_json(source: str, raw: bytes, limits: ReadLimits) -> Iterator[RawRow]:
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
        value, checks = parse_json(text, limits)
    except json.JSONDecodeError as exc:
        raise ImportValidationError(
            [RowProblem(source, exc.lineno, None, f"invalid JSON: {exc.msg} at column {exc.colno}")]
        ) from None
    except _JSONRowError as exc:
        _fail(source, f"the file {exc.message}")
    if isinstance(value, dict):
        if isinstance(value, _Repeated):
            _fail(source, f"top-level key {_safe(value.repeated)!r} {_REPEATED}")
        # {"data": [...]} / {"rows": [...]} wrappers are common; a lone object is one row.
        lists = [v for v in value.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
        value = lists[0] if len(value) == 1 and lists else [value]
    if not isinstance(value, list):
        _fail(source, f"expected a JSON array of objects, got {type(value).__name__}")
    for number, item in enumerate(value, start=1):
        try:
            check_value(item, checks, limits)
        except _JSONRowError as exc:
            problem = RowProblem(source, number, exc.field, exc.message, "row")
            yield RawRow(source, number, "row", None, problem)
            continue
        yield _object_row(source, number, "row", item)


def _read_csv(source: str, raw: bytes, limits: ReadLimits) -> Iterator[RawRow]:
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
            cells, problem = _csv_cells(source, number, row, limits)
            yield RawRow(source, number, "line", None if problem else cells, problem)
    except csv.Error as exc:
        raise ImportValidationError(
            [RowProblem(source, reader.line_num, None, f"malformed CSV: {exc}")]
        ) from None


def _csv_cells(
    source: str, number: int, row: dict[str, str | None], limits: ReadLimits
) -> tuple[dict[str, Any], RowProblem | None]:
    cells: dict[str, Any] = {}
    for column, value in row.items():
        try:
            cells[column] = _csv_cell(value, limits)
        except _JSONRowError as exc:
            field = column if exc.field is None else f"{column}.{exc.field}"
            return cells, RowProblem(source, number, field, exc.message)
    return cells, None


def _csv_cell(value: str | None, limits: ReadLimits) -> Any:
    """Cells holding JSON lists (conversations, response lists) are decoded; the rest stay text.

    A cell that parses but nests too deeply, repeats a key or holds a lone surrogate raises
    _JSONRowError (the row is refused); one that does not parse stays text."""
    if value is not None and value[:1] == "[":
        try:
            parsed, checks = parse_json(value, limits)
            check_value(parsed, checks, limits)
        except json.JSONDecodeError:
            return value
        return parsed
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
