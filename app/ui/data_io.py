"""Data tab: import an uploaded file (validation errors shown) and export a TRL dataset."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from data.errors import ConfigError, ImportValidationError
from data.store import PreferenceStore

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
PROBLEM_COLUMNS = ["source", "line", "field", "message"]


def import_upload(
    store: PreferenceStore,
    path: str | None,
    fmt: str,
    skip_invalid: bool,
    who: str,
    labels: str = "use",
) -> tuple[str, list[list[Any]]]:
    """(summary markdown, problem rows) for one uploaded file; nothing stored on an atomic
    failure. Rejected rows (with skip_invalid) go to the report next to the store, as from
    `prefloop import`."""
    from data.importer import ImportOptions, import_sources

    if not path:
        raise ConfigError("no file uploaded; choose a .jsonl, .json, .csv or .parquet file first")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"{file.name}: the uploaded file is gone (an upload is deleted after one import, "
            "or after an hour without one); upload it again"
        )
    if file.stat().st_size > MAX_UPLOAD_BYTES:
        raise ConfigError(
            f"{file.name} is {file.stat().st_size // 2**20} MiB, over the "
            f"{MAX_UPLOAD_BYTES // 2**20} MiB upload limit; import it with `prefloop import` instead"
        )
    options = ImportOptions(format=fmt, skip_invalid=skip_invalid, who=who, labels=labels)
    try:
        report = import_sources(store, [str(file)], options)
    except ImportValidationError as exc:
        rows = [_problem_row(p.as_dict(), file.name) for p in exc.problems[:200]]
        return (
            f"**Nothing imported**: {len(exc.problems)} invalid row(s). Fix them, or tick "
            "*skip invalid rows* to import the valid ones.",
            rows,
        )
    rows = [_problem_row(p.as_dict(), file.name) for p in report.problems[:200]]
    summary = (
        f"Imported **{report.imported_pairs}** pairs and **{report.labels}** labels "
        f"({report.duplicates} duplicates skipped, {report.invalid} invalid rows)."
    )
    if report.reference_labels:
        summary += (
            f" **{report.reference_labels}** labels kept as reference only: never trained on, "
            "the pairs are routed like unlabelled ones."
        )
    if report.report_path:
        summary += f" Rejected rows are listed in `{report.report_path}`."
    return summary, rows


def _problem_row(problem: dict[str, Any], shown_name: str) -> list[Any]:
    # the upload's temp path means nothing to the user: show the file's own name
    return [shown_name, problem["line"], problem["field"] or "", problem["message"]]


def export_dataset(store: PreferenceStore, fmt: str, test_fraction: float) -> tuple[str, list[str]]:
    """(summary, files to download): a TRL JSONL export of the aggregated labels."""
    try:
        from data.export import export_pairs
    except ImportError:
        raise ConfigError("export needs data/export.py, which this install lacks") from None
    out = Path(tempfile.mkdtemp(prefix="prefloop-export-")) / f"prefloop-{fmt}.jsonl"
    report = export_pairs(store, out, fmt=fmt, test_fraction=test_fraction)
    summary = (
        f"Exported **{report.train}** train and **{report.test}** test rows "
        f"({report.skipped_ties} ties/both-bad left out)."
    )
    return summary, report.files
