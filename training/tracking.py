"""Experiment tracking: which trackers a run reports to (TRL's / transformers' `report_to`).

`report_to` is a stage setting (`--set report_to=wandb`). `auto` (the default) writes
TensorBoard event files into the run folder when `tensorboard` is installed, and reports
nowhere else; `none` reports nowhere. A tracker named explicitly must be installed: the
run is refused at submit time otherwise, with the install command. The Train tab keeps its
own curves from `metrics.jsonl` whatever is chosen.

A tracker's own environment variables (`WANDB_API_KEY`, `MLFLOW_TRACKING_URI`, ...) reach
the trainer process only when the run names that tracker (see `training.launch`).
Imports nothing heavy: the app validates settings with it.
"""

from __future__ import annotations

import importlib.util

from data.errors import ConfigError

# tracker -> (the modules any of which makes it usable, its environment variable prefixes)
TRACKERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "tensorboard": (("tensorboard", "tensorboardX"), ("TENSORBOARD_",)),
    "wandb": (("wandb",), ("WANDB_",)),
    "mlflow": (("mlflow",), ("MLFLOW_", "DATABRICKS_")),
    "trackio": (("trackio",), ("TRACKIO_",)),
    "comet_ml": (("comet_ml",), ("COMET_",)),
    "clearml": (("clearml",), ("CLEARML_",)),
    "neptune": (("neptune",), ("NEPTUNE_",)),
    "dvclive": (("dvclive",), ("DVC_", "DVCLIVE_")),
    "swanlab": (("swanlab",), ("SWANLAB_",)),
}
AUTO, NONE = "auto", "none"
TENSORBOARD_FOLDER = "tensorboard"  # inside the run folder


def named_trackers(report_to: str) -> tuple[str, ...]:
    """The trackers `report_to` names ('auto' and 'none' name none); unknown names raise."""
    names = tuple(n.strip() for n in str(report_to).split(",") if n.strip())
    if names in ((AUTO,), (NONE,)):
        return ()
    unknown = [n for n in names if n not in TRACKERS]
    if not names or unknown or AUTO in names or NONE in names:
        raise ConfigError(
            f"report_to={report_to!r}: use {AUTO}, {NONE}, or a comma list of {', '.join(TRACKERS)}"
        )
    return names


def installed(tracker: str) -> bool:
    return any(importlib.util.find_spec(m) is not None for m in TRACKERS[tracker][0])


def check_report_to(report_to: str) -> None:
    """Refuse unknown trackers and named trackers that are not installed (at submit time)."""
    missing = [t for t in named_trackers(report_to) if not installed(t)]
    if missing:
        raise ConfigError(
            f"report_to={report_to}: {', '.join(missing)} is not installed; install it "
            f"(pip install {' '.join(missing)}) or use report_to=auto"
        )


def resolve_report_to(report_to: str) -> list[str]:
    """What the trainer is given: the named trackers, or for 'auto' TensorBoard if installed."""
    if str(report_to).strip() == AUTO:
        return ["tensorboard"] if installed("tensorboard") else []
    return list(named_trackers(report_to))


def tracker_env_prefixes(report_to: str) -> tuple[str, ...]:
    """The environment prefixes of the trackers `report_to` names (for the trainer's env)."""
    return tuple(p for t in named_trackers(report_to) for p in TRACKERS[t][1])
