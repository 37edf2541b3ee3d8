"""The Annotate tab: one pair at a time from the human queue, keys 1/2/3/4/s/u."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from app.ui.annotate import Progress, Shown
from app.ui.context import AppContext
from app.ui.events import FAST, postprocessed, ui_errors
from app.ui.render import conversation, safe_markdown

VERDICT_BUTTONS = (
    ("a", "A better  [1]", "btn-a", "label_a"),
    ("b", "B better  [2]", "btn-b", "label_b"),
    ("tie", "Tie  [3]", "btn-tie", "label_tie"),
    ("both_bad", "Both bad  [4]", "btn-both-bad", "label_both_bad"),
)


def build(ctx: AppContext, blocks: gr.Blocks) -> None:  # noqa: PLR0915 - one declarative layout
    shown_components: list[Any] = []  # filled once the layout exists

    def view(
        user: str, shown: Shown | None, status: str, progress: Progress | None = None
    ) -> tuple[Any, ...]:
        progress = progress or ctx.annotator.progress(user)
        return postprocessed(shown_components, plain_view(user, shown, status, progress))

    def plain_view(
        user: str, shown: Shown | None, status: str, progress: Progress
    ) -> tuple[Any, ...]:
        progress_md = f"**{user}** · labelled by me today: **{progress.mine_today}** · queue left: **{progress.queue_left}**"
        if shown is None:
            return (
                [],
                "*The queue is empty: nothing to label right now.*",
                "",
                "",
                progress_md,
                status,
                "",
            )
        return (
            conversation(shown.messages),
            safe_markdown(shown.left),
            safe_markdown(shown.right),
            shown.pair_id,
            progress_md,
            status,
            "",
        )

    @ui_errors
    def next_pair(request: gr.Request) -> tuple[Any, ...]:
        user = ctx.user(request)
        return view(user, ctx.annotator.next(user), "")

    def make_label(verdict: str) -> Callable[..., tuple[Any, ...]]:
        @ui_errors
        def label(pair_id: str, rationale: str, request: gr.Request) -> tuple[Any, ...]:
            user = ctx.user(request)
            shown, progress = ctx.annotator.click(user, pair_id, verdict, rationale)
            return view(user, shown, f"Saved: {verdict.replace('_', ' ')}.", progress)

        label.__name__ = f"label_{verdict}"
        return label

    @ui_errors
    def skip(pair_id: str, request: gr.Request) -> tuple[Any, ...]:
        user = ctx.user(request)
        ctx.annotator.skip(user, pair_id)
        return view(user, ctx.annotator.next(user), "Skipped.")

    @ui_errors
    def undo(request: gr.Request) -> tuple[Any, ...]:
        user = ctx.user(request)
        pair_id = ctx.annotator.undo(user)
        status = "Undone: label it again." if pair_id else "Nothing to undo."
        return view(user, ctx.annotator.next(user), status)

    with gr.Tab("Annotate", id="annotate"):
        progress = gr.Markdown(elem_id="progress")
        with gr.Accordion("Guidelines", open=False):
            gr.Markdown(ctx.guidelines)
        chat = gr.Chatbot(
            label="Prompt",
            height=260,
            sanitize_html=True,
            elem_id="prompt",
            feedback_options=None,
            buttons=[],
        )
        with gr.Row(equal_height=True):
            with gr.Column():
                gr.Markdown("### Response A")
                left = gr.Markdown(
                    sanitize_html=True,
                    line_breaks=True,
                    elem_id="response-a",
                    elem_classes="response-box",
                )
            with gr.Column():
                gr.Markdown("### Response B")
                right = gr.Markdown(
                    sanitize_html=True,
                    line_breaks=True,
                    elem_id="response-b",
                    elem_classes="response-box",
                )
        with gr.Row():
            verdict_buttons = [
                gr.Button(text, elem_id=elem, variant="primary" if v in ("a", "b") else "secondary")
                for v, text, elem, _ in VERDICT_BUTTONS
            ]
            skip_button = gr.Button("Skip  [s]", elem_id="btn-skip")
            undo_button = gr.Button("Undo last  [u]", elem_id="btn-undo")
        rationale = gr.Textbox(label="Rationale (optional)", lines=2, elem_id="rationale")
        status = gr.Markdown(elem_id="status")
        pair_id = gr.Textbox(visible=False, elem_id="pair-id")

    shown = [chat, left, right, pair_id, progress, status, rationale]
    shown_components.extend(shown)
    blocks.load(next_pair, None, shown, api_name="next_pair", **FAST)
    for button, (verdict, _, _, api_name) in zip(verdict_buttons, VERDICT_BUTTONS, strict=True):
        button.click(
            make_label(verdict),
            [pair_id, rationale],
            shown,
            api_name=api_name,
            trigger_mode="once",
            **FAST,
        )
    skip_button.click(skip, [pair_id], shown, api_name="skip", trigger_mode="once", **FAST)
    undo_button.click(undo, None, shown, api_name="undo", trigger_mode="once", **FAST)
