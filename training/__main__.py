"""`python -m training <stage> --run-dir DIR`: the trainer subprocess a run executes.

It reads only its run folder (config.json, snapshot.parquet) and writes status.json,
metrics.jsonl, result.json and the artifact there; it never opens the store.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from pathlib import Path

from training.stages import get_stage, kind_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("stage", choices=sorted(kind_names()))
    parser.add_argument(
        "--run-dir", required=True, type=Path, help="Run folder written by JobManager."
    )
    args = parser.parse_args(argv)

    from training.models import cpu_threads
    from training.run_context import RunContext
    from training.runfiles import CPU_THREADS_ENV

    ctx = RunContext(args.run_dir)
    ctx.status("running", step=0, message=f"starting {args.stage}", started=ctx.started)
    if os.environ.get(CPU_THREADS_ENV):  # its owner runs another process next to this one
        import torch

        torch.set_num_threads(cpu_threads())
    try:
        module = importlib.import_module(get_stage(args.stage).module)
        module.run(ctx)
    except Exception as exc:
        traceback.print_exc()
        ctx.status("failed", message=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
