"""The Review tab (admins): find labelled pairs, open one with its labels, correct a label.

Every handler checks the admin role on the server, so an annotator calling
`review_search`, `review_open` or `review_correct` through the API is refused; the row
click (`review_select`) is for the browser only and checks the role too.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.ui import review_view as review
from app.ui.context import AppContext
from app.ui.events import AdminParts, ui_errors
from data import review as store_review
from data.errors import ConfigError
from data.schema import SOURCES, VERDICTS


def build(ctx: AppContext, blocks: gr.Blocks) -> AdminParts:  # noqa: PLR0915 - one layout
    def detail_outputs(pair_id: str, status: str) -> tuple[Any, ...]:
        pair_id = (pair_id or "").strip()
        if not pair_id:
            raise ConfigError("enter a pair id, or click a row of the table")
        detail = store_review.pair_detail(ctx.store, pair_id)
        prompt, left, right = review.pair_markdown(detail)
        return (
            pair_id,
            prompt,
            left,
            right,
            review.labels_markdown(detail),
            gr.Dropdown(choices=review.label_choices(detail), value=None),
            status,
        )

    @ui_errors
    def search(
        source: str,
        who: str,
        verdict: str,
        round: str | None,
        disagree: bool,
        request: gr.Request,
    ) -> tuple[str, list[list[str]]]:
        ctx.user(request, "admin")
        page = store_review.find_pairs(
            ctx.store, review.review_filter(source, who, verdict, round, disagree)
        )
        return review.count_markdown(page), review.table_rows(page)

    @ui_errors
    def open_pair(pair_id: str, request: gr.Request) -> tuple[Any, ...]:
        ctx.user(request, "admin")
        return detail_outputs(pair_id, "")

    @ui_errors
    def select_row(evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
        ctx.user(request, "admin")
        row = evt.row_value or []
        return detail_outputs(str(row[0]) if row else "", "")

    @ui_errors
    def correct(
        pair_id: str, label: Any, verdict: str | None, reason: str, request: gr.Request
    ) -> tuple[Any, ...]:
        admin = ctx.user(request, "admin")
        if not verdict:
            raise ConfigError(f"choose the new verdict ({', '.join(VERDICTS)})")
        fixed = store_review.correct_label(
            ctx.store,
            review.parse_label_id(label),
            verdict=verdict,
            admin=admin,
            reason=reason,
            pair_id=(pair_id or "").strip() or None,
        )
        status = (
            f"Corrected label #{fixed.old_label_id} "
            f"({review.VERDICT_NAMES[fixed.old_verdict]} → {review.VERDICT_NAMES[fixed.verdict]}): "
            f"new label #{fixed.new_label_id} by {fixed.admin}."
        )
        return detail_outputs(fixed.pair_id, status)

    with gr.Tab("Review", id="review", visible=False) as review_tab:
        with gr.Row(equal_height=True):
            source = gr.Dropdown([review.ANY, *SOURCES], value=review.ANY, label="Source")
            who = gr.Textbox(label="Annotator / judge / file (who)", placeholder="any")
            verdict = gr.Dropdown([review.ANY, *VERDICTS], value=review.ANY, label="Verdict")
            round_ = gr.Textbox(label="Round", placeholder="any", elem_id="review-round")
            disagree = gr.Checkbox(label="Human and judge disagree")
            search_button = gr.Button("Search", variant="primary", elem_id="btn-review-search")
        count_md = gr.Markdown(elem_id="review-count")
        table = gr.Dataframe(
            headers=review.TABLE_COLUMNS,
            interactive=False,
            wrap=True,
            max_height=400,
            column_widths=["22%", "43%", "35%"],
            elem_id="review-table",
            label="Labelled pairs (at most 200)",
        )
        with gr.Row(equal_height=True):
            pair_box = gr.Textbox(label="Pair id", elem_id="review-pair-id", scale=3)
            open_button = gr.Button("Open pair", elem_id="btn-review-open", scale=1)
        prompt_md = gr.Markdown(sanitize_html=True, line_breaks=True, elem_id="review-prompt")
        with gr.Row(equal_height=True):
            with gr.Column():
                gr.Markdown("### Response A (as stored)")
                left = gr.Markdown(
                    sanitize_html=True,
                    line_breaks=True,
                    elem_id="review-a",
                    elem_classes="response-box",
                )
            with gr.Column():
                gr.Markdown("### Response B (as stored)")
                right = gr.Markdown(
                    sanitize_html=True,
                    line_breaks=True,
                    elem_id="review-b",
                    elem_classes="response-box",
                )
        labels_md = gr.Markdown(sanitize_html=True, line_breaks=True, elem_id="review-labels")
        with gr.Row(equal_height=True):
            label_pick = gr.Dropdown(
                [], label="Label to correct", allow_custom_value=True, elem_id="review-label"
            )
            new_verdict = gr.Radio(
                [(name, v) for v, name in review.VERDICT_NAMES.items()],
                label="New verdict",
                elem_id="review-verdict",
            )
            reason = gr.Textbox(label="Reason (optional)", elem_id="review-reason")
            correct_button = gr.Button(
                "Correct label", variant="primary", elem_id="btn-review-correct"
            )
        status_md = gr.Markdown(elem_id="review-status")

    detail = [pair_box, prompt_md, left, right, labels_md, label_pick, status_md]
    search_button.click(
        search,
        [source, who, verdict, round_, disagree],
        [count_md, table],
        api_name="review_search",
    )
    open_button.click(open_pair, [pair_box], detail, api_name="review_open")
    # a click on a row opens it; not for API clients, which call review_open with the id
    table.select(select_row, None, detail, api_name="review_select", api_visibility="private")
    correct_button.click(
        correct,
        [pair_box, label_pick, new_verdict, reason],
        detail,
        api_name="review_correct",
        trigger_mode="once",
    )
    return AdminParts(review_tab)
