"""The Loop tab (admins): start and stop `prefloop loop` inside the app, a per-round table
and a timeline of the stages, while annotators keep labelling in the Annotate tab."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from app.loop.config import PIPELINES, LoopConfig, help_of
from app.ui import loop_jobs
from app.ui.context import AppContext
from app.ui.events import AdminParts, ui_errors
from data.errors import ConfigError

LOOP_HELP = """\
**The loop.** Each round samples pairs from the last promoted policy, scores them, judges
them, routes the human budget to the pairs whose automatic label is riskiest, trains on the
labels present when its run starts, gates the run and re-scores. Round k+1's sampling and
judging run while round k trains. Annotators keep labelling meanwhile; a label that arrives
after a round's cut-off goes into the next round. The loop stops early when the gate fails
twice in a row.
"""


def parse_settings(text: str) -> dict[str, Any]:
    """`KEY=VALUE` per line (or comma-separated), values read as JSON where they parse."""
    out: dict[str, Any] = {}
    for item in (p.strip() for line in (text or "").splitlines() for p in line.split(",")):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"stage setting {item!r}: write KEY=VALUE, e.g. beta=0.2")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw.strip()
    return out


def build(ctx: AppContext, blocks: gr.Blocks) -> AdminParts:
    @ui_errors
    def loop_start(
        rounds: float,
        pipeline: str,
        policy: str,
        budget: float,
        judge_url: str,
        judge_model: str,
        prompts_per_round: float,
        overlap: bool,
        max_steps: float | None,
        settings: str,
        request: gr.Request,
    ) -> str:
        user = ctx.user(request, "admin")
        config = LoopConfig(
            rounds=int(rounds),
            pipeline=pipeline,
            policy=policy.strip() or None,
            human_budget_per_round=int(budget),
            judge_base_url=judge_url.strip() or None,
            judge_models=(judge_model.strip(),) if judge_model.strip() else (),
            prompts_per_round=int(prompts_per_round),
            overlap=bool(overlap),
            max_steps=int(max_steps) if max_steps else None,
            train_settings=parse_settings(settings),
            runs_root=ctx.runs_root,
        )
        return loop_jobs.start_loop(ctx, config, who=user)

    @ui_errors
    def loop_resume(request: gr.Request) -> str:
        user = ctx.user(request, "admin")
        return loop_jobs.start_loop(ctx, None, who=user, resume=True)

    @ui_errors
    def loop_stop(request: gr.Request) -> str:
        ctx.user(request, "admin")
        return loop_jobs.stop_loop(ctx)

    @ui_errors
    def loop_status(request: gr.Request) -> tuple[Any, ...]:
        ctx.user(request, "admin")
        return loop_jobs.loop_view(ctx)

    with gr.Tab("Loop", id="loop", visible=False) as loop_tab:
        gr.Markdown(LOOP_HELP)
        with gr.Row():
            rounds = gr.Number(
                value=3, precision=0, minimum=1, label="Rounds", elem_id="loop-rounds-n"
            )
            pipeline = gr.Radio(list(PIPELINES), value="dpo", label="Pipeline")
            budget = gr.Number(
                value=LoopConfig.human_budget_per_round,
                precision=0,
                minimum=0,
                label="Human budget per round",
                info=help_of("human_budget_per_round"),
            )
            prompts_per_round = gr.Number(
                value=LoopConfig.prompts_per_round,
                precision=0,
                minimum=1,
                label="Prompts per round",
            )
        with gr.Row():
            policy = gr.Textbox(
                label="Base policy (empty: default)", info=help_of("policy"), elem_id="loop-policy"
            )
            judge_url = gr.Textbox(
                label="Judge base URL", info=help_of("judge_base_url"), elem_id="loop-judge-url"
            )
            judge_model = gr.Textbox(
                label="Judge model (empty: no judge stage)", elem_id="loop-judge-model"
            )
        with gr.Row():
            overlap = gr.Checkbox(value=True, label="Overlap stages", info=help_of("overlap"))
            max_steps = gr.Number(
                value=None, precision=0, minimum=1, label="Steps per run", elem_id="loop-steps"
            )
            settings = gr.Textbox(
                label="Stage settings (KEY=VALUE, comma-separated)", elem_id="loop-settings"
            )
        with gr.Row():
            start_button = gr.Button("Start loop", variant="primary", elem_id="btn-loop-start")
            resume_button = gr.Button("Resume last loop", elem_id="btn-loop-resume")
            stop_button = gr.Button("Stop loop", variant="stop", elem_id="btn-loop-stop")
        loop_md = gr.Markdown(elem_id="loop-status")
        rounds_table = gr.Dataframe(
            headers=loop_jobs.ROUND_COLUMNS,
            label="Per-round results",
            interactive=False,
            elem_id="loop-rounds",
        )
        chart = gr.Plot(label="Timeline", elem_id="loop-timeline")
        loop_timer = gr.Timer(2.0, active=False)

    inputs = [
        rounds,
        pipeline,
        policy,
        budget,
        judge_url,
        judge_model,
        prompts_per_round,
        overlap,
        max_steps,
        settings,
    ]
    start_button.click(loop_start, inputs, loop_md, api_name="loop_start")
    resume_button.click(loop_resume, None, loop_md, api_name="loop_resume")
    stop_button.click(loop_stop, None, loop_md, api_name="loop_stop")
    loop_timer.tick(
        loop_status,
        None,
        [loop_md, rounds_table, chart],
        api_name="loop_status",
        show_progress="hidden",
    )
    return AdminParts(loop_tab, [loop_timer])
