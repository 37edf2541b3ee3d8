"""The preference store: DuckDB schema, import, export and statistics.

`data` imports no other prefloop package; everything else stands on it.
"""

from data.errors import (
    ConfigError,
    ImportValidationError,
    JudgeError,
    PrefloopError,
    RowProblem,
    StoreError,
    StoreLockedError,
    TrainingError,
)
from data.store import PairView, PreferenceStore, default_db_path

__all__ = [
    "ConfigError",
    "ImportValidationError",
    "JudgeError",
    "PairView",
    "PreferenceStore",
    "PrefloopError",
    "RowProblem",
    "StoreError",
    "StoreLockedError",
    "TrainingError",
    "default_db_path",
]
