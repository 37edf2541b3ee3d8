"""`prefloop import`: read sources, validate every row, then store them atomically.

Atomic mode (the default) validates everything before writing anything: one bad
row and the store is left exactly as it was. With ``skip_invalid`` the valid
rows are stored and the rejected ones are listed in a JSONL report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data.errors import ConfigError, ImportValidationError, RowProblem
from data.gold import store_gold_answers
from data.ingest import ingest, pair_verdicts
from data.readers import DEFAULT_MAX_SOURCE_BYTES, ReadLimits, read_source
from data.shapes import (
    FORMATS,
    PairRecord,
    Record,
    RowError,
    ShapeConfig,
    describe_unknown,
    detect_format,
    located,
    parse_row,
)
from data.store import PreferenceStore
from data.tool_import import (
    detect_tool_format,
    ingest_votes,
    open_tool_source,
    tool_parser,
    with_votes_as_verdicts,
)
from data.tool_records import TOOL_FORMATS, ToolConfig, ToolPair

IMPORT_FORMATS = (*FORMATS, *TOOL_FORMATS)
LABEL_MODES = ("use", "as-reference")


@dataclass(frozen=True)
class ImportOptions:
    """How `prefloop import` treats its sources."""

    format: str = "auto"  # auto, trl, hh, pairs, responses, unpaired, labelstudio, argilla
    skip_invalid: bool = False  # store valid rows, report the rest, instead of all-or-nothing
    report_path: str | None = None  # where rejected rows go with skip_invalid
    who: str = "import"  # recorded as the labeller of imported labels
    labels: str = "use"  # use: labels train and outrank the judge; as-reference: measure only
    gold: bool = False  # the verdicts are gold answers (data.gold): never labels, never trained on
    split: str | None = None  # split of a Hugging Face dataset (default: train, else the first)
    shape: ShapeConfig = field(default_factory=ShapeConfig)  # caps on texts, turns, responses
    read: ReadLimits = field(default_factory=ReadLimits)  # caps on raw lines and JSON nesting
    max_problems: int = 50  # how many problems an atomic failure lists
    max_source_bytes: int = DEFAULT_MAX_SOURCE_BYTES  # refuse larger files (after decompression)
    progress: bool = False
    tool: ToolConfig = field(default_factory=ToolConfig)  # Label Studio / Argilla projects


@dataclass
class ImportReport:
    imported_pairs: int = 0
    labels: int = 0
    reference_labels: int = 0
    gold_answers: int = 0
    feedback: int = 0  # unpaired thumbs up/down rows (prompt/completion/label files)
    duplicates: int = 0
    duplicate_labels: int = 0
    invalid: int = 0
    rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    report_path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported_pairs": self.imported_pairs,
            "labels": self.labels,
            "reference_labels": self.reference_labels,
            "gold_answers": self.gold_answers,
            "feedback": self.feedback,
            "duplicates": self.duplicates,
            "duplicate_labels": self.duplicate_labels,
            "invalid": self.invalid,
            "rows": self.rows,
            "report": self.report_path,
            "problems": [p.as_dict() for p in self.problems[:20]],
        }


def parse_sources(
    sources: Sequence[str], options: ImportOptions
) -> tuple[list[Record | ToolPair], list[RowProblem], int]:
    """Records from every valid row, and a located problem for every invalid one."""
    if options.format not in IMPORT_FORMATS:
        raise ConfigError(f"--format {options.format!r} is not one of {', '.join(IMPORT_FORMATS)}")
    records: list[Record | ToolPair] = []
    problems: list[RowProblem] = []
    rows = 0
    for source in sources:
        fmt = None if options.format == "auto" else options.format
        tool = open_tool_source(
            source,
            options.format,
            options.tool,
            options.shape,
            split=options.split,
            limits=options.read,
            max_bytes=options.max_source_bytes,
        )
        parse_tool = tool.parse if tool else None
        fmt = tool.format if tool else fmt
        for raw in tqdm(
            tool.rows
            if tool
            else read_source(
                source,
                split=options.split,
                max_bytes=options.max_source_bytes,
                limits=options.read,
            ),
            desc=Path(source).name,
            unit=" rows",
            disable=not options.progress,
        ):
            rows += 1
            if raw.problem is not None:
                problems.append(raw.problem)
                continue
            assert raw.value is not None
            row_format = fmt or detect_tool_format(raw.value) or detect_format(raw.value)
            if row_format is None:
                problems.append(
                    RowProblem(raw.source, raw.line, None, describe_unknown(raw.value), raw.unit)
                )
                continue
            fmt = fmt or row_format  # the first readable row fixes the shape for the file
            if parse_tool is None and fmt in TOOL_FORMATS:
                parse_tool = tool_parser(fmt, options.tool, options.shape)
            try:
                if parse_tool is not None:
                    records.append(parse_tool(raw.value))
                else:
                    records.append(parse_row(raw.value, fmt, options.shape))
            except RowError as exc:
                problems.append(located(raw.source, raw.line, raw.unit, exc))
            if problems and not options.skip_invalid and len(problems) >= options.max_problems:
                return records, problems, rows
    return records, problems, rows


def _gold_answers(records: Sequence[Record]) -> dict[str, str]:
    """pair_id -> the one verdict each pair of a gold import gives (every pair needs one)."""
    answers: dict[str, str] = {}
    for pair_id, verdicts in pair_verdicts(records).items():
        if len(verdicts) != 1:
            raise ConfigError(
                f"a gold import needs exactly one verdict per pair; pair {pair_id} has "
                f"{len(verdicts) or 'none'} ({', '.join(sorted(verdicts)) or 'no label'}): give every "
                "row a label (or chosen/rejected, or scores), once"
            )
        (answers[pair_id],) = verdicts
    return answers


def _without_verdicts(records: Sequence[Record]) -> list[Record]:
    """The records as unlabelled pairs (a gold answer is not a label)."""
    out: list[Record] = []
    for record in records:
        if isinstance(record, PairRecord):
            out.append(replace(record, verdict=None, confidence=None))
        else:
            pairs = [replace(pair, verdict=None, confidence=None) for pair in record.pairs]
            out.append(replace(record, pairs=pairs))
    return out


def import_sources(
    store: PreferenceStore, sources: Sequence[str], options: ImportOptions
) -> ImportReport:
    """Validate then store; raise ImportValidationError (store untouched) in atomic mode."""
    records, problems, rows = parse_sources(sources, options)
    if problems and not options.skip_invalid:
        raise ImportValidationError(problems)
    origin = ",".join(Path(s).name for s in sources)
    if options.labels not in LABEL_MODES:
        raise ConfigError(f"--labels {options.labels!r} is not one of {', '.join(LABEL_MODES)}")
    if options.gold and options.labels == "as-reference":
        raise ConfigError("--gold and --labels as-reference exclude each other; choose one")
    gold = 0
    if options.gold:
        records = with_votes_as_verdicts(records)
        answers = _gold_answers(records)
        with store.transaction() as cur:
            result = ingest(store, _without_verdicts(records), origin=origin, cursor=cur)
            gold = store_gold_answers(
                store, answers, who=origin if options.who == "import" else options.who, cursor=cur
            )
    else:
        with store.transaction() as cur:
            result = ingest_votes(  # annotators' votes from a tool: human labels, who they are
                store,
                records,
                origin=origin,
                who=options.who,
                as_reference=options.labels == "as-reference",
                cursor=cur,
            )
    report = ImportReport(
        gold_answers=gold,
        imported_pairs=result.imported_pairs,
        labels=result.labels,
        reference_labels=result.reference_labels,
        feedback=result.feedback,
        duplicates=result.duplicates,
        duplicate_labels=result.duplicate_labels,
        invalid=len(problems),
        rows=rows,
        problems=problems,
    )
    if problems:
        path = Path(options.report_path or f"{Path(store.path).with_suffix('')}.rejected.jsonl")
        # backslashreplace: a file name with undecodable bytes cannot stop the report
        with path.open("w", encoding="utf-8", errors="backslashreplace") as handle:
            for problem in problems:
                handle.write(json.dumps(problem.as_dict(), ensure_ascii=False) + "\n")
        report.report_path = str(path)
    return report
