"""Debian's Chromium for the browser tests: where it is, how it starts, what it watches."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.served_app import PASSWORDS, Served

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # screenshots of test runs
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


def login(browser: Any, served: Served, user: str) -> tuple[Any, Any, list[str]]:
    context, page, dialogs = log_in(browser, served.url, user, PASSWORDS[user])
    page.locator("#btn-a").wait_for(state="visible", timeout=30_000)
    wait_for_pair(page)
    return context, page, dialogs


def shown_prompt(page: Any) -> str:
    return page.locator("#prompt").inner_text()


def wait_for_pair(page: Any, mine_today: int | None = None) -> str:
    """Wait until the page shows a pair (and, if given, my label count); return the prompt text."""
    from playwright.sync_api import expect

    expect(page.locator("#progress")).to_contain_text("still want a label", timeout=15_000)
    if mine_today is not None:
        expect(page.locator("#progress")).to_contain_text(f"today: {mine_today} ", timeout=15_000)
    expect(page.locator("#prompt")).to_contain_text(re.compile("question", re.I), timeout=15_000)
    page.wait_for_timeout(100)  # let the Markdown finish rendering before reading it
    return shown_prompt(page)


def save(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def assert_no_script_ran(page: Any, dialogs: list[str]) -> None:
    assert page.evaluate("window.__xss") is None
    assert page.evaluate("window.__dialogs") == []
    assert dialogs == []
