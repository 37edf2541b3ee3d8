"""Issue 14, class 1: content can act on the page. A response, a prompt, a rationale, a
judge's error or a name may carry HTML and CSS written to draw over the label buttons or to
make the browser request the app's own routes (`<img src="/logout">`). None of it may.

Without a browser: every payload, through every renderer in `app.ui.render`, leaves only
allow-listed tags and attributes (no `style`, no `class` of its own, no `<img>`, no `on*`,
no `javascript:`), on one line the browser's Markdown pass cannot re-read.
In real Chromium: on pairs carrying the payloads, the topmost element at each label
button's centre is that button, showing a pair makes no request to the app's own routes
beyond Gradio's API and assets (no `/logout`, no image), and a click on A stores A.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from app.ui import review_view
from app.ui.render import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_TAGS,
    CONTAINER_CLASS,
    code_block,
    conversation,
    plain,
    safe_html,
)
from data import queue
from data.ingest import ingest
from data.project import update_project
from data.review import LabelEntry
from data.shapes import PairRecord
from data.store import PreferenceStore

FAKE_BUTTON = (
    "background:#f97316;color:white;font:600 18px sans-serif;padding:14px 60px;"
    "border-radius:8px;z-index:2147483647"
)
# Overlays first (the browser test shows these), then every other trick. Each is one case.
OVERLAYS = [
    # a backslash-escaped backtick: a regex took what follows for code, Markdown does not
    f'\\`<div style="position:fixed;left:0;right:0;bottom:0;height:60vh;{FAKE_BUTTON}">B better [2]</div>`',
    '\\`<img src="/logout" alt="">` and \\`<img src="/gradio_api/file=/etc/hostname">`',
    f'<div style="position:fixed;left:0;right:0;bottom:0;top:0;{FAKE_BUTTON}">B better [2]</div>',
    f'<div style="position:fixed;left:0;top:55%;width:100vw;height:45vh;{FAKE_BUTTON}">B better [2]</div>',
    f'<span style="position:absolute;top:400px;left:0;{FAKE_BUTTON}">A better [1]</span>',
    f'<button style="position:fixed;inset:0;{FAKE_BUTTON}">Tie [3]</button>',
    f'<a href="#" style="position:fixed;inset:0;display:block;{FAKE_BUTTON}">Skip [s]</a>',
    '<img src="/logout" style="position:fixed;inset:0;width:100vw;height:100vh">',
    "![B better [2]](/logout)",
    "<style>#btn-a{display:none} body::after{content:'B better';position:fixed;inset:0}</style>",
    "<style>@import url('/logout');</style>",
    '<link rel="stylesheet" href="/logout">',
    '<svg style="position:fixed;inset:0" width="3000" height="3000"><rect width="100%" '
    'height="100%" fill="orange"/></svg>',
    '`a`b` <div style="position:fixed;inset:0;z-index:99999;background:red">B</div>',
    '- item\n  - nested <div style="position:fixed;inset:0;background:red">B better</div>',
    '| a | b |\n|---|---|\n| <div style="position:fixed;inset:0">B</div> | x |',
    "&lt;div style=&quot;position:fixed;inset:0&quot;&gt;B&lt;/div&gt; and &#60;img src=/logout&#62;",
    '<table style="position:fixed;inset:0"><tr><td>B better [2]</td></tr></table>',
]
OTHERS = [
    "<script>window.__xss = 1</script>",
    '<img src=x onerror="window.__xss = 2">',
    '<svg onload="window.__xss = 3"></svg>',
    '<iframe src="/logout"></iframe>',
    '<iframe srcdoc="<script>parent.__xss = 4</script>"></iframe>',
    '<body onload="window.__xss = 5">',
    '<a href="javascript:window.__xss = 6">link</a>',
    "[md link](javascript:window.__xss=7)",
    "[md link](JaVaScRiPt:window.__xss=7)",
    "[md link](java&#115;cript:window.__xss=7)",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[vb](vbscript:msgbox(1))",
    '<details open ontoggle="window.__xss = 8">',
    '<input autofocus onfocus="window.__xss = 9">',
    '"><script>window.__xss = 10</script>',
    '<math><mtext><table><mglyph><style><img src=x onerror="window.__xss = 11">',
    '<object data="/logout"></object>',
    '<embed src="/logout">',
    '![img](x" onerror="window.__xss = 13)',
    '![x](https://example.org/x.png "title")',
    "![x](/gradio_api/file=/etc/passwd)",
    "![x](//evil.example/x.png)",
    "<video src=/logout autoplay></video><audio src=/logout autoplay></audio>",
    '<form action="/logout"><button>B better [2]</button></form>',
    '<meta http-equiv="refresh" content="0;url=/logout">',
    '<base href="https://evil.example/">',
    '<div class="mermaid">graph TD; A-->B</div>',
    "```mermaid\ngraph TD;\nA-->B\n```",
    "$$\\href{/logout}{x}$$ and \\(\\htmlStyle{position:fixed}{x}\\)",
    "%%%LATEX_BLOCK_0%%% and $$x$$",
    "<!-- <img src=/logout> -->",
    "<![CDATA[<img src=/logout>]]>",
    "`code <img src=/logout>` and ``double `tick` <b>``",
    '```html\n<img src=/logout>\n\n\n<div style="position:fixed">B</div>\n```',
    "    indented <img src=/logout>",
    "> quote <img src=/logout>\n> > nested <div style=position:fixed>B</div>",
    "1. one\n2. <div style=position:fixed>two</div>\n   - deep <img src=/logout>",
    "<https://example.org/ok> and <javascript:alert(1)> and <mailto:a@b.c>",
    "[ref][1]\n\n[1]: /logout",
    "[ref][1]\n\n[1]: javascript:alert(1)",
    "***bold italic*** ~~struck~~ <u>u</u> <sub>s</sub> <mark>m</mark>",
    "# Heading <img src=/logout>\n\n## B better [2]",
    "Line one\nLine two\n\n<p style=color:red>para</p>",
    "\u202eRTL override\u202c and zero\u200bwidth",
    "<x-foo style=position:fixed onclick=alert(1)>custom</x-foo>",
    "<a href=/logout>own route</a> <a href='https://ok.example/'>ok</a>",
    '<a href="https://ok.example/" target="_top" style="position:fixed">B</a>',
    "<noscript><img src=/logout></noscript>",
    "<template><img src=/logout></template>",
    "<select><option>B better</option></select><textarea>x</textarea>",
]
PAYLOADS = OVERLAYS + OTHERS
_ATTRIBUTES_KEPT = {name for names in ALLOWED_ATTRIBUTES.values() for name in names} | {"rel"}
_INLINE_ATTRS = re.compile(r"<[^>]*\s(style|class|id|on\w+|src|srcdoc|action)\s*=", re.I)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_inert(out: str, *, contained: bool = True) -> None:
    """Only allow-listed tags and attributes; links only to absolute http/https/mailto."""
    parser = _Tags()
    parser.feed(out)
    tags = parser.tags
    if contained:
        assert tags and tags[0] == ("div", [("class", CONTAINER_CLASS)]), out[:120]
        tags = tags[1:]
        assert "\n" not in out and "$$" not in out and "\\" not in out and "%%%" not in out
    for tag, attrs in tags:
        assert tag in ALLOWED_TAGS, (tag, out)
        for name, value in attrs:
            assert name in _ATTRIBUTES_KEPT, (tag, name, out)
            if name == "href":
                assert urlparse(value or "").scheme in ("http", "https", "mailto"), out
    inner = out.removeprefix(f'<div class="{CONTAINER_CLASS}">') if contained else out
    assert not _INLINE_ATTRS.search(inner), out
    assert "<img" not in out and "<style" not in out and "<link" not in out
    assert not re.search(r"<[^>]*javascript:", out, re.I), out


@pytest.mark.parametrize("payload", PAYLOADS)
def test_every_renderer_leaves_only_inert_html(payload: str) -> None:
    assert_inert(safe_html(payload))
    assert_inert(safe_html(f"text before\n\n{payload}\n\ntext after"))
    for message in conversation(
        [{"role": "system", "content": payload}, {"role": "user", "content": payload}]
    ):
        assert_inert(message["content"])
    assert_inert(code_block(payload).strip())
    shown = plain(payload)  # names, reasons, errors: one line, no markup character left
    assert not set(shown) & set("<>`*[]|~\\\n")
    assert_inert(safe_html(f"**Error**: {shown}"))


def test_overlays_and_images_in_the_review_audit_trail_are_inert() -> None:
    from datetime import datetime

    for payload in PAYLOADS:
        entry = LabelEntry(
            label_id=1,
            source="judge",
            who=payload,
            verdict="a",
            confidence=None,
            rationale=payload,
            swapped=False,
            round=1,
            created_at=datetime(2026, 12, 1),
            retracted_at=datetime(2026, 12, 2),
            corrected_by=payload,
            reason=payload,
            replaced_by=2,
            corrects=None,
        )
        detail = type("Detail", (), {"labels": [entry], "active_labels": []})()
        assert_inert(review_view.labels_markdown(detail))  # type: ignore[arg-type]


def test_the_text_is_still_shown() -> None:
    out = safe_html("Use `sorted()`:\n\n```python\nprint(1)\n```\n\n![cat](https://e.org/c.png)")
    assert "<code>sorted()</code>" in out and "print(1)" in out
    assert (
        '<a href="https://e.org/c.png" rel="noopener noreferrer nofollow">[image: cat]</a>' in out
    )
    assert "B better [2]" in safe_html(OVERLAYS[0])  # as text, in its box


# ---------------------------------------------------------------- the browser test

CHROME_ROUTES = ("/gradio_api/", "/assets/", "/static/", "/theme.css", "/config", "/favicon")
LABEL_SELECTORS = ("#btn-a-much", "#btn-a", "#btn-b", "#btn-b-much", "#btn-tie", "#btn-both-bad")
BUTTON_SELECTORS = (*LABEL_SELECTORS, "#btn-skip", "#btn-undo")
TOPMOST = """(selector) => {
  const button = document.querySelector(selector);
  button.scrollIntoView({block: 'center'});
  const r = button.getBoundingClientRect();
  const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return {ok: top === button || button.contains(top),
          top: top ? top.outerHTML.slice(0, 160) : null};
}"""


@pytest.fixture(scope="module")
def served_overlays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from app.ui.background import Background
    from app.ui.server import ServeConfig, launch, make_app
    from tests.fakes.served_app import Served, free_port, make_users

    tmp: Path = tmp_path_factory.mktemp("overlays")
    db = tmp / "store.duckdb"
    with PreferenceStore(db) as store:
        records = [
            PairRecord([{"role": "user", "content": f"Question {i}: {p}"}], f"Answer {i}: {p}", p)
            for i, p in enumerate(OVERLAYS)
        ]
        ids = ingest(store, records, origin="overlay").pair_ids
        queue.assign(
            store,
            [
                queue.Assignment(pid, "human", priority=float(len(ids) - i), needed_labels=2)
                for i, pid in enumerate(ids)
            ],
        )
        for pid, payload in zip(ids, OVERLAYS, strict=True):
            store.add_label(pid, source="judge", who=payload, verdict="b", rationale=payload)
        update_project(store, strength=True)  # all six label buttons on screen
    config = ServeConfig(port=free_port(), auth=str(make_users(tmp / "users.json")))
    store = PreferenceStore(db)
    ctx, blocks = make_app(store, config)
    ctx.runs_root = str(tmp / "runs")
    ctx.judge_task = Background("judge", error=" ".join(OVERLAYS))  # an endpoint's error text
    launch(ctx, blocks, config, block=False)
    running = Served(f"http://127.0.0.1:{config.port}/", store, ctx, blocks, list(ids))
    yield running
    blocks.close()
    ctx.close()
    store.close()


def own_requests(requests: list[Any], origin: str) -> list[str]:
    """Requests other than Gradio's own: its API, its assets and the page itself (loaded
    once after login). An image, a stylesheet or media from anywhere else is content acting,
    and so is any request to another host."""
    bad = []
    for request in requests:
        url = urlparse(request.url)
        if f"{url.scheme}://{url.netloc}" != origin:
            bad.append(request.url)
        elif url.path == "/" and request.resource_type == "document":
            continue
        elif (
            not url.path.startswith(CHROME_ROUTES)
            or "file=" in request.url
            or (
                request.resource_type in ("image", "media", "stylesheet", "object")
                and not url.path.startswith(("/assets/", "/static/", "/theme.css"))
            )
        ):
            bad.append(f"{request.resource_type} {request.url}")
    return bad


@pytest.mark.browser
def test_overlays_cannot_cover_the_buttons_nor_call_the_app(served_overlays: Any) -> None:
    from playwright.sync_api import expect

    from tests.browsing import CHROMIUM

    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium")
    from tests.browsing import ARGS, WATCH_XSS, assert_no_script_ran
    from tests.fakes.served_app import PASSWORDS

    playwright_api = pytest.importorskip("playwright.sync_api")
    served = served_overlays
    origin = served.url.rstrip("/")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(WATCH_XSS)
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(served.url)
        page.get_by_label("username").fill("ann1")
        page.get_by_label("password").fill(PASSWORDS["ann1"])
        page.get_by_role("button", name="Login").click()
        requests: list[Any] = []
        page.on("request", lambda request: requests.append(request))
        checked = 0
        for count in range(len(OVERLAYS)):
            expect(page.locator("#progress")).to_contain_text(f"today: {count} ", timeout=20_000)
            expect(page.locator("#prompt")).to_contain_text(f"Question {count}", timeout=15_000)
            expect(page.locator("#btn-a")).to_be_enabled(timeout=15_000)
            page.wait_for_timeout(300)  # the Markdown and any (wrong) fetch settle
            for selector in BUTTON_SELECTORS:
                found = page.evaluate(TOPMOST, selector)
                assert found["ok"], (count, selector, found["top"])
                checked += 1
            assert own_requests(requests, origin) == [], count
            content = page.locator(
                "#prompt .pl-content, #response-a .pl-content, #response-b .pl-content"
            )
            assert content.count() >= 3  # the prompt and both responses, in their boxes
            inside = "img, style, link, svg, iframe, object, [style], [class], [id], [src]"
            assert content.locator(inside).count() == 0
            requests.clear()
            box = page.locator("#btn-a").bounding_box()  # a real click, where A reads
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            expect(page.locator("#status")).to_contain_text("Saved: A better", timeout=15_000)
            expect(page.locator("#progress")).to_contain_text(
                f"today: {count + 1} ", timeout=20_000
            )
            labels = served.store.labels("AND source = 'human' AND who = 'ann1'")
            assert len(labels) == count + 1
            label = labels[-1]
            assert label["verdict"] == ("b" if label["swapped"] else "a"), label
        assert checked == len(OVERLAYS) * len(BUTTON_SELECTORS)
        assert_no_script_ran(page, dialogs)
        context.close()

        # the admin's tabs: an endpoint error (Judge) and the audit trail (Review)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(served.url)
        page.get_by_label("username").fill("boss")
        page.get_by_label("password").fill(PASSWORDS["boss"])
        page.get_by_role("button", name="Login").click()
        expect(page.locator("#progress")).to_contain_text("still want a label", timeout=20_000)
        requests = []
        page.on("request", lambda request: requests.append(request))
        page.get_by_role("tab", name="Judge").click()
        error = page.locator("span.md", has_text="Batch").filter(has_text="B better [2]")
        expect(error).to_be_visible(timeout=15_000)  # the error text, as text
        page.wait_for_timeout(2500)  # a status tick re-renders it
        assert error.locator("img, style, link, svg, [style], button, div").count() == 0
        page.get_by_role("tab", name="Review").click()
        page.locator("#review-pair-id input, #review-pair-id textarea").first.fill(
            served.pair_ids[0]
        )
        page.locator("#btn-review-open").click()
        expect(page.locator("#review-labels")).to_contain_text("B better [2]", timeout=15_000)
        page.wait_for_timeout(500)
        content = page.locator("#review-prompt .pl-content, #review-labels .pl-content")
        assert content.count() == 2
        inside = "img, style, link, svg, iframe, object, [style], [class], [id], [src]"
        assert content.locator(inside).count() == 0
        assert own_requests(requests, origin) == []
        expect(page.locator("#btn-review-open")).to_be_visible()  # still logged in
        context.close()
        browser.close()
