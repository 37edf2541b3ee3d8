"""The Dashboard tab (everyone): agreement, labels over time, calibration, uncertainty, efficiency."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.ui import dashboard, tab_annotators
from app.ui.context import AppContext
from app.ui.events import ui_errors


def build(ctx: AppContext, blocks: gr.Blocks) -> Any:
    """The tab; returns its admin-only section (`tab_annotators`)."""

    @ui_errors
    def show_dashboard(request: gr.Request) -> tuple[Any, ...]:
        ctx.user(request, "annotator")
        return dashboard.dashboard(ctx.store)

    with gr.Tab("Dashboard", id="dashboard") as tab:
        refresh = gr.Button("Refresh", elem_id="btn-dashboard")
        agreement = gr.Markdown()
        with gr.Row():
            over_time = gr.Plot(label="Labels by source", elem_classes="dashboard-plot")
            calibration = gr.Plot(
                label="Calibration accuracy per round", elem_classes="dashboard-plot"
            )
        with gr.Row():
            histogram = gr.Plot(label="Uncertainty", elem_classes="dashboard-plot")
            efficiency = gr.Plot(label="Label efficiency", elem_classes="dashboard-plot")
        # admins only (shown by whoami): the per-annotator table, plots and CSV
        annotators = tab_annotators.build(ctx, blocks, tab)

    dashboard_outputs = [agreement, over_time, calibration, histogram, efficiency]
    refresh.click(show_dashboard, None, dashboard_outputs, api_name="dashboard")
    # opening the tab draws it: nobody should have to press Refresh to see anything
    tab.select(show_dashboard, None, dashboard_outputs, api_name="dashboard_open")
    return annotators
