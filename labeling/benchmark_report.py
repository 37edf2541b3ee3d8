"""Outputs of the label-efficiency benchmark: JSON, a PNG plot and a markdown table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_outputs(result: dict[str, Any], out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "active_learning.json",
        "png": out / "active_learning.png",
        "markdown": out / "active_learning.md",
    }
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    plot(result, paths["png"])
    paths["markdown"].write_text(markdown(result))
    return {k: str(v) for k, v in paths.items()}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    curves = result["curves"]
    fig, axes = plt.subplots(len(curves), 2, figsize=(11, 4 * len(curves)), squeeze=False)
    longer = result["baselines"]["longer_response"]["mean"]
    for row, (features, entry) in enumerate(curves.items()):
        for col, (metric, label) in enumerate(
            (("accuracy", "held-out accuracy"), ("log_likelihood", "held-out log-likelihood"))
        ):
            ax = axes[row][col]
            for name, s in entry["strategies"].items():
                mean = [float(v) for v in s[f"{metric}_mean"]]
                half = [float(v) for v in s[f"{metric}_ci95"]]
                ax.plot(s["labels"], mean, marker="o", ms=3, label=name)
                ax.fill_between(
                    s["labels"],
                    [m - h for m, h in zip(mean, half, strict=True)],
                    [m + h for m, h in zip(mean, half, strict=True)],
                    alpha=0.15,
                )
            if metric == "accuracy":
                ax.axhline(
                    entry["all_labels"]["mean"],
                    color="k",
                    ls="--",
                    lw=1,
                    label=f"all {result['pool_pairs']} pool labels",
                )
                ax.axhline(longer, color="grey", ls=":", lw=1, label="prefer longer response")
            ax.set_xscale("log")
            ticks = next(iter(entry["strategies"].values()))["labels"]
            ax.set_xticks(ticks)
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.tick_params(axis="x", labelsize=7)
            ax.set_xlabel("human labels")
            ax.set_ylabel(label)
            ax.set_title(f"features: {features}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    seeds = result["config"]["seeds"]
    fig.suptitle(
        f"{result['config']['data']}: {result['test_pairs']} held-out pairs, "
        f"mean and 95% CI over {seeds} seeds",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict[str, Any]) -> str:
    lines = []
    for features, entry in result["curves"].items():
        all_acc = entry["all_labels"]
        lines += [
            f"### Features `{features}`",
            "",
            f"All {result['pool_pairs']} pool labels: accuracy {all_acc['mean']:.3f} "
            f"± {all_acc['ci95']:.3f}; prefer-longer baseline "
            f"{result['baselines']['longer_response']['mean']:.3f}.",
            "",
            "| strategy | labels to 95% / 98% / 99% of all-labels accuracy | "
            + " | ".join(f"acc@{n}" for n in next(iter(entry["strategies"].values()))["labels"])
            + " |",
            "|---|---|" + "---|" * len(next(iter(entry["strategies"].values()))["labels"]),
        ]
        for name, s in entry["strategies"].items():
            cells = " | ".join(
                f"{m:.3f}±{h:.3f}"
                for m, h in zip(s["accuracy_mean"], s["accuracy_ci95"], strict=True)
            )
            lines.append(
                f"| {name} | {' / '.join(str(s[f'labels_to_{p}pct_of_all'] or '-') for p in (95, 98, 99))} | {cells} |"
            )
        if entry.get("hybrid"):
            lines += [
                "",
                "Hybrid (humans on routed pairs, simulated judge on the rest of the pool):",
                "",
                "| human labels from | human labels | judge labels | training-label accuracy | test accuracy |",
                "|---|---|---|---|---|",
            ]
            for name, h in entry["hybrid"].items():
                lines.append(
                    f"| {name} | {h['human_labels']:.0f} | {h['judge_labels']:.0f} | "
                    f"{h['label_accuracy']:.3f} | {h['test_accuracy']:.3f} |"
                )
        lines.append("")
    if "feature_sets" in result:
        lines += [
            "### Feature sets (linear heads, K=8; random labels)",
            "",
            "| features @ embedding penalty | dim | acc, 100 labels | acc, all pool labels | "
            "log-lik, 100 | log-lik, all |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in result["feature_sets"].items():
            a100, aall = row["accuracy_100"], row["accuracy_all"]
            lines.append(
                f"| {name} | {row['dim']} | {a100['mean']:.3f}±{a100['ci95']:.3f} | "
                f"{aall['mean']:.3f}±{aall['ci95']:.3f} | {row['log_likelihood_100']['mean']:.3f} | "
                f"{row['log_likelihood_all']['mean']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)
