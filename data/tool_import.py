"""How `prefloop import` reads annotation-tool sources (Label Studio, Argilla) and stores
their votes as human labels.

`open_tool_source` gives the rows of a tool source and the parser for them (an Argilla
dataset folder is recognised by its ``.argilla/settings.json``; a Label Studio export is a
JSON list of tasks, recognised by `detect_tool_format` or forced with ``--format``).
`ingest_votes` stores the pairs, then each annotator's votes as labels with source ``human``
and who = the annotator, in the caller's transaction, through `data.ingest` (and so
through `data.labels.insert_labels`, the one INSERT into labels): the pairs' places in the
human queue are updated as for votes given in the app, and importing the same export twice
adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb

from data.errors import ConfigError
from data.formats_argilla import is_argilla_folder, parse_record, read_layout, read_rows
from data.formats_labelstudio import is_task, layout, parse_task
from data.ingest import IngestResult, ingest
from data.readers import RawRow, ReadLimits, read_source
from data.shapes import Record, RowError, ShapeConfig
from data.store import PreferenceStore
from data.tool_records import ToolConfig, ToolPair, votes_by_annotator

Parser = Callable[[dict[str, Any]], ToolPair]


@dataclass
class ToolSource:
    rows: Iterator[RawRow]
    format: str
    parse: Parser


def detect_tool_format(row: dict[str, Any]) -> str | None:
    if is_task(row):
        return "labelstudio"
    if isinstance(row.get("fields"), dict) and {"responses", "suggestions"} & set(row):
        return "argilla"
    return None


def tool_parser(fmt: str, config: ToolConfig, shape: ShapeConfig) -> Parser:
    """The parser of rows of a tool format found in an ordinary file."""
    if fmt == "labelstudio":
        where = layout(config)
        return lambda row: parse_task(row, where, config, shape)

    def argilla_record(row: dict[str, Any]) -> ToolPair:
        raise RowError(
            "fields",
            "is an Argilla record: import the dataset folder (the one holding "
            ".argilla/settings.json, which says which fields and question to read), not the "
            "records file alone",
        )

    return argilla_record


def open_tool_source(
    source: str,
    fmt: str,
    config: ToolConfig,
    shape: ShapeConfig,
    *,
    split: str | None,
    limits: ReadLimits,
    max_bytes: int,
) -> ToolSource | None:
    """The rows and parser of a tool source; None for any other source."""
    path = Path(source)
    if is_argilla_folder(path):
        if fmt not in ("auto", "argilla"):
            raise ConfigError(
                f"{source} is an Argilla dataset folder; use --format argilla (or auto)"
            )
        where = read_layout(path, config)
        rows = read_rows(path, split=split, limits=limits, max_bytes=max_bytes)
        return ToolSource(rows, "argilla", lambda row: parse_record(row, where, config, shape))
    if fmt == "argilla":
        raise ConfigError(
            f"{source}: --format argilla reads an Argilla dataset folder (`Dataset.to_disk`, or a "
            "downloaded Hub repo) holding .argilla/settings.json"
        )
    if fmt == "labelstudio":
        rows = read_source(source, split=split, max_bytes=max_bytes, limits=limits)
        return ToolSource(rows, "labelstudio", tool_parser("labelstudio", config, shape))
    return None


def with_votes_as_verdicts(records: Iterable[Record | ToolPair]) -> list[Record]:
    """Each tool pair once unlabelled and once per vote with that vote's verdict (for a gold
    import, where the votes are the gold answers)."""
    out: list[Record] = []
    for record in records:
        if isinstance(record, ToolPair):
            out.append(record.pair)
            out += [replace(record.pair, verdict=v.verdict) for v in record.votes]
        else:
            out.append(record)
    return out


def ingest_votes(
    store: PreferenceStore,
    records: Sequence[Record | ToolPair],
    *,
    origin: str,
    who: str,
    as_reference: bool,
    cursor: duckdb.DuckDBPyConnection,
) -> IngestResult:
    """`data.ingest` of the records, then of each annotator's votes (source human, who the
    annotator; with `as_reference`, reference labels under the annotator's name)."""
    plain, votes = votes_by_annotator(records)
    result = ingest(store, plain, origin=origin, who=who, as_reference=as_reference, cursor=cursor)
    for annotator, pairs in sorted(votes.items()):
        voted = ingest(
            store,
            pairs,
            origin=origin,
            who=annotator,
            source="human",
            as_reference=as_reference,
            cursor=cursor,
        )
        result.labels += voted.labels
        result.duplicate_labels += voted.duplicate_labels
        result.reference_labels += voted.reference_labels
    return result
