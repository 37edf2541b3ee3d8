"""What every tab's event handlers share: error conversion and the fast-event settings.

This module imports Gradio at the top: only `prefloop serve`/`demo` import it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from data.errors import PrefloopError

log = logging.getLogger("prefloop.app")

# Annotate events skip Gradio's queue (one HTTP round trip instead of join + event stream);
# they are short, and the store serialises writes itself. They also skip Gradio's pre- and
# postprocessing, which runs each component on a worker thread of its own (9 thread hops a
# click, costly with 16 annotators); `view` postprocesses its outputs itself, in one go.
FAST: dict[str, Any] = {
    "queue": False,
    "show_progress": "hidden",
    "preprocess": False,
    "postprocess": False,
}


def postprocessed(components: list[Any], values: tuple[Any, ...]) -> tuple[Any, ...]:
    """What Gradio's postprocessing would send for `values`, done on the caller's thread."""
    ready = []
    for component, value in zip(components, values, strict=True):
        out = component.postprocess(value)
        ready.append(out.model_dump() if hasattr(out, "model_dump") else out)
    return tuple(ready)


def ui_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """PrefloopError (and AccessDenied) -> gr.Error with the same message.

    A user error is logged as one line, not a traceback: Gradio prints the traceback of
    any exception unless it is a `gr.Error` with `print_exception=False`.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PrefloopError as exc:
            log.warning("%s: %s", fn.__name__, exc)
            raise gr.Error(str(exc), print_exception=False) from None

    return wrapper


@dataclass
class AdminParts:
    """What an admin-only tab hands back: the tab, shown to admins only, and its timers."""

    tab: Any
    timers: list[Any] = field(default_factory=list)
