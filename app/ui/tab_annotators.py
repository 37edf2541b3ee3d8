"""The per-annotator section of the Dashboard tab (admins only): table, plots, CSV download.

Built inside the Dashboard tab (`tab_dashboard.build`); shown to admins by `whoami`
(`blocks.py`). `annotators` checks the admin role on the server, so an annotator calling
it through the API is refused; `annotators_open` (the tab's select, browser only) returns
nothing at all to a caller who is not an admin, so annotators opening the Dashboard see
no error and get no numbers.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.ui import annotators_view
from app.ui.context import AppContext
from app.ui.events import ui_errors


def build(ctx: AppContext, blocks: gr.Blocks, dashboard_tab: Any) -> Any:
    """The section's column (hidden until `whoami` shows it to an admin)."""

    @ui_errors
    def show(request: gr.Request) -> tuple[Any, ...]:
        ctx.user(request, "admin")
        return annotators_view.annotators_section(ctx.store)

    @ui_errors
    def show_if_admin(request: gr.Request) -> tuple[Any, ...]:
        user = ctx.user(request)
        if ctx.access.enabled and ctx.access.role_of(user) != "admin":
            return tuple(gr.skip() for _ in outputs)
        return annotators_view.annotators_section(ctx.store)

    with gr.Column(visible=False, elem_id="annotators-section") as section:
        gr.Markdown("## Annotators")
        refresh = gr.Button("Refresh annotators", elem_id="btn-annotators")
        table = gr.Markdown(sanitize_html=True, elem_id="annotators-table")
        with gr.Row():
            over_time = gr.Plot(label="Labels per annotator", elem_classes="annotators-plot")
            agreement = gr.Plot(label="Agreement per annotator", elem_classes="annotators-plot")
        csv_file = gr.File(label="Per-annotator table (CSV)", elem_id="annotators-csv")

    outputs = [table, over_time, agreement, csv_file]
    refresh.click(show, None, outputs, api_name="annotators")
    dashboard_tab.select(
        show_if_admin, None, outputs, api_name="annotators_open", api_visibility="private"
    )
    return section
