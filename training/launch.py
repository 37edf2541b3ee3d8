"""Starting and stopping trainer processes: the command, its environment, its process group.

`training.jobs` decides what runs when; this module only knows how a trainer process is
started (`python -m training STAGE --run-dir DIR`, or through `accelerate launch` for
several processes), how to tell whether a process this owner did not start still lives,
and how to stop a whole process group (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from training import runfiles

ACCELERATE_DIR = Path(__file__).resolve().parent / "accelerate"


def accelerate_config() -> Path:
    """$PREFLOOP_ACCELERATE_CONFIG (e.g. accelerate/zero2.yaml for DeepSpeed), else DDP (gloo on CPU, NCCL on GPU)."""
    return Path(os.environ.get("PREFLOOP_ACCELERATE_CONFIG") or ACCELERATE_DIR / "ddp.yaml")


def trainer_command(python: str, stage: str, run_dir: Path, num_processes: int) -> list[str]:
    """The command line of one run; several processes go through `accelerate launch`."""
    trainer = ["-m", "training", stage, "--run-dir", str(run_dir)]
    if num_processes <= 1:
        return [python, *trainer]
    return [
        python,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(accelerate_config()),
        "--num_processes",
        str(num_processes),
        *trainer,
    ]


def spawn_trainer(cmd: list[str], run_dir: Path) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own session (so cancel can stop the whole group), logging to the run."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
    }
    repo_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo_root, env.get("PYTHONPATH")]))
    with (run_dir / runfiles.LOG).open("ab") as log:
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=run_dir,
        )


def adopted_poll(pid: int | None) -> int | None:
    """Exit status of a process we did not start: None while it lives, else unknown (-1)."""
    if not pid:
        return -1
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return -1
    except PermissionError:
        return None
    return None


def terminate_group(pid: int | None, proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM the process group of `pid`, then SIGKILL whatever is left after `grace` s."""
    if not pid:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return
        if proc is None and adopted_poll(pid) is not None:
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if proc is not None:
        proc.wait(timeout=5)
