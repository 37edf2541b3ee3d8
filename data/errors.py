"""Typed errors shared by every prefloop package.

Library code raises these with the fix in the message; only the edges (CLI, UI)
turn them into exit codes or `gr.Error`.
"""

from __future__ import annotations


class PrefloopError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""


class ConfigError(PrefloopError):
    """A bad option, flag or config file value."""


class StoreError(PrefloopError):
    """The preference store cannot do what was asked."""


class StoreLockedError(StoreError):
    """Another process holds the store's write lock."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path  # the store; the CLI sends its command to a serving process there


class ImportValidationError(PrefloopError):
    """One or more input rows are invalid; each problem names file, line and field."""

    def __init__(self, problems: list[RowProblem]):
        self.problems = problems
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(f"{first}{more}; nothing was imported")


class RowProblem:
    """Where an input row is wrong and why; str() is the one-line message users see."""

    __slots__ = ("source", "line", "field", "message", "unit")

    def __init__(
        self, source: str, line: int | None, field: str | None, message: str, unit: str = "line"
    ):
        self.source = source
        self.line = line  # 1-based line (text formats) or row number (JSON arrays, Parquet)
        self.field = field
        self.message = message
        self.unit = unit

    def __str__(self) -> str:
        if self.line is None:
            where = self.source
        elif self.unit == "line":
            where = f"{self.source}:{self.line}"
        else:
            where = f"{self.source}: {self.unit} {self.line}"
        field = f" field '{self.field}':" if self.field else ""
        return f"{where}:{field} {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "line": self.line,
            "unit": self.unit,
            "field": self.field,
            "message": self.message,
        }


class JudgeError(PrefloopError):
    """The LLM judge endpoint or its configuration failed."""


class TrainingError(PrefloopError):
    """A training run could not start or failed."""
