"""Judge commands: `prefloop judge` (run an LLM-judge batch) and `prefloop judge-report`."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from app.cli_common import db_option, emit, json_option, open_store
from judges.config import BACKENDS, BATCH_FAILED, DEFAULT_API_KEY_ENV, HTTP_CLIENTS, JudgeConfig


def _help(name: str) -> str:
    """The help text of a `JudgeConfig` field, written once there."""
    return {f.name: f for f in dataclasses.fields(JudgeConfig)}[name].metadata["help"]


@click.command("judge")
@db_option
@click.option(
    "--base-url",
    "base_urls",
    multiple=True,
    metavar="URL",
    help=_help("base_url"),
)
@click.option(
    "--api-key-env",
    default=DEFAULT_API_KEY_ENV,
    show_default=True,
    metavar="NAME",
    help=_help("api_key_env"),
)
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    help=_help("models"),
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="openai",
    show_default=True,
    help=_help("backend"),
)
@click.option(
    "--concurrency",
    type=int,
    default=JudgeConfig.concurrency,
    show_default=True,
    help=_help("concurrency"),
)
@click.option(
    "--http-client",
    type=click.Choice(HTTP_CLIENTS),
    default=JudgeConfig.http_client,
    show_default=True,
    help=_help("http_client"),
)
@click.option(
    "--per-endpoint-concurrency",
    type=int,
    default=None,
    help=_help("per_endpoint_concurrency"),
)
@click.option(
    "--bench-after",
    type=int,
    default=JudgeConfig.bench_after,
    show_default=True,
    help=_help("bench_after"),
)
@click.option(
    "--bench-seconds",
    type=float,
    default=JudgeConfig.bench_seconds,
    show_default=True,
    help=_help("bench_seconds"),
)
@click.option("--batch-api", is_flag=True, help=_help("batch_api"))
@click.option(
    "--batch-poll-seconds",
    type=float,
    default=JudgeConfig.batch_poll_seconds,
    show_default=True,
    help=_help("batch_poll_seconds"),
)
@click.option("--batch-no-wait", is_flag=True, help=_help("batch_wait"))
@click.option(
    "--batch-failed",
    type=click.Choice(BATCH_FAILED),
    default=JudgeConfig.batch_failed,
    show_default=True,
    help=_help("batch_failed"),
)
@click.option(
    "--swap",
    is_flag=True,
    help=_help("swap"),
)
@click.option(
    "--debias-margin",
    type=float,
    default=JudgeConfig.debias_margin,
    show_default=True,
    help=_help("debias_margin"),
)
@click.option("--limit", type=int, default=None, help=_help("limit"))
@click.option(
    "--all-unlabelled",
    is_flag=True,
    help=_help("all_unlabelled"),
)
@click.option("--retry-failed", is_flag=True, help=_help("retry_failed"))
@click.option(
    "--template",
    "template_path",
    default=None,
    type=click.Path(dir_okay=False),
    help=_help("template_path"),
)
@click.option(
    "--timeout",
    type=float,
    default=JudgeConfig.timeout,
    show_default=True,
    help=_help("timeout"),
)
@click.option(
    "--max-retries",
    type=int,
    default=JudgeConfig.max_retries,
    show_default=True,
    help=_help("max_retries"),
)
@click.option(
    "--max-tokens",
    type=int,
    default=JudgeConfig.max_tokens,
    show_default=True,
    help=_help("max_tokens"),
)
@click.option(
    "--no-logprobs",
    is_flag=True,
    help="Do not ask for logprobs (they are switched off automatically if the endpoint refuses).",
)
@click.option(
    "--prices",
    "prices_path",
    default=None,
    type=click.Path(dir_okay=False),
    help='JSON/TOML price table {"MODEL": {"prompt": USD_PER_1M, "completion": USD_PER_1M}} for '
    'cost_usd (optional "batch_prompt"/"batch_completion": Batch API prices, default half).',
)
@json_option
def judge_command(
    db: str,
    base_urls: tuple[str, ...],
    api_key_env: str,
    models: tuple[str, ...],
    backend: str,
    concurrency: int,
    http_client: str,
    per_endpoint_concurrency: int | None,
    bench_after: int,
    bench_seconds: float,
    batch_api: bool,
    batch_poll_seconds: float,
    batch_no_wait: bool,
    batch_failed: str,
    swap: bool,
    debias_margin: float,
    limit: int | None,
    all_unlabelled: bool,
    retry_failed: bool,
    template_path: str | None,
    timeout: float,
    max_retries: int,
    max_tokens: int,
    no_logprobs: bool,
    prices_path: str | None,
    as_json: bool,
) -> None:
    """Judge the judge queue (pairs routed to the LLM judge) and store the judge's labels."""
    from judges.batch import run_batch
    from judges.config import load_prices

    config = JudgeConfig(
        models=models,
        base_url=base_urls or None,
        api_key_env=api_key_env,
        backend=backend,
        concurrency=concurrency,
        http_client=http_client,
        per_endpoint_concurrency=per_endpoint_concurrency,
        bench_after=bench_after,
        bench_seconds=bench_seconds,
        batch_api=batch_api,
        batch_poll_seconds=batch_poll_seconds,
        batch_wait=not batch_no_wait,
        batch_failed=batch_failed,
        swap=swap,
        debias_margin=debias_margin,
        limit=limit,
        all_unlabelled=all_unlabelled,
        retry_failed=retry_failed,
        template_path=template_path,
        timeout=timeout,
        max_retries=max_retries,
        max_tokens=max_tokens,
        logprobs=not no_logprobs,
        prices=load_prices(prices_path) if prices_path else {},
        progress=not as_json,
    )
    with open_store(db) as store:
        report = run_batch(store, config)
    keys = (
        "judged",
        "labels",
        "failed",
        "inconsistent",
        "calls",
        "cache_hits",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
    )
    full = report.as_dict()
    result = {k: full[k] for k in keys} | {k: v for k, v in full.items() if k not in keys}
    emit(result, as_json, _summary)


def _summary(result: dict[str, Any]) -> str:
    from judges.batch import summary_lines

    lines = summary_lines(result)
    if not result["units"]:
        lines[0] += (
            " (route pairs to the judge queue with `prefloop route`, or pass --all-unlabelled "
            "or --retry-failed)"
        )
    elif result["failed"]:
        lines.append("re-run the failures with --retry-failed")
    for endpoint in result.get("endpoints") or []:
        lines.append(
            f"  {endpoint['url']}: {endpoint['requests']} requests, {endpoint['failures']} "
            f"failed, benched {endpoint['benched']} times"
        )
    listed = (result.get("batch_api") or {}).get("listed") or []
    for line in listed:
        lines.append(f"  not judged: pair {line['pair_id']} ({line['model']}): {line['error']}")
    return "\n".join(lines)


@click.command("judge-report")
@db_option
@click.option(
    "--reference",
    default="human",
    show_default=True,
    help="Comma-separated label sources taken as ground truth (human, import, and reference: "
    "labels imported with --labels as-reference).",
)
@click.option("--judge", default=None, help="Only this judge (model name or panel:...).")
@json_option
def judge_report_command(db: str, reference: str, judge: str | None, as_json: bool) -> None:
    """Judge vs reference accuracy and Cohen's kappa, position consistency and length bias,
    and each judge's error rate against humans by signal bucket (confidence, panel
    dissent, position, length, ensemble disagreement)."""
    from judges.agreement import agreement_report

    sources = tuple(s.strip() for s in reference.split(",") if s.strip())
    from labeling.label_quality import judge_error_by_signal

    with open_store(db, read_only=True) as store:
        report = agreement_report(store, reference_sources=sources, judge=judge)
        report["error_by_signal"] = [
            e for e in judge_error_by_signal(store) if judge is None or e["who"] == judge
        ]
    emit(report, as_json, _report_text)


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _report_text(report: dict[str, object]) -> str:
    ref = report["reference"]
    lines = [
        f"reference ({', '.join(ref['sources'])}): {ref['pairs']} pairs, "  # type: ignore[index]
        f"prefers longer {_fmt(ref['prefers_longer'])}"
    ]  # type: ignore[index]
    for j in report["judges"]:  # type: ignore[attr-defined]
        vs = j["vs_reference"]
        lines.append(
            f"judge {j['who']}: {j['labels']} labels; vs reference on {vs['pairs']} pairs: "
            f"accuracy {_fmt(vs['accuracy'])}, kappa {_fmt(vs['kappa'])}; "
            f"prefers longer {_fmt(j['prefers_longer'])}"
        )
    for m in report["models"]:  # type: ignore[attr-defined]
        lines.append(
            f"model {m['model']} (template {m['template_hash']}): {m['judgements']} judgements, "
            f"{m['failed']} failed; position consistency {_fmt(m['position_consistency'])} "
            f"over {m['swapped_pairs']} swapped pairs; first-position rate {_fmt(m['first_position_rate'])}"
        )
    for e in report.get("error_by_signal", []):  # type: ignore[union-attr]
        cal = e["calibration_error_rate"]
        lines.append(
            f"judge {e['who']} vs human labels: error {_fmt(e['error_rate'])} on "
            f"{e['checked_pairs']} checked pairs; {_fmt(cal)} on {e['calibration_pairs']} "
            "random calibration pairs (unbiased); by signal:"
        )
        for b in e["buckets"]:
            lines.append(
                f"  {b['signal']:<18} {b['bucket']:<32} error {b['error_rate']:.3f} ({b['pairs']} pairs)"
            )
    return "\n".join(lines)


COMMANDS: list[click.Command] = [judge_command, judge_report_command]
