"""The Adjudicate tab (adjudicators and admins): settle pairs whose human votes split.

The pair is shown as stored, with every earlier vote, who gave it and why (unblinded);
the adjudicator's verdict is final and outranks the human votes in the export
(`data.adjudication`, `data.export`). Keys 1/2/3/4 give the verdict, n passes to the
next pair (`KEYBOARD_JS`, added to the page's head by `blocks.py`).

Every handler checks the `adjudicator` role on the server (`ctx.user(request,
"adjudicator")`), so an annotator calling `adjudicate_next` or `adjudicate_a` through the
API is refused like the hidden tab; `adjudicate_open` (the tab's select, browser only)
returns nothing to anyone else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from app.ui import adjudicate_view as view
from app.ui.context import AppContext
from app.ui.events import AdminParts, ui_errors
from data.adjudication import adjudicate, next_case
from data.errors import StoreError

# (verdict, button text, element id, api name); keys in KEYBOARD_JS
BUTTONS = (
    ("a", "A better  [1]", "btn-adj-a", "adjudicate_a"),
    ("b", "B better  [2]", "btn-adj-b", "adjudicate_b"),
    ("tie", "Tie  [3]", "btn-adj-tie", "adjudicate_tie"),
    ("both_bad", "Both bad  [4]", "btn-adj-both-bad", "adjudicate_both_bad"),
)
# Like the Annotate keys (blocks.KEYBOARD_JS): only buttons on screen, never while typing.
KEYBOARD_JS = """
<script>
document.addEventListener('keydown', (event) => {
  const target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey || event.shiftKey || event.repeat) return;
  if (target && (target.tagName === 'TEXTAREA' || target.tagName === 'INPUT' || target.isContentEditable)) return;
  const ids = {'1': 'btn-adj-a', '2': 'btn-adj-b', '3': 'btn-adj-tie', '4': 'btn-adj-both-bad', 'n': 'btn-adj-next'};
  const id = ids[event.key.toLowerCase()];
  const button = id ? document.getElementById(id) : null;
  if (!button || button.offsetParent === null || button.disabled) return;
  event.preventDefault();
  button.click();
});
</script>
"""


def build(ctx: AppContext, blocks: gr.Blocks) -> AdminParts:
    def shown(case: Any, done: str = "") -> tuple[Any, ...]:
        texts = view.case_view(case, done)
        has_pair = case is not None
        return (*texts, "", *(gr.update(interactive=has_pair) for _ in BUTTONS))

    @ui_errors
    def next_pair(after: str | None, request: gr.Request) -> tuple[Any, ...]:
        ctx.user(request, "adjudicator")
        return shown(next_case(ctx.store, after=(after or None)))

    @ui_errors
    def open_tab(request: gr.Request) -> tuple[Any, ...]:
        user = ctx.user(request)
        if ctx.access.enabled and ctx.access.role_of(user) not in ("adjudicator", "admin"):
            return tuple(gr.skip() for _ in outputs)
        return shown(next_case(ctx.store))

    def make_verdict(verdict: str, text: str) -> Callable[..., tuple[Any, ...]]:
        @ui_errors
        def give(pair_id: Any, rationale: Any, request: gr.Request) -> tuple[Any, ...]:
            user = ctx.user(request, "adjudicator")
            if not isinstance(pair_id, str) or not pair_id:
                raise StoreError("no pair is shown; ask for the next pair to adjudicate")
            if rationale is not None and not isinstance(rationale, str):
                raise StoreError(f"the rationale must be text, not {type(rationale).__name__}")
            adjudicate(ctx.store, pair_id, user, verdict, (rationale or "").strip() or None)
            done = f"Final verdict saved: {text.split('  ')[0]}."
            return shown(next_case(ctx.store), done)

        return give

    with gr.Tab("Adjudicate", id="adjudicate", visible=False) as tab:
        status = gr.Markdown(elem_id="adj-status")
        prompt = gr.Markdown(sanitize_html=True, elem_id="adj-prompt")
        with gr.Row(equal_height=False):
            with gr.Column():
                gr.Markdown("### Response A (as stored)")
                left = gr.Markdown(sanitize_html=True, elem_id="adj-a", elem_classes="response-box")
            with gr.Column():
                gr.Markdown("### Response B (as stored)")
                right = gr.Markdown(
                    sanitize_html=True, elem_id="adj-b", elem_classes="response-box"
                )
        votes = gr.Markdown(sanitize_html=True, elem_id="adj-votes")
        with gr.Row(elem_id="adj-verdicts"):
            buttons = [
                gr.Button(text, elem_id=elem_id, interactive=False)
                for _, text, elem_id, _ in BUTTONS
            ]
            next_button = gr.Button("Next pair  [n]", elem_id="btn-adj-next")
        rationale = gr.Textbox(label="Why (optional)", lines=2, elem_id="adj-rationale")
        pair_id = gr.Textbox(label="Pair", interactive=False, elem_id="adj-pair-id")

    outputs = [status, prompt, left, right, votes, pair_id, rationale, *buttons]
    tab.select(open_tab, None, outputs, api_name="adjudicate_open", api_visibility="private")
    next_button.click(next_pair, [pair_id], outputs, api_name="adjudicate_next")
    for component, (verdict, text, _, api_name) in zip(buttons, BUTTONS, strict=True):
        component.click(
            make_verdict(verdict, text),
            [pair_id, rationale],
            outputs,
            api_name=api_name,
            trigger_mode="once",
        )
    return AdminParts(tab)
