"""Dashboard figures and numbers, read from the store (matplotlib, shown with gr.Plot).

* labels by source over time (cumulative, per hour);
* human-human and human-judge agreement (`data.stats` when present);
* ensemble accuracy on the calibration slice per ensemble version (pairs the router
  sent to humans at random: `route_reason` mentions "calib");
* the label-efficiency curve: that accuracy against human labels available at the time;
* the uncertainty histogram: std of P(A > B) across ensemble members, latest version;
* the estimated share of right labels in the current export (`labeling.label_quality`,
  from the calibration slice) and where the human budget went, by route reason.
"""

from __future__ import annotations

from typing import Any

from app.ui.render import plain
from data.queue import queue_counts
from data.store import PreferenceStore


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
    rows = store.query(
        """
        SELECT source, date_trunc('hour', created_at) AS t, count(*) FROM active_labels GROUP BY ALL ORDER BY t
        """
    )
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


def calibration_accuracy(store: PreferenceStore) -> list[dict[str, Any]]:
    """Per ensemble version: accuracy of P(A>B) > 0.5 against human a/b labels on calibration pairs."""
    return store.query_dicts(
        """
        WITH human AS (
            SELECT l.pair_id, l.verdict FROM active_labels l JOIN pairs p USING (pair_id)
            WHERE l.source = 'human' AND l.verdict IN ('a', 'b')
              AND lower(coalesce(p.route_reason, '')) LIKE '%calib%'
       )
        SELECT s.version, count(*) AS n,
               avg(CASE WHEN (s.p_mean > 0.5) = (h.verdict = 'a') THEN 1.0 ELSE 0.0 END) AS accuracy,
               (SELECT count(*) FROM active_labels x WHERE x.source = 'human' AND x.created_at <= any_value(e.created_at)) AS human_labels
        FROM scores s JOIN human h USING (pair_id) JOIN ensembles e ON e.version = s.version
        GROUP BY s.version ORDER BY s.version
        """
    )


def calibration_needs(store: PreferenceStore) -> str:
    """What would put a first point on the calibration plots, in the store's numbers."""
    routed, labelled = store.query(
        """
        SELECT count(*), count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM active_labels l WHERE l.pair_id = p.pair_id AND l.source = 'human' AND l.verdict IN ('a', 'b')))
        FROM pairs p WHERE lower(coalesce(p.route_reason, '')) LIKE '%calib%'
        """
    )[0]
    if not routed:
        return (
            "no calibration pairs yet: route pairs to humans\n(`prefloop route`) to set some aside"
        )
    if not labelled:
        return f"label {routed:,} calibration pairs in Annotate\n(none labelled A or B yet)"
    if not store.scalar("SELECT count(*) FROM ensembles"):
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
    rows = store.query("SELECT p_std FROM scores WHERE version = (SELECT max(version) FROM scores)")
    fig, ax = new_figure("Ensemble uncertainty (std of P(A>B)), latest version")
    if not rows:
        empty_note(ax, "no scores yet: run `prefloop score`,\nor retrain (a run re-scores)")
        return fig
    ax.hist([r[0] for r in rows], bins=30, color="#4c72b0")
    ax.set_xlabel("std across members")
    ax.set_ylabel("pairs")
    return fig


def agreement_markdown(store: PreferenceStore) -> str:
    try:
        from data.stats import human_human_agreement, human_judge_agreement
    except ImportError:
        return "Agreement needs `data/stats.py` (not in this install)."
    labels = store.query_dicts(
        "SELECT pair_id, source, who, verdict, confidence FROM active_labels"
    )
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


def dashboard(store: PreferenceStore) -> tuple[Any, ...]:
    """Everything the Dashboard tab shows, in its output order."""
    rows = calibration_accuracy(store)
    needs = "" if rows else calibration_needs(store)
    return (
        agreement_markdown(store),
        labels_over_time(store),
        calibration_plot(rows, efficiency=False, needs=needs),
        uncertainty_histogram(store),
        calibration_plot(rows, efficiency=True, needs=needs),
    )
