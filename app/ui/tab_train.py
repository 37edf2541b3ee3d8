"""The Train tab (admins): one-click retrain in a background process, its curves, metrics and
history, and generating new pairs from a policy so the loop turns without the CLI."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.ui import train_jobs
from app.ui.context import AppContext
from app.ui.events import AdminParts, ui_errors

GENERATE_HELP = """\
**Generate new pairs.** Sample responses from a policy for the store's prompts; each
prompt's responses are paired, and the re-score after the run scores and routes the new
pairs. `latest` is the last promoted policy run (train one first); `smollm2-135m-instruct`
is the offline base model; any local folder or Hugging Face id works too.
"""


def build(ctx: AppContext, blocks: gr.Blocks) -> AdminParts:
    @ui_errors
    def train_start(kind: str, request: gr.Request) -> str:
        user = ctx.user(request, "admin")
        return train_jobs.start_training(ctx, kind, who=user)

    @ui_errors
    def generate_start(
        policy: str,
        prompts: str,
        max_prompts: float | None,
        n: float,
        max_new_tokens: float,
        request: gr.Request,
    ) -> str:
        user = ctx.user(request, "admin")
        return train_jobs.start_generation(
            ctx, policy, prompts, int(max_prompts or 0), int(n), int(max_new_tokens), who=user
        )

    @ui_errors
    def train_cancel(run_id: str, request: gr.Request) -> str:
        ctx.user(request, "admin")
        return train_jobs.cancel_training(ctx, run_id)

    @ui_errors
    def train_status(request: gr.Request) -> tuple[Any, ...]:
        ctx.user(request, "admin")
        return train_jobs.training_view(ctx)

    with gr.Tab("Train", id="train", visible=False) as train_tab:
        with gr.Row():
            kind = gr.Radio(list(train_jobs.TRAIN_KINDS), value="dpo", label="What to train")
            train_button = gr.Button("Retrain now", variant="primary", elem_id="btn-train")
        train_md = gr.Markdown()
        with gr.Row():
            curves = gr.Plot(label="Loss / reward / KL")
            metrics = gr.Dataframe(
                headers=["metric", "value"],
                label="Latest run's metrics",
                interactive=False,
                elem_id="run-metrics",
            )
        history = gr.Dataframe(
            headers=train_jobs.HISTORY_COLUMNS, label="Run history", interactive=False
        )
        with gr.Accordion("Generate new pairs from a policy", open=False):
            gr.Markdown(GENERATE_HELP)
            with gr.Row():
                policy = gr.Textbox(value="latest", label="Policy")
                prompts = gr.Dropdown(
                    list(train_jobs.GENERATE_PROMPTS), value="unlabelled", label="Prompts"
                )
                max_prompts = gr.Number(
                    value=20, precision=0, minimum=0, label="At most this many prompts (0: all)"
                )
                n = gr.Number(value=2, precision=0, minimum=2, label="Responses per prompt")
                max_new_tokens = gr.Number(
                    value=48, precision=0, minimum=1, label="Tokens per response"
                )
            generate_button = gr.Button("Generate", elem_id="btn-generate")
        with gr.Row():
            cancel_id = gr.Textbox(label="Run id to cancel (empty: the running one)")
            cancel_button = gr.Button("Cancel run", variant="stop", elem_id="btn-cancel")
        train_timer = gr.Timer(2.0, active=False)

    train_outputs = [train_md, curves, metrics, history]
    train_button.click(train_start, [kind], train_md, api_name="train_start")
    generate_button.click(
        generate_start,
        [policy, prompts, max_prompts, n, max_new_tokens],
        train_md,
        api_name="generate_start",
    )
    cancel_button.click(train_cancel, [cancel_id], train_md, api_name="train_cancel")
    train_timer.tick(
        train_status, None, train_outputs, api_name="train_status", show_progress="hidden"
    )
    return AdminParts(train_tab, [train_timer])
