"""Issue 14, class 2 in real Chromium: the logged-in app works, a page on another port of
the same host cannot use the admin's cookie, and no run history is left in localStorage.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browsing import CHROMIUM
from tests.fakes.served_app import PASSWORDS, Served, free_port, stop
from tests.reliability.served_guarded import serve_guarded

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs /usr/bin/chromium (scripts/ensure-chromium.sh)"
    ),
]

RUN_HISTORY = "gradio:run-history:"  # the prefix of Gradio's run-history localStorage keys


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = serve_guarded(tmp_path_factory.mktemp("browser-sessions"), n=12)
    yield running
    stop(running)


@pytest.fixture
def attacker_page() -> Iterator[str]:
    """An HTML page served on another port of 127.0.0.1 (the reported attack)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = b"<!doctype html><title>other app</title><p>hello</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def log_in(page: Any, served: Served, user: str) -> None:
    page.goto(served.url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Login").click()
    page.locator("#btn-a").wait_for(state="visible", timeout=30_000)


def run_history_keys(page: Any) -> list[str]:
    keys = page.evaluate("Object.keys(window.localStorage)")
    return [k for k in keys if k.startswith(RUN_HISTORY)]


def test_labelling_works_and_leaves_no_run_history(browser: Any, served: Served) -> None:
    from playwright.sync_api import expect

    context = browser.new_context()
    page = context.new_page()
    refused: list[str] = []
    page.on("response", lambda r: refused.append(r.url) if r.status == 403 else None)
    log_in(page, served, "ann1")
    expect(page.locator("#progress")).to_contain_text("still want a label", timeout=15_000)
    for _ in range(2):
        page.locator("#btn-a").click()
        page.wait_for_timeout(300)
    expect(page.locator("#progress")).to_contain_text("today: 2 ", timeout=15_000)
    assert refused == []  # the page's own calls all pass the guard
    assert run_history_keys(page) == []
    page.goto(served.url + "logout")
    page.get_by_label("username").wait_for(timeout=30_000)
    assert run_history_keys(page) == []
    context.close()


def test_a_page_on_another_port_cannot_use_the_admins_cookie(
    browser: Any, served: Served, attacker_page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.ui import data_io

    exports: list[Any] = []
    real = data_io.export_dataset
    monkeypatch.setattr(data_io, "export_dataset", lambda *a: exports.append(a) or real(*a))
    context = browser.new_context()
    page = context.new_page()
    log_in(page, served, "boss")  # the admin is logged in, in this browser
    other = context.new_page()
    other.goto(attacker_page)
    result = other.evaluate(
        """async (url) => {
            const out = {};
            for (const [name, init] of Object.entries({
                fetch_export: {method: 'POST', credentials: 'include',
                    headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({data: ['trl', 0]})},
                form_post: {method: 'POST', credentials: 'include', mode: 'no-cors',
                    headers: {'Content-Type': 'text/plain'},
                    body: JSON.stringify({data: ['trl', 0]})},
            })) {
                try {
                    const r = await fetch(url + 'gradio_api/run/export', init);
                    out[name] = r.type === 'opaque' ? 'opaque' : await r.text();
                } catch (e) { out[name] = 'blocked: ' + e.name; }
            }
            try {
                const r = await fetch(url + 'config', {credentials: 'include'});
                out.read_config = await r.text();
            } catch (e) { out.read_config = 'blocked: ' + e.name; }
            return out;
        }""",
        served.url,
    )
    assert result["fetch_export"].startswith("blocked")
    assert result["read_config"].startswith("blocked")
    assert result["form_post"] == "opaque"  # sent, but refused by the guard (nothing ran)
    assert exports == []
    assert page.locator("#btn-a").is_visible()  # the admin's own page still works
    context.close()
