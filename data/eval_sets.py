"""Labelled evaluation files for `prefloop eval --model`: any file `prefloop import` reads.

Each row with a clear a/b verdict becomes one (prompt, chosen, rejected, category) item;
rows without one (ties, both_bad, no label) are counted and left out. The category is the
row's `subset` field (RewardBench's name for it), else `category`, else none. Nothing is
stored: the file is read, checked and handed to the evaluation run. A bad row is an
`ImportValidationError` naming file, line and field, as in an import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from data.errors import ImportValidationError, RowProblem
from data.readers import read_source
from data.shapes import (
    PairRecord,
    ResponsesRecord,
    RowError,
    ShapeConfig,
    describe_unknown,
    detect_format,
    located,
    parse_row,
)

CATEGORY_FIELDS = ("subset", "category")


@dataclass(frozen=True)
class EvalItem:
    messages: list[dict[str, str]]
    chosen: str
    rejected: str
    category: str | None


@dataclass(frozen=True)
class EvalSet:
    items: list[EvalItem]
    rows: int
    undecided: int  # rows whose verdict is not a or b (or that have none)


def read_eval_set(path: str, *, category_field: str | None = None) -> EvalSet:
    """The decided pairs of `path`, with categories; raise on the first bad rows."""
    fields = (category_field,) if category_field else CATEGORY_FIELDS
    items: list[EvalItem] = []
    problems: list[RowProblem] = []
    rows = undecided = 0
    fmt: str | None = None
    for raw in read_source(path):
        rows += 1
        if raw.problem is not None:
            problems.append(raw.problem)
            continue
        assert raw.value is not None
        fmt = fmt or detect_format(raw.value)
        if fmt is None or fmt == "unpaired":
            problems.append(
                RowProblem(raw.source, raw.line, None, describe_unknown(raw.value), raw.unit)
            )
            continue
        try:
            record = parse_row(raw.value, fmt, ShapeConfig())
        except RowError as exc:
            problems.append(located(raw.source, raw.line, raw.unit, exc))
            continue
        category = _category(raw.value, fields)
        pairs = record.pairs if isinstance(record, ResponsesRecord) else [record]
        for pair in pairs:
            assert isinstance(pair, PairRecord)
            if pair.verdict not in ("a", "b"):
                undecided += 1
                continue
            chosen, rejected = (
                (pair.response_1, pair.response_2)
                if pair.verdict == "a"
                else (pair.response_2, pair.response_1)
            )
            items.append(EvalItem(pair.messages, chosen, rejected, category))
    if problems:
        raise ImportValidationError(problems[:50])
    if not items:
        raise ImportValidationError(
            [RowProblem(path, None, None, "has no pair with an a/b verdict to evaluate on")]
        )
    return EvalSet(items, rows, undecided)


def _category(row: dict[str, Any], fields: tuple[str, ...]) -> str | None:
    for name in fields:
        value = row.get(name)
        if value is not None and str(value).strip():
            return str(value).strip()[:200]
    return None
