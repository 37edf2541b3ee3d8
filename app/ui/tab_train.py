"""The Train tab (admins): one-click retrain in a background process, its curves and history."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.ui import jobs
from app.ui.context import AppContext
from app.ui.events import AdminParts, ui_errors


def build(ctx: AppContext, blocks: gr.Blocks) -> AdminParts:
    @ui_errors
    def train_start(kind: str, request: gr.Request) -> str:
        user = ctx.user(request, "admin")
        return jobs.start_training(ctx, kind, who=user)

    @ui_errors
    def train_cancel(run_id: str, request: gr.Request) -> str:
        ctx.user(request, "admin")
        return jobs.cancel_training(ctx, run_id)

    @ui_errors
    def train_status(request: gr.Request) -> tuple[Any, ...]:
        ctx.user(request, "admin")
        return jobs.training_view(ctx)

    with gr.Tab("Train", id="train", visible=False) as train_tab:
        with gr.Row():
            kind = gr.Radio(list(jobs.TRAIN_KINDS), value="dpo", label="What to train")
            train_button = gr.Button("Retrain now", variant="primary", elem_id="btn-train")
        train_md = gr.Markdown()
        curves = gr.Plot(label="Loss / reward / KL")
        history = gr.Dataframe(
            headers=["run", "kind", "status", "created", "finished", "metrics"],
            label="Run history",
            interactive=False,
        )
        with gr.Row():
            cancel_id = gr.Textbox(label="Run id to cancel (empty: the running one)")
            cancel_button = gr.Button("Cancel run", variant="stop", elem_id="btn-cancel")
        train_timer = gr.Timer(2.0, active=False)

    train_outputs = [train_md, curves, history]
    train_button.click(train_start, [kind], train_md, api_name="train_start")
    cancel_button.click(train_cancel, [cancel_id], train_md, api_name="train_cancel")
    train_timer.tick(
        train_status, None, train_outputs, api_name="train_status", show_progress="hidden"
    )
    return AdminParts(train_tab, [train_timer])
