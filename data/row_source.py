"""Rows a statement reads from Python lists: inline VALUES for a handful, Arrow for many.

A single click or one correction is one row: registering an Arrow table for it costs more
than the statement that reads it (about 2 ms a registration on 2 busy cores). Batches of
clicks and imports are thousands of rows, where one Arrow scan is the fast way. Both give
the statement the same named, typed columns, so each caller has one SQL text.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb

INLINE_ROWS = 64  # up to this many rows go inline as VALUES
_ARROW_TYPES = {"VARCHAR": "string", "BOOLEAN": "bool_", "DOUBLE": "float64", "INTEGER": "int32"}
_names = itertools.count()


@contextlib.contextmanager
def row_source(
    cur: duckdb.DuckDBPyConnection, alias: str, columns: dict[str, tuple[str, Sequence[Any]]]
) -> Iterator[tuple[str, list[Any]]]:
    """Yield (a FROM item `alias` with these columns, its positional parameters); `columns`
    maps a name to (SQL type: VARCHAR, BOOLEAN, DOUBLE or INTEGER, values). The parameters
    go where the FROM item stands among the statement's other `?`s."""
    names = list(columns)
    n = len(next(iter(columns.values()))[1]) if columns else 0
    if 0 < n <= INLINE_ROWS:
        cast = ", ".join(f"?::{columns[c][0]}" for c in names)
        values = ", ".join(f"({cast})" for _ in range(n))
        params = [columns[c][1][i] for i in range(n) for c in names]
        yield f"(VALUES {values}) AS {alias}({', '.join(names)})", params
        return
    import pyarrow as pa

    table = pa.table(
        {c: pa.array(list(v), type=getattr(pa, _ARROW_TYPES[t])()) for c, (t, v) in columns.items()}
    )
    name = f"_rows_{next(_names)}"
    cur.register(name, table)
    try:
        yield f"{name} AS {alias}", []
    finally:
        with contextlib.suppress(duckdb.Error):  # an aborted transaction keeps its own error
            cur.unregister(name)
