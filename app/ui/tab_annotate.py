"""The Annotate tab: one pair at a time from the human queue, keys 1/2/3/4/s/u.

When the project asks for a strength of preference (`data.project`), two more buttons
show: A much better (Shift+1) and B much better (Shift+2); A better / B better then
count as slightly better. With nothing to label, the label and skip buttons are
disabled and the page says so (no event can fail on a missing pair).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.ui.annotate import Progress, Shown
from app.ui.context import AppContext
from app.ui.events import FAST, postprocessed, ui_errors
from app.ui.render import conversation, plain, safe_html

EMPTY_QUEUE = (
    "**Nothing to label right now.** The queue has no pair for you: every pair has its "
    "labels, or the rest are held by other annotators. New pairs come when an admin routes "
    "more (`prefloop route`, or a retrain from the Train tab). **Undo** still works."
)


@dataclass(frozen=True)
class VerdictButton:
    verdict: str  # a, b, tie or both_bad, on the pair as shown
    text: str
    elem_id: str
    api_name: str
    much: bool = False  # "much better": shown only when the project asks for a strength


# In screen order: the A..B scale, then tie and both bad. Keys: KEYBOARD_JS in blocks.py.
VERDICT_BUTTONS = (
    VerdictButton("a", "A much better  [⇧1]", "btn-a-much", "label_a_much", much=True),
    VerdictButton("a", "A better  [1]", "btn-a", "label_a"),
    VerdictButton("b", "B better  [2]", "btn-b", "label_b"),
    VerdictButton("b", "B much better  [⇧2]", "btn-b-much", "label_b_much", much=True),
    VerdictButton("tie", "Tie  [3]", "btn-tie", "label_tie"),
    VerdictButton("both_bad", "Both bad  [4]", "btn-both-bad", "label_both_bad"),
)
SKIP_TEXT = "Skip  [s]"


def build(ctx: AppContext, blocks: gr.Blocks) -> None:  # noqa: PLR0915 - one declarative layout
    shown_components: list[Any] = []  # filled once the layout exists

    def view(
        user: str,
        shown: Shown | None,
        status: str,
        progress: Progress | None = None,
        *,
        was_showing: bool | None = None,
    ) -> tuple[Any, ...]:
        """Every output of an annotate event. `was_showing`: whether the page showed a
        pair before this event (None: unknown), so buttons change only when they must."""
        progress = progress or ctx.annotator.progress(user)
        texts = plain_view(user, shown, status, progress)
        ready = postprocessed(shown_components[: len(texts)], texts)
        return ready + buttons(shown is not None, was_showing)

    def plain_view(
        user: str, shown: Shown | None, status: str, progress: Progress
    ) -> tuple[Any, ...]:
        progress_md = (  # the human queue in the words of `stats`, `route` and the Dashboard
            f"**{plain(user)}** · labelled by me today: **{progress.mine_today}** · human queue: "
            f"**{progress.queue_left}** pairs still want a label"
        )
        if shown is None:
            return ([], EMPTY_QUEUE, "", "", progress_md, status, "")
        return (
            conversation(shown.messages),
            safe_html(shown.left),
            safe_html(shown.right),
            shown.pair_id,
            progress_md,
            status,
            "",
        )

    def buttons(has_pair: bool, was_showing: bool | None) -> tuple[Any, ...]:
        """Label and skip buttons: enabled with a pair; unchanged (plain texts, no update
        to build) when the page already had the same state, as on most clicks."""
        if was_showing is not None and was_showing == has_pair:
            return (*(b.text for b in VERDICT_BUTTONS), SKIP_TEXT)
        strength = ctx.project.strength
        return (
            *(
                gr.update(interactive=has_pair, visible=strength)
                if b.much
                else gr.update(interactive=has_pair)
                for b in VERDICT_BUTTONS
            ),
            gr.update(interactive=has_pair),
        )

    @ui_errors
    def next_pair(request: gr.Request) -> tuple[Any, ...]:
        user = ctx.user(request)
        return view(user, ctx.annotator.next(user), "")

    def make_label(button: VerdictButton) -> Callable[..., tuple[Any, ...]]:
        verdict = button.verdict
        done = f"Saved: {button.text.split('  ')[0]}."

        @ui_errors
        def label(pair_id: str, rationale: str, request: gr.Request) -> tuple[Any, ...]:
            user = ctx.user(request)
            strength = None
            if button.much:
                strength = "much"
            elif ctx.project.strength and verdict in ("a", "b"):
                strength = "slightly"
            shown, progress = ctx.annotator.click(user, pair_id, verdict, rationale, strength)
            return view(user, shown, done, progress, was_showing=bool(pair_id))

        label.__name__ = button.api_name
        return label

    @ui_errors
    def skip(pair_id: str, request: gr.Request) -> tuple[Any, ...]:
        user = ctx.user(request)
        ctx.annotator.skip(user, pair_id)
        return view(user, ctx.annotator.next(user), "Skipped.", was_showing=bool(pair_id))

    @ui_errors
    def undo(request: gr.Request) -> tuple[Any, ...]:
        user = ctx.user(request)
        pair_id = ctx.annotator.undo(user)
        status = "Undone: label it again." if pair_id else "Nothing to undo."
        return view(user, ctx.annotator.next(user), status)

    @ui_errors
    def guidelines(request: gr.Request) -> str:
        ctx.user(request)
        return safe_html(ctx.guidelines)

    with gr.Tab("Annotate", id="annotate"):
        progress = gr.Markdown(elem_id="progress")
        with gr.Accordion("Guidelines", open=False):
            guidelines_md = gr.Markdown(
                safe_html(ctx.guidelines), sanitize_html=True, elem_id="guidelines"
            )
        chat = gr.Chatbot(
            label="Prompt",
            height=None,  # fits the prompt, up to max_height (then it scrolls)
            min_height=80,
            max_height=360,
            sanitize_html=True,
            elem_id="prompt",
            feedback_options=None,
            buttons=[],
        )
        with gr.Row(equal_height=False, elem_id="responses"):
            with gr.Column(elem_classes="response-column"):
                gr.Markdown("### Response A", elem_classes="response-heading")
                left = gr.Markdown(
                    sanitize_html=True,
                    line_breaks=True,
                    elem_id="response-a",
                    elem_classes="response-box",
                )
            with gr.Column(elem_classes="response-column"):
                gr.Markdown("### Response B", elem_classes="response-heading")
                right = gr.Markdown(
                    sanitize_html=True,
                    line_breaks=True,
                    elem_id="response-b",
                    elem_classes="response-box",
                )
        with gr.Row(elem_id="verdicts"):
            verdict_buttons = [
                gr.Button(
                    b.text,
                    elem_id=b.elem_id,
                    variant="primary" if b.verdict in ("a", "b") else "secondary",
                    visible=ctx.project.strength if b.much else True,
                    interactive=False,  # until a pair is shown
                    elem_classes="verdict",
                )
                for b in VERDICT_BUTTONS
            ]
        with gr.Row(elem_id="actions"):
            skip_button = gr.Button(SKIP_TEXT, elem_id="btn-skip", interactive=False)
            undo_button = gr.Button("Undo last  [u]", elem_id="btn-undo")
        rationale = gr.Textbox(label="Rationale (optional)", lines=2, elem_id="rationale")
        status = gr.Markdown(elem_id="status")
        pair_id = gr.Textbox(visible=False, elem_id="pair-id")

    # Buttons are outputs too (enabled only with a pair); gradio_client leaves them out.
    shown = [chat, left, right, pair_id, progress, status, rationale, *verdict_buttons, skip_button]
    shown_components.extend(shown)
    blocks.load(next_pair, None, shown, api_name="next_pair", **FAST)
    blocks.load(
        guidelines,
        None,
        [guidelines_md],
        api_name="guidelines",
        queue=False,
        show_progress="hidden",
    )
    for component, button in zip(verdict_buttons, VERDICT_BUTTONS, strict=True):
        component.click(
            make_label(button),
            [pair_id, rationale],
            shown,
            api_name=button.api_name,
            trigger_mode="once",
            **FAST,
        )
    skip_button.click(skip, [pair_id], shown, api_name="skip", trigger_mode="once", **FAST)
    undo_button.click(undo, None, shown, api_name="undo", trigger_mode="once", **FAST)
