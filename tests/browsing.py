"""Debian's Chromium for the browser tests: where it is, how it starts, what it watches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Records anything a payload could do: window.__xss, alert/confirm/prompt dialogs.
WATCH_XSS = (
    "window.__dialogs = []; for (const f of ['alert', 'confirm', 'prompt']) "
    "{ window[f] = (m) => { window.__dialogs.push(String(m)); }; }"
)


def launched_chromium() -> Iterator[Any]:
    """One headless Chromium through Playwright (the `browser` fixture in tests/conftest.py)."""
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (scripts/ensure-chromium.sh)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


def log_in(browser: Any, url: str, user: str, password: str) -> tuple[Any, Any, list[str]]:
    """A fresh context logged in through the login page, watching for scripts and dialogs:
    (context, page, dialogs). The caller waits for what its page should show."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(WATCH_XSS)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()
    return context, page, dialogs
