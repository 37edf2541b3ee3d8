"""The Data tab (admins): upload an import with its validation problems, export for TRL."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.ui import data_io, upload_guard
from app.ui.context import AppContext
from app.ui.events import AdminParts, ui_errors


def build(ctx: AppContext, blocks: gr.Blocks) -> AdminParts:
    @ui_errors
    def import_file(
        path: str | None,
        fmt: str,
        skip_invalid: bool,
        labels: str,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        try:
            user = ctx.user(request, "admin")
            return data_io.import_upload(
                ctx.store, path, fmt, bool(skip_invalid), who=f"upload:{user}", labels=labels
            )
        finally:  # success or failure, the uploaded file is not needed again
            upload_guard.release(ctx, path)

    @ui_errors
    def export(fmt: str, test_fraction: float, request: gr.Request) -> tuple[Any, ...]:
        ctx.user(request, "admin")
        return data_io.export_dataset(ctx.store, fmt, float(test_fraction))

    with gr.Tab("Data", id="data", visible=False) as data_tab:
        with gr.Row():
            upload = gr.File(
                label="Preference file (.jsonl, .json, .csv, .parquet)", type="filepath"
            )
            with gr.Column():
                fmt = gr.Dropdown(
                    ["auto", "trl", "hh", "pairs", "responses"], value="auto", label="Format"
                )
                skip_invalid = gr.Checkbox(label="Skip invalid rows (import the valid ones)")
                labels = gr.Radio(
                    ["use", "as-reference"],
                    value="use",
                    label="Labels in the file",
                    info="use: they train and outrank the judge; as-reference: kept only to "
                    "measure against (never trained on; the pairs are routed)",
                )
                import_button = gr.Button("Import", variant="primary", elem_id="btn-import")
        import_md = gr.Markdown()
        problems = gr.Dataframe(
            headers=data_io.PROBLEM_COLUMNS, label="Validation problems", interactive=False
        )
        with gr.Row():
            export_fmt = gr.Dropdown(
                ["trl", "trl-conversational", "pairs"], value="trl", label="Export format"
            )
            test_fraction = gr.Slider(
                0, 0.5, value=0.0, step=0.05, label="Test fraction (split by prompt)"
            )
            export_button = gr.Button("Export", elem_id="btn-export")
        export_md = gr.Markdown()
        download = gr.File(label="Download", file_count="multiple")

    import_button.click(
        import_file,
        [upload, fmt, skip_invalid, labels],
        [import_md, problems],
        api_name="import_file",
    ).then(lambda: None, None, upload, api_visibility="private")  # the file is gone
    export_button.click(
        export, [export_fmt, test_fraction], [export_md, download], api_name="export"
    )
    return AdminParts(data_tab)
