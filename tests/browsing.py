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
