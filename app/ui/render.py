"""Turning stored and remote texts into HTML that shows them and can do nothing else.

A prompt, a response, a rationale, a judge's answer, an endpoint's error or an annotator's
name is content: it may carry HTML, CSS or Markdown written to act on the page (draw a
fake button over a real one, fetch `/logout` as an image). Every such text is shown
through this module, in one of two ways:

* `safe_html(text)`: the text as Markdown, rendered by markdown-it-py (CommonMark, the
  parser Gradio itself uses on the server) with raw HTML off, so `<b>` is text; images
  become links (`[image: alt]`) and are never fetched; the result goes through `nh3`
  (ammonia) with a strict allow-list: a few text tags, no `style`, no `class`, no `id`,
  no `img`/`iframe`/`svg`/`form`/`input`, links only to absolute http/https/mailto
  addresses with `rel="noopener noreferrer nofollow"`.
* `plain(text)`: one line of plain text (a name, a reason, a table cell, an error inside
  a Markdown line we write ourselves), with every character that HTML or Markdown could
  read as markup written as a character reference, so it is shown as typed.

Gradio's `gr.Markdown` and `gr.Chatbot` parse their value again in the browser (marked,
KaTeX, mermaid). `safe_html` hands them a single line that starts with our `<div>`, which
Markdown passes through as one raw HTML block; newlines, `$`, `\\` and `%` inside it are
character references, so the browser finds no Markdown, no LaTeX delimiter and nothing
to re-interpret. The `pl-content` container (CSS in `blocks.py`) clips and isolates what
is inside it, so content cannot draw outside its box.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import nh3
from markdown_it import MarkdownIt

CONTAINER_CLASS = "pl-content"
ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s",
        "code", "pre", "blockquote", "ul", "ol", "li", "a",
        "table", "thead", "tbody", "tr", "th", "td",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"
# Written as character references after sanitising: the browser's Markdown pass then sees
# no line break (the block stays one raw HTML block), no LaTeX delimiter ($$, \( \[) and no
# placeholder of its own (%%%LATEX_BLOCK_n%%%). Inside HTML they read as the same text.
_INERT = str.maketrans({"\n": "&#10;", "\r": "", "$": "&#36;", "\\": "&#92;", "%": "&#37;"})
# For `plain`: every character that starts markup in HTML (& < >), in Markdown inside a
# line (code spans, emphasis, links and images, strike-through, table cells, escapes) or
# in the browser's own pass (LaTeX, its placeholders). Line starts (#, -, 1.) never occur:
# `plain` is one line that goes after our own words.
# A lone `$` (a price) stays: only `$$` opens LaTeX in the app's components.
_PLAIN = str.maketrans({c: f"&#{ord(c)};" for c in "&<>\"'`*_[]!|~\\%#"})


def _image_as_link(self: Any, tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
    """An image is shown as a link to it (never fetched); the sanitiser vets the address."""
    token = tokens[idx]
    alt = self.renderInline(token.children or [], options, env) or "image"
    src = html.escape(str(token.attrGet("src") or ""), quote=True)
    return f'<a href="{src}">[image: {alt}]</a>'


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("image", _image_as_link)
    return md


_MD = _parser()


def sanitize(fragment: str) -> str:
    """HTML through the allow-list: what is not listed goes (its text stays, as text)."""
    return nh3.clean(
        fragment,
        tags=set(ALLOWED_TAGS),
        clean_content_tags={"script", "style"},
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        url_relative="deny",  # no link into the app's own routes (/logout, /file=...)
        link_rel=LINK_REL,
        strip_comments=True,
    )


def contained(inner_html: str) -> str:
    """Already-safe HTML in the content container, on one inert line (see module doc).

    The line breaks markdown-it puts between tags go (a literal `>` or `<` in text is
    always `&gt;`/`&lt;`, so `>\\n<` is only ever between tags); the rest, in text and in
    `<pre>`, become `&#10;`, which reads the same."""
    one_line = inner_html.strip().replace(">\n<", "><").translate(_INERT)
    return f'<div class="{CONTAINER_CLASS}">{one_line}</div>'


def render_html(text: str) -> str:
    """Markdown to sanitised HTML, without the container (for composing several texts)."""
    return sanitize(_MD.render(text or ""))


def safe_html(text: str | None) -> str:
    """A stored or remote text as Markdown, rendered safe and contained (one line)."""
    return contained(render_html(text or ""))


def plain(text: Any) -> str:
    """A text shown as typed on one line, inert in HTML and in Markdown (names, cells)."""
    one_line = " ".join(str("" if text is None else text).split())
    return one_line.translate(_PLAIN).replace("$$", "&#36;&#36;")


def code_block(text: str) -> str:
    """A log or raw answer shown as typed, in a preformatted, contained block (one line,
    blank lines around it so it stands as its own block inside a Markdown text)."""
    return "\n\n" + contained(f"<pre><code>{html.escape(text or '')}</code></pre>") + "\n\n"


def safe_markdown(text: str | None) -> str:
    """The name the tabs used before: the same as `safe_html`."""
    return safe_html(text)


def conversation(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Chatbot messages for a prompt; a system turn is shown as a labelled user-side note."""
    shown = []
    for message in messages:
        role = message["role"]
        if role == "system":
            body = "<p><em>System:</em></p>" + render_html(message["content"])
            shown.append({"role": "user", "content": contained(body)})
        else:
            content = safe_html(message["content"])
            shown.append({"role": "user" if role == "user" else "assistant", "content": content})
    return shown
