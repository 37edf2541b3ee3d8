"""Dashboard figures and numbers, read from the store (matplotlib, shown with gr.Plot).

* labels by source over time (cumulative, per hour);
* human-human and human-judge agreement (`data.stats`);
* ensemble accuracy on the calibration slice per ensemble version (pairs the router
  sent to humans at random: `route_reason` mentions "calib");
* the label-efficiency curve: that accuracy against human labels available at the time;
* the uncertainty histogram: std of P(A > B) across ensemble members, latest version;
* the estimated share of right labels in the current export (`labeling.label_quality`,
  from the calibration slice) and where the human budget went, by route reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.ui.render import plain
from data.queue import queue_counts
from data.stats import human_human_agreement, human_judge_agreement, labels_by_hour
from data.store import PreferenceStore
from labeling.score_reports import calibration_accuracy, calibration_counts, latest_score_stds
from training import runs


def new_figure(title: str):  # noqa: ANN202 - matplotlib types stay inside
    # A bare Figure, not pyplot: pyplot keeps every figure alive until closed, and the Train
    # tab redraws every 2 s; these are freed like any other object.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.subplots()
    ax.set_title(title, fontsize=11)
    fig.set_layout_engine("tight")
    return fig, ax


def empty_note(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def labels_over_time(store: PreferenceStore):  # noqa: ANN201
    rows = labels_by_hour(store)
    fig, ax = new_figure("Labels by source over time (cumulative)")
    if not rows:
        empty_note(
            ax,
            "no labels yet: label pairs in Annotate,\nrun the judge, or import a labelled file",
        )
        return fig
    by_source: dict[str, list[tuple[Any, int]]] = {}
    for source, t, n in rows:
        by_source.setdefault(source, []).append((t, n))
    if len({t for _, t, _ in rows}) < 2:  # one moment in time: a line would be a dot, show bars
        names = sorted(by_source)
        ax.bar(names, [sum(n for _, n in by_source[name]) for name in names], color="#4c72b0")
        ax.set_ylabel("labels")
        ax.set_title("Labels by source (all in the same hour)", fontsize=11)
        return fig
    for source, points in sorted(by_source.items()):
        total, xs, ys = 0, [], []
        for t, n in points:
            total += n
            xs.append(t)
            ys.append(total)
        ax.step(xs, ys, where="post", label=source, marker="o", markersize=3)
    ax.set_ylabel("labels")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return fig


def calibration_needs(store: PreferenceStore) -> str:
    """What would put a first point on the calibration plots, in the store's numbers."""
    counts = calibration_counts(store)
    routed, labelled = counts.routed, counts.labelled
    if not routed:
        return (
            "no calibration pairs yet: route pairs to humans\n(`prefloop route`) to set some aside"
        )
    if not labelled:
        return f"label {routed:,} calibration pairs in Annotate\n(none labelled A or B yet)"
    if not counts.ensembles:
        return (
            f"{labelled:,} calibration pairs labelled:\nscore them (`prefloop score` or a retrain)"
        )
    return (
        f"{labelled:,} calibration pairs labelled after the last\nscoring: re-score "
        "(`prefloop score` or a retrain)"
    )


def calibration_plot(  # noqa: ANN201
    rows: list[dict[str, Any]], *, efficiency: bool, needs: str = ""
):
    title = (
        "Label efficiency (calibration slice)"
        if efficiency
        else "Ensemble accuracy on calibration slice"
    )
    fig, ax = new_figure(title)
    if not rows:
        empty_note(ax, needs or "no scored calibration pairs with human labels yet")
        return fig
    xs = [r["human_labels"] if efficiency else r["version"] for r in rows]
    ax.plot(xs, [r["accuracy"] for r in rows], marker="o")
    for x, r in zip(xs, rows, strict=True):
        ax.annotate(
            f"n={r['n']}", (x, r["accuracy"]), fontsize=7, textcoords="offset points", xytext=(0, 5)
        )
    ax.set_ylim(0, 1.05)
    if len(rows) == 1:
        ax.set_title(f"{title}: one version so far, a point per re-score", fontsize=10)
    ax.set_xlabel("human labels" if efficiency else "ensemble version (round)")
    ax.set_ylabel("accuracy")
    return fig


def uncertainty_histogram(store: PreferenceStore):  # noqa: ANN201
    stds = latest_score_stds(store)
    fig, ax = new_figure("Ensemble uncertainty (std of P(A>B)), latest version")
    if not stds:
        empty_note(ax, "no scores yet: run `prefloop score`,\nor retrain (a run re-scores)")
        return fig
    ax.hist(stds, bins=30, color="#4c72b0")
    ax.set_xlabel("std across members")
    ax.set_ylabel("pairs")
    return fig


def agreement_markdown(store: PreferenceStore) -> str:
    labels = store.labels()
    hh = human_human_agreement(labels)
    hj = human_judge_agreement(labels)
    counts = queue_counts(store)
    return "\n".join(
        [
            "| measure | value | pairs |",
            "|---|---|---|",
            f"| human-human Krippendorff's alpha | {_fmt(hh.get('krippendorff_alpha'))} | {hh.get('pairs_with_overlap', 0)} |",
            f"| human-human percent agreement | {_fmt(hh.get('percent_agreement'))} | {hh.get('pairs_with_overlap', 0)} |",
            f"| human-judge accuracy | {_fmt(hj.get('accuracy'))} | {hj.get('pairs', 0)} |",
            f"| human-judge Cohen's kappa | {_fmt(hj.get('cohen_kappa'))} | {hj.get('pairs', 0)} |",
            "",
            f"Queues: {counts.sentence()}",
            "",
            export_quality_markdown(store),
        ]
    )


def export_quality_markdown(store: PreferenceStore) -> str:
    from labeling.label_quality import export_quality, human_budget_by_reason

    q = export_quality(store)
    if q["estimated_right_share"] is None:
        estimate = (
            "not yet: needs human labels on calibration pairs the judge also labelled"
            if q["exported"]
            else "nothing to export yet"
        )
    else:
        interval = q["interval"]
        estimate = f"**{q['estimated_right_share']:.1%}**" + (
            f" (95% {interval[0]:.1%}–{interval[1]:.1%}; judge right on "
            f"{q['judge_accuracy']:.1%} of {q['calibration_checked']} calibration pairs)"
            if interval
            else " (every exported label is human or imported)"
        )
    lines = [
        f"Estimated right labels in the export: {estimate}. Exported {q['exported']} of "
        f"{q['pairs']} pairs ("
        + ", ".join(f"{plain(k)} {v}" for k, v in sorted(q["by_source"].items()))
        + ").",
    ]
    ref = q.get("vs_reference")
    if ref and ref["accuracy"] is not None:
        lines.append(
            f"Against the {ref['reference_pairs']} reference labels: {ref['accuracy']:.1%} of "
            f"{ref['exported_with_reference']} exported labels agree; "
            f"{ref['right_share_of_reference_pairs']:.1%} of the reference pairs are right."
        )
    budget = human_budget_by_reason(store)
    if budget:
        lines += ["", "| human budget went to | pairs | labelled |", "|---|---|---|"]
        lines += [f"| {plain(reason)} | {n} | {done} |" for reason, n, done in budget]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}"


def evaluations_markdown(store: PreferenceStore) -> str:
    """The latest `prefloop eval --model` result of each model on each file, as a table."""
    rows = runs.latest_evaluations(store)
    if not rows:
        return (
            "\n\n**Model evaluations**: none yet (`prefloop eval --model RUN FILE` measures a "
            "reward model, the ensemble or a policy on a labelled file)"
        )
    lines = [
        "\n\n**Model evaluations** (latest per model and file)\n",
        "| model | kind | file | accuracy | 95% interval | pairs | when |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        low, high = r.get("interval") or (None, None)
        lines.append(
            f"| {plain(Path(str(r.get('model'))).name)} | {plain(r.get('model_kind'))} | "
            f"{plain(Path(str(r.get('eval_file'))).name)} | {_fmt(r.get('accuracy'))} | "
            f"{_fmt(low)}–{_fmt(high)} | {r.get('pairs', 0)} | {str(r['finished_at'])[:16]} |"
        )
    return "\n".join(lines)


def dashboard(store: PreferenceStore) -> tuple[Any, ...]:
    """Everything the Dashboard tab shows, in its output order."""
    rows = calibration_accuracy(store)
    needs = "" if rows else calibration_needs(store)
    return (
        agreement_markdown(store) + evaluations_markdown(store),
        labels_over_time(store),
        calibration_plot(rows, efficiency=False, needs=needs),
        uncertainty_histogram(store),
        calibration_plot(rows, efficiency=True, needs=needs),
    )
