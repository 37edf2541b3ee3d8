"""What the Adjudicate tab shows: a pair whose human votes split, unblinded.

The responses are shown as stored (A, B), and every earlier vote with who gave it, its
verdict in the stored orientation, whether that annotator saw A and B swapped, its
strength and its rationale. Every stored text goes through `app.ui.render`. No Gradio here.
"""

from __future__ import annotations

import html

from app.ui.render import contained, plain, render_html, safe_html, sanitize
from data.adjudication import Case, Vote

VERDICT_NAMES = {"a": "A better", "b": "B better", "tie": "tie", "both_bad": "both bad"}
EMPTY = (
    "**Nothing to adjudicate.** No pair has split human votes without a final verdict. "
    "Pairs come here when their human labels split evenly (raise `needed_labels` for "
    "overlap when routing)."
)


def prompt_html(case: Case) -> str:
    parts = []
    for message in case.pair.messages:
        role = html.escape(str(message["role"]).capitalize())
        parts.append(f"<p><strong>{role}:</strong></p>{render_html(message['content'])}")
    return contained(sanitize("".join(parts)))


def vote_line(vote: Vote) -> str:
    parts = [
        f"**{plain(vote.who)}**",
        f"**{VERDICT_NAMES[vote.verdict]}**",
        "saw A and B swapped" if vote.swapped else "saw A and B as stored",
        None if vote.confidence is None else f"strength {vote.confidence:.2f}",
        f"{vote.created_at:%Y-%m-%d %H:%M}",
    ]
    line = " · ".join(p for p in parts if p)
    if vote.rationale:
        line += f" — *{plain(vote.rationale)}*"
    return line


def votes_markdown(case: Case) -> str:
    lines = [f"**Earlier votes** ({len(case.votes)}), relative to A and B as shown here:", ""]
    lines += [f"- {vote_line(v)}" for v in case.votes]
    return safe_html("\n".join(lines))


def status_markdown(case: Case | None, done: str = "") -> str:
    head = f"{done} " if done else ""
    if case is None:
        return head + EMPTY
    return (
        head + f"**{case.waiting}** pair(s) wait for a final verdict. "
        "Keys: 1 A better · 2 B better · 3 tie · 4 both bad · n next pair."
    )


def case_view(case: Case | None, done: str = "") -> tuple[str, str, str, str, str, str]:
    """(status, prompt, response A, response B, votes, pair id) for the tab."""
    if case is None:
        return (status_markdown(None, done), "", "", "", "", "")
    return (
        status_markdown(case, done),
        prompt_html(case),
        safe_html(case.pair.response_a),
        safe_html(case.pair.response_b),
        votes_markdown(case),
        case.pair.pair_id,
    )
