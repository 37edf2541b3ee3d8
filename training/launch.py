"""Starting and stopping trainer processes: the command, its environment, its process group.

`training.jobs` decides what runs when; this module only knows how a trainer process is
started (`python -m training STAGE --run-dir DIR`, or through `accelerate launch` for
several processes) and with which environment (an allow-list: no API keys), how to tell whether a process this owner did not start still lives,
and how to stop a whole process group (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from data.processes import alive
from training import runfiles

ACCELERATE_DIR = Path(__file__).resolve().parent / "accelerate"


# `--distributed NAME`: the accelerate config a multi-process run is launched with
DISTRIBUTED_CONFIGS = {"ddp": "ddp.yaml", "fsdp": "fsdp.yaml", "zero3": "zero3.yaml"}


def accelerate_config(distributed: str = "ddp") -> Path:
    """$PREFLOOP_ACCELERATE_CONFIG (e.g. accelerate/zero2.yaml), else the file of
    `--distributed`: DDP (gloo on CPU, NCCL on GPU), FSDP2, or DeepSpeed ZeRO-3."""
    override = os.environ.get("PREFLOOP_ACCELERATE_CONFIG")
    return Path(override) if override else ACCELERATE_DIR / DISTRIBUTED_CONFIGS[distributed]


def trainer_command(
    python: str, stage: str, run_dir: Path, num_processes: int, distributed: str = "ddp"
) -> list[str]:
    """The command line of one run; several processes, or a sharded run (fsdp, zero3: on
    one GPU too, e.g. ZeRO-3 with offload), go through `accelerate launch`."""
    trainer = ["-m", "training", stage, "--run-dir", str(run_dir)]
    if num_processes <= 1 and distributed == "ddp":
        return [python, *trainer]
    return [
        python,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(accelerate_config(distributed)),
        "--num_processes",
        str(num_processes),
        *trainer,
    ]


# What a trainer needs from the caller's environment, and nothing else: API keys for judge
# endpoints (OPENAI_API_KEY, a per-endpoint --api-key-env variable) and other secrets stay
# behind. HF_TOKEN (and its old name) is kept: the hub needs it for gated policies.
ENV_NAMES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TZ", "LANG", "LANGUAGE",
        "TMPDIR", "TEMP", "TMP", "VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH",
        "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
        "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
        "MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
        "CUBLAS_WORKSPACE_CONFIG",
        "COVERAGE_PROCESS_START",
        # Windows
        "SYSTEMROOT", "COMSPEC", "PATHEXT", "USERPROFILE", "APPDATA", "LOCALAPPDATA",
    }
)  # fmt: skip
ENV_PREFIXES = (
    "LC_", "PYTHON", "PREFLOOP_", "CUDA_", "NVIDIA_", "NCCL_", "CUDNN_", "ROCM_", "HIP_",
    "HF_", "TRANSFORMERS_", "TOKENIZERS_", "TORCH", "PYTORCH_", "TRITON_", "ACCELERATE_",
    "DEEPSPEED_", "OMP_", "MKL_", "KMP_", "OPENBLAS_", "COV_CORE_",
)  # fmt: skip
# never passed on, whatever the prefix (an HF_API_KEY, a PREFLOOP_SECRET): a name with one of
# these words (split at "_") says it holds a secret
SECRET_WORDS = frozenset(
    {"KEY", "APIKEY", "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "CREDENTIALS"}
)
KEPT_TOKENS = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"})


def passes_to_trainer(name: str) -> bool:
    """Whether the variable `name` of the caller's environment goes to a trainer process."""
    if name in KEPT_TOKENS:
        return True
    if SECRET_WORDS.intersection(name.upper().split("_")):
        return False
    return name in ENV_NAMES or name.startswith(ENV_PREFIXES)


def trainer_env(
    environ: Mapping[str, str] | None = None, tracker_prefixes: tuple[str, ...] = ()
) -> dict[str, str]:
    """The environment of a trainer process: the allow-list above, plus prefloop's settings.

    `tracker_prefixes`: the variables of the trackers the run reports to (`report_to`),
    their keys included (WANDB_API_KEY): the user asked for that tracker."""
    source = os.environ if environ is None else environ
    env = {
        name: value
        for name, value in source.items()
        if passes_to_trainer(name) or (tracker_prefixes and name.startswith(tracker_prefixes))
    }
    env.update(
        PYTHONUNBUFFERED="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE=source.get("HF_HUB_OFFLINE", "1"),
    )
    repo_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo_root, env.get("PYTHONPATH")]))
    return env


def spawn_trainer(
    cmd: list[str],
    run_dir: Path,
    tracker_prefixes: tuple[str, ...] = (),
    cpu_threads: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own session (so cancel can stop the whole group), logging to the run,
    with `trainer_env()`: no judge API key or other secret reaches the trainer (a tracker's
    own variables do when the run reports to it). `cpu_threads`: its share of the cores."""
    env = trainer_env(tracker_prefixes=tracker_prefixes)
    if cpu_threads:
        env[runfiles.CPU_THREADS_ENV] = str(cpu_threads)
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


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def adopted_poll(pid: int | None) -> int | None:
    """Exit status of a process we did not start: None while it lives, else unknown (-1)."""
    return None if pid and alive(pid) else -1


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
