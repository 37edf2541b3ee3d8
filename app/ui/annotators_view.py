"""The per-annotator section of the Dashboard (admins): the table, two plots, a CSV.

The numbers come from `data.annotator_stats`. Annotator names are content (a label's
`who` can come from any script or import), so every cell goes through
`app.ui.render.plain`: the table is our own Markdown, the names in it are text. No Gradio
here; `tab_annotators.py` lays it out.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from app.ui.dashboard import empty_note, new_figure
from app.ui.render import plain
from data.annotator_stats import AnnotatorRow, Rate, annotator_table, labels_by_hour, write_csv
from data.gold import read_gold_config
from data.store import PreferenceStore

COLUMNS = (
    "annotator",
    "labels",
    "today",
    "per hour",
    "median s (lease→label)",
    "vs other humans",
    "vs gold",
    "vs judge",
    "tie",
    "both bad",
    "skip",
    "left side (position bias)",
    "undo",
    "flag",
)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _rate(rate: Rate) -> str:
    if not rate.n:
        return "—"
    low, high = rate.interval or (0.0, 0.0)
    return f"{rate.rate:.0%} of {rate.n} ({low:.0%}–{high:.0%})"


def table_markdown(rows: list[AnnotatorRow], min_accuracy: float) -> str:
    if not rows:
        return "*No human labels yet: the per-annotator table fills as annotators label.*"
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [
            plain(r.annotator),
            str(r.labels),
            str(r.today),
            "—" if r.per_hour is None else f"{r.per_hour:g}",
            "—" if r.median_seconds is None else f"{r.median_seconds:.1f}",
            _rate(r.vs_majority),
            _rate(r.vs_gold),
            _rate(r.vs_judge),
            _pct(r.tie_rate),
            _pct(r.both_bad_rate),
            _pct(r.skip_rate),
            _rate(r.left),
            _pct(r.undo_rate),
            f"**gold accuracy under {min_accuracy:.0%}**" if r.gold_flag else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    flagged = [plain(r.annotator) for r in rows if r.gold_flag]
    if flagged:
        lines += [
            "",
            f"Flagged: {', '.join(flagged)}. Export without their labels with "
            f"`prefloop export --min-annotator-gold-accuracy {min_accuracy:g}`.",
        ]
    lines += [
        "",
        "Rates give their count and 95% interval. *Left side*: share of A/B verdicts for the "
        "response shown on the left (0.5 = no position bias).",
    ]
    return "\n".join(lines)


def labels_plot(store: PreferenceStore):  # noqa: ANN201 - matplotlib types stay inside
    series = labels_by_hour(store)
    fig, ax = new_figure("Human labels over time per annotator (cumulative)")
    if not series:
        empty_note(ax, "no human labels yet")
        return fig
    hours = {t for points in series.values() for t, _ in points}
    if len(hours) < 2:
        names = sorted(series)
        ax.bar(range(len(names)), [sum(n for _, n in series[w]) for w in names], color="#4c72b0")
        ax.set_xticks(range(len(names)), [w[:16] for w in names], rotation=30, fontsize=8)
        ax.set_title("Human labels per annotator (all in the same hour)", fontsize=11)
        return fig
    for who, points in sorted(series.items()):
        total, xs, ys = 0, [], []
        for t, n in points:
            total += n
            xs.append(t)
            ys.append(total)
        ax.step(xs, ys, where="post", label=who[:16], marker="o", markersize=3)
    ax.set_ylabel("labels")
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    return fig


def agreement_plot(rows: list[AnnotatorRow]):  # noqa: ANN201
    fig, ax = new_figure("Agreement per annotator (95% intervals)")
    kinds = [("vs_majority", "other humans"), ("vs_gold", "gold"), ("vs_judge", "judge")]
    shown = [r for r in rows if any(getattr(r, k).n for k, _ in kinds)]
    if not shown:
        empty_note(ax, "no overlap, gold or judge labels to compare with yet")
        return fig
    for offset, (kind, name) in zip((-0.2, 0.0, 0.2), kinds, strict=True):
        xs, ys, low, high = [], [], [], []
        for i, row in enumerate(shown):
            rate: Rate = getattr(row, kind)
            if rate.n and rate.rate is not None and rate.interval is not None:
                xs.append(i + offset)
                ys.append(rate.rate)
                low.append(rate.rate - rate.interval[0])
                high.append(rate.interval[1] - rate.rate)
        if xs:
            ax.errorbar(xs, ys, yerr=[low, high], fmt="o", capsize=3, label=name)
    ax.set_xticks(range(len(shown)), [r.annotator[:16] for r in shown], rotation=30, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("agreement")
    ax.legend(fontsize=7)
    return fig


_KEEP_CSV = 20  # folders of earlier downloads kept (Gradio copies each file when sent)


def _csv_folder() -> Path:
    """A new folder for this download under one per-process folder; the oldest go."""
    root = Path(tempfile.gettempdir()) / f"prefloop-annotators-{os.getpid()}"
    root.mkdir(exist_ok=True)
    earlier = sorted(root.iterdir(), key=lambda p: p.stat().st_mtime)
    for old in earlier[: max(0, len(earlier) - _KEEP_CSV + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root))


def annotators_section(store: PreferenceStore) -> tuple[Any, ...]:
    """(table markdown, labels-over-time plot, agreement plot, CSV path) for admins."""
    config = read_gold_config(store)
    rows = annotator_table(store, config)
    csv_path = write_csv(rows, _csv_folder() / "annotators.csv")
    return (
        table_markdown(rows, config.min_accuracy),
        labels_plot(store),
        agreement_plot(rows),
        str(csv_path),
    )
