"""report_to: validated at submit, resolved for TRL, and a tracker's variables reach only its runs."""

from __future__ import annotations

import pytest

from data.errors import ConfigError
from training.jobs import JobManager, TrainRequest
from training.launch import trainer_env
from training.tracking import named_trackers, resolve_report_to, tracker_env_prefixes


def test_names_are_checked_and_auto_means_tensorboard_when_installed() -> None:
    assert named_trackers("wandb, mlflow") == ("wandb", "mlflow")
    assert named_trackers("none") == () == named_trackers("auto")
    for bad in ("tensorbored", "none,wandb", ""):
        with pytest.raises(ConfigError, match="use auto, none, or a comma list"):
            named_trackers(bad)
    assert resolve_report_to("none") == []
    assert resolve_report_to("auto") == ["tensorboard"]  # tensorboardX is a test extra


def test_a_tracker_that_is_not_installed_is_refused_at_submit(labelled_store, tmp_path) -> None:
    jobs = JobManager(labelled_store, tmp_path / "runs")
    try:
        with pytest.raises(ConfigError, match=r"wandb is not installed; install it \(pip install"):
            jobs.submit(TrainRequest("dpo", policy="tiny", overrides={"report_to": "wandb"}))
        with pytest.raises(ConfigError, match="use auto, none"):
            jobs.submit(TrainRequest("dpo", policy="tiny", overrides={"report_to": "tb"}))
        assert labelled_store.count("runs") == 0  # nothing queued, no process started
    finally:
        jobs.close()


def test_a_trackers_own_variables_reach_only_the_runs_that_report_to_it() -> None:
    environ = {
        "PATH": "/bin",
        "WANDB_API_KEY": "wk",
        "WANDB_PROJECT": "p",
        "MLFLOW_TRACKING_URI": "http://m",
        "OPENAI_API_KEY": "sk-no",
    }
    plain = trainer_env(environ)
    assert "WANDB_API_KEY" not in plain and "WANDB_PROJECT" not in plain
    wandb = trainer_env(environ, tracker_env_prefixes("wandb"))
    assert wandb["WANDB_API_KEY"] == "wk" and wandb["WANDB_PROJECT"] == "p"
    assert "MLFLOW_TRACKING_URI" not in wandb and "OPENAI_API_KEY" not in wandb
    both = trainer_env(environ, tracker_env_prefixes("wandb,mlflow"))
    assert both["MLFLOW_TRACKING_URI"] == "http://m" and "OPENAI_API_KEY" not in both
