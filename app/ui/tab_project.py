"""The Project tab (admins): guidelines, overlap, lease time and strength of preference.

The settings live in the store (`data.project`), so `prefloop guidelines set` and
`prefloop project set` change the same values (while the app is stopped: one writer).
Saving here applies the lease to new claims at once; annotators see new guidelines and
the strength buttons on their next page load; overlap applies to the next `prefloop route`.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.ui.context import AppContext
from app.ui.events import AdminParts, ui_errors
from app.ui.render import safe_html
from data.project import ProjectSettings, custom_guidelines, help_of


def build(ctx: AppContext, blocks: gr.Blocks) -> AdminParts:
    def values(status: str) -> tuple[Any, ...]:
        project = ctx.project
        running = ctx.annotator.config.lease_seconds
        if running != project.lease_seconds:
            status += (
                f"\n\nThis server runs with a {running:g} s lease (`--lease-seconds`); "
                "saving a new lease here replaces it."
            )
        return (
            project.shown_guidelines,
            safe_html(project.shown_guidelines),
            project.overlap,
            project.lease_seconds,
            project.strength,
            status,
        )

    @ui_errors
    def project_load(request: gr.Request) -> tuple[Any, ...]:
        ctx.user(request, "admin")
        return values("The settings as stored.")

    @ui_errors
    def project_preview(text: str, request: gr.Request) -> str:
        ctx.user(request, "admin")
        return safe_html(text or "")

    @ui_errors
    def project_save(
        text: str,
        overlap: float | None,
        lease_seconds: float | None,
        strength: bool,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        user = ctx.user(request, "admin")
        settings = ProjectSettings(
            guidelines=custom_guidelines(text or ""),
            overlap=overlap,  # type: ignore[arg-type] - checked by ProjectSettings
            lease_seconds=lease_seconds,  # type: ignore[arg-type]
            strength=bool(strength),
        )
        ctx.save_project(settings)
        return values(
            f"Saved by {user}. The lease applies to new claims now; annotators see the "
            "guidelines and strength buttons when they reload; the overlap applies to pairs "
            "that `prefloop route` sends to humans from now on."
        )

    with gr.Tab("Project", id="project", visible=False) as project_tab:
        with gr.Row():
            with gr.Column(scale=3):
                guidelines = gr.Textbox(
                    ctx.project.shown_guidelines,
                    label="Guidelines (Markdown; HTML is shown as text)",
                    info=help_of("guidelines"),
                    lines=14,
                    max_lines=40,
                    elem_id="project-guidelines",
                )
            with gr.Column(scale=2):
                gr.Markdown("**Preview**")
                preview = gr.Markdown(
                    safe_html(ctx.project.shown_guidelines),
                    sanitize_html=True,
                    elem_id="project-preview",
                )
        with gr.Row():
            overlap = gr.Number(
                ctx.project.overlap,
                label="Overlap (annotators per pair)",
                info=help_of("overlap"),
                precision=0,  # no minimum/maximum: the error names the setting and its range
                elem_id="project-overlap",
            )
            lease = gr.Number(
                ctx.project.lease_seconds,
                label="Lease (seconds)",
                info=help_of("lease_seconds"),
                elem_id="project-lease",
            )
            strength = gr.Checkbox(
                ctx.project.strength,
                label="Ask for strength of preference",
                info=help_of("strength"),
                elem_id="project-strength",
            )
        save = gr.Button("Save", variant="primary", elem_id="btn-project-save")
        status = gr.Markdown(elem_id="project-status")

    fields = [guidelines, preview, overlap, lease, strength, status]
    project_tab.select(project_load, None, fields, api_name="project_load")
    guidelines.change(
        project_preview,
        [guidelines],
        [preview],
        api_name="project_preview",
        trigger_mode="always_last",
        queue=False,
        show_progress="hidden",
    )
    save.click(
        project_save, [guidelines, overlap, lease, strength], fields, api_name="project_save"
    )
    return AdminParts(project_tab)
