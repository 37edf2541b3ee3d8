"""Turning stored texts into Markdown that renders code but never runs anything.

Two layers: `safe_markdown` escapes every `<` outside code (so raw HTML shows as text)
and disarms `javascript:`-style link targets; Gradio's `sanitize_html=True` on every
Markdown/Chatbot component is the second layer.
"""

from __future__ import annotations

import re

# fenced blocks (``` or ~~~) and inline code spans are left as they are: Markdown
# already shows their content literally.
_CODE = re.compile(r"(```[\s\S]*?(?:```|$)|~~~[\s\S]*?(?:~~~|$)|`[^`\n]*`)")
_BAD_SCHEME = re.compile(r"(?i)\b(javascript|vbscript|data)\s*:")


def safe_markdown(text: str) -> str:
    """Markdown with raw HTML escaped and script URLs disarmed; code blocks untouched."""
    parts = _CODE.split(text)
    for index in range(0, len(parts), 2):  # even indexes are outside code
        part = parts[index].replace("&", "&amp;").replace("<", "&lt;")
        parts[index] = _BAD_SCHEME.sub(lambda m: f"{m.group(1)}&#58;", part)
    return "".join(parts)


def conversation(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Chatbot messages for a prompt; a system turn is shown as a labelled user-side note."""
    shown = []
    for message in messages:
        role = message["role"]
        content = safe_markdown(message["content"])
        if role == "system":
            shown.append({"role": "user", "content": f"*System:* {content}"})
        else:
            shown.append({"role": "user" if role == "user" else "assistant", "content": content})
    return shown
