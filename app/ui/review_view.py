"""What the Review tab shows: the matching pairs as a table, one pair with its audit trail.

Every stored text (prompts, responses, rationales, names, reasons) goes through
`app.ui.render`: rendered on the server, sanitised and contained, so it shows and cannot act
(raw HTML is text). No Gradio here: the tab module wires these up.
"""

from __future__ import annotations

import html
import re
from typing import Any

from app.ui.render import contained, plain, render_html, safe_html, sanitize
from data.errors import ConfigError
from data.review import LabelEntry, PairDetail, ReviewFilter, ReviewPage
from data.schema import SOURCES

ANY = "any"
TABLE_COLUMNS = ["pair", "prompt", "labels"]
VERDICT_NAMES = {"a": "A better", "b": "B better", "tie": "tie", "both_bad": "both bad"}
_LABEL_ID = re.compile(r"^\s*#?(\d+)\b")


def review_filter(
    source: str | None,
    who: str | None,
    verdict: str | None,
    round: str | float | None,
    disagree: bool,
) -> ReviewFilter:
    """The tab's inputs ("any" or empty: no condition) as a `ReviewFilter`."""
    if source not in (None, "", ANY) and source not in SOURCES:
        raise ConfigError(f"source {source!r} is not one of {ANY}, {', '.join(SOURCES)}")
    return ReviewFilter(
        source=None if source in (None, "", ANY) else source,
        who=(who or "").strip() or None,
        verdict=None if verdict in (None, "", ANY) else verdict,
        round=_round(round),
        disagree=bool(disagree),
    )


def _round(value: str | float | None) -> int | None:
    text = str(value if value is not None else "").strip()
    if text in ("", ANY):
        return None
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise ConfigError(f"round {text!r} is not a whole number; leave it empty for any round")
    return int(number)


def table_rows(page: ReviewPage) -> list[list[str]]:
    return [[row.pair_id, row.prompt, row.labels] for row in page.rows]


def count_markdown(page: ReviewPage) -> str:
    if not page.total:
        return "No labelled pair matches these filters."
    shown = (
        f"; showing the **{len(page.rows)}** most recently labelled"
        if len(page.rows) < page.total
        else ""
    )
    return f"**{page.total}** labelled pair(s) match{shown}. Click a row to open it."


def pair_markdown(detail: PairDetail) -> tuple[str, str, str]:
    """(prompt, response A, response B), A and B as stored (labels are relative to these)."""
    pair = detail.pair
    parts = [
        f"<p><strong>Pair</strong> <code>{html.escape(pair.pair_id)}</code> · "
        f"queue {html.escape(str(pair.queue))}</p>"
    ]
    for message in pair.messages:
        role = html.escape(str(message["role"]).capitalize())
        parts.append(f"<p><strong>{role}:</strong></p>{render_html(message['content'])}")
    prompt = contained(sanitize("".join(parts)))
    return prompt, safe_html(pair.response_a), safe_html(pair.response_b)


def labels_markdown(detail: PairDetail) -> str:
    """Every label, oldest first; retracted ones struck through, with who retracted and why."""
    if not detail.labels:
        return "*No labels on this pair.*"
    lines = [f"**Labels** ({len(detail.active_labels)} active, {len(detail.labels)} in all)", ""]
    lines += [f"- {label_line(label)}" for label in detail.labels]
    return safe_html("\n".join(lines))


def label_line(label: LabelEntry) -> str:
    what = " · ".join(
        part
        for part in (
            f"#{label.label_id}",
            label.source,
            _inline(label.who),
            f"**{VERDICT_NAMES[label.verdict]}**",
            f"round {label.round}",
            None if label.confidence is None else f"confidence {label.confidence:.2f}",
            "shown swapped" if label.swapped else None,
            f"{label.created_at:%Y-%m-%d %H:%M}",
        )
        if part
    )
    if label.corrects is not None:
        what += f" · corrects #{label.corrects}"
    if label.rationale:
        what += f" — *{_inline(label.rationale)}*"
    if not label.active:
        what = f"~~{what}~~\n  **retracted** {label.retracted_at:%Y-%m-%d %H:%M}"
        if label.corrected_by is not None:
            why = f": {_inline(label.reason)}" if label.reason else ""
            what += f" by {_inline(label.corrected_by)}{why}; replaced by #{label.replaced_by}"
        elif label.source == "human":
            what += " (undone by its annotator)"
    return what


def label_choices(detail: PairDetail) -> list[tuple[str, str]]:
    """The active labels as dropdown choices: (what the admin reads, the label id)."""
    return [
        (
            f"#{x.label_id} {x.source} {x.who}: {VERDICT_NAMES[x.verdict]}",
            str(x.label_id),
        )
        for x in detail.active_labels
    ]


def parse_label_id(value: Any) -> int:
    """A label id from the dropdown ("12", 12 or "#12 judge ...")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    found = _LABEL_ID.match(str(value or ""))
    if not found:
        raise ConfigError(
            "pick the label to correct (open a pair first, then choose one of its labels)"
        )
    return int(found.group(1))


def _inline(text: str | None) -> str:
    """A stored text on one line of a Markdown list, shown as typed."""
    return plain(text)
