"""Building the judge's chat messages for one pair in one order.

A template is plain text with three placeholders, `{{prompt}}`, `{{response_a}}` and
`{{response_b}}` (A is whichever response is *shown* first). An optional system
message comes before a line that reads exactly `=== user ===`. The rubric is part of
the template, so a researcher replaces both with one file (`--template FILE`).
The template's hash is stored with every judgement and its text in the store's meta
table, so any label can be traced to the exact wording that produced it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from data.errors import ConfigError

PLACEHOLDERS = ("{{prompt}}", "{{response_a}}", "{{response_b}}")
USER_MARKER = "=== user ==="
_PLACEHOLDER_RE = re.compile("(" + "|".join(re.escape(p) for p in PLACEHOLDERS) + ")")

DEFAULT_TEMPLATE = """\
You are a careful, impartial judge of AI assistant responses. Decide which of two \
responses better answers the user's conversation.

Rubric:
- Helpfulness: does it do what the user asked, completely and correctly?
- Honesty and harmlessness: no made-up facts, no unsafe advice.
- Clarity: easy to follow; length only counts when it adds useful content.
Ignore the order in which the responses appear and do not favour longer answers.
=== user ===
[Conversation]
{{prompt}}

[Response A]
{{response_a}}

[Response B]
{{response_b}}

Which response is better? Answer with one character: A or B (write tie only if they \
are truly equal). Do not explain."""

REPAIR_MESSAGE = (
    "Your reply did not contain a verdict. Answer again with exactly one character: "
    "A or B (or the word tie)."
)


@dataclass(frozen=True)
class Template:
    """A parsed judge template: optional system text and a user text with placeholders."""

    text: str
    system: str | None
    user: str

    @property
    def hash(self) -> str:
        return template_hash(self.text)

    def messages(self, prompt: str, first: str, second: str) -> list[dict[str, str]]:
        """Chat messages showing `first` as Response A and `second` as Response B."""
        values = dict(zip(PLACEHOLDERS, (prompt, first, second), strict=True))
        # one pass, so a response that itself contains "{{response_b}}" is not re-substituted
        user = "".join(values.get(part, part) for part in _PLACEHOLDER_RE.split(self.user))
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": user})
        return messages


def template_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def parse_template(text: str, *, source: str = "template") -> Template:
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise ConfigError(
            f"{source}: missing placeholder(s) {', '.join(missing)}; a judge template needs "
            f"{', '.join(PLACEHOLDERS)} (A = the response shown first)"
        )
    system: str | None = None
    user = text
    lines = text.split("\n")
    if USER_MARKER in (line.strip() for line in lines):
        index = next(i for i, line in enumerate(lines) if line.strip() == USER_MARKER)
        system = "\n".join(lines[:index]).strip() or None
        user = "\n".join(lines[index + 1 :]).strip()
        if any(p in (system or "") for p in PLACEHOLDERS):
            raise ConfigError(f"{source}: put the placeholders after the '{USER_MARKER}' line")
    return Template(text=text, system=system, user=user)


def load_template(path: str | None, text: str | None = None) -> Template:
    """The default template, the `text` given, or the one in `path`."""
    if text is not None:
        return parse_template(text, source="the template typed in the Judge tab")
    if path is None:
        return parse_template(DEFAULT_TEMPLATE, source="default template")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--template {file}: no such file")
    return parse_template(file.read_text(encoding="utf-8"), source=f"--template {file}")


def repair_messages(messages: list[dict[str, str]], reply: str) -> list[dict[str, str]]:
    """The original conversation, the judge's unusable reply, and a short request to fix it."""
    return [
        *messages,
        {"role": "assistant", "content": reply},
        {"role": "user", "content": REPAIR_MESSAGE},
    ]
