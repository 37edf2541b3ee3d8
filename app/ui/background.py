"""Background work started from the app (a judge batch, a re-score) and how it ended.

The app imports `training` only through `training.jobs` (runs are subprocesses; the UI
process never imports torch for training) and imports `judges`/`labeling` lazily inside
functions, so a missing piece disables one tab with a clear message, not the app.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from data.errors import PrefloopError


@dataclass
class Background:
    """One background task (a judge batch or a rescore) and how it ended."""

    name: str
    thread: threading.Thread | None = None
    started: float = field(default_factory=time.time)
    result: dict[str, Any] | None = None
    error: str | None = None
    # judge batches: USD per 1M (prompt, completion) tokens, and the token counts per
    # model before the batch, so the tab can show this batch's cost while it runs
    price_per_million: tuple[float, float] = (0.0, 0.0)
    tokens_before: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


def run_in_background(name: str, work: Any) -> Background:
    task = Background(name)

    def target() -> None:
        try:
            task.result = work()
        except PrefloopError as exc:
            task.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown in the tab, not lost in a thread
            task.error = f"{type(exc).__name__}: {exc}"

    task.thread = threading.Thread(target=target, name=f"prefloop-{name}", daemon=True)
    task.thread.start()
    return task
