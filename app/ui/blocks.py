"""The Gradio Blocks: the tabs in order, and who sees which. Each event has an `api_name`.

Each tab lives in its own `tab_*` module with its layout, handlers and events. Every
handler starts with `ctx.user(request, role)`, so roles are enforced on the server for
the browser and the API alike; library errors become `gr.Error` there (`events.ui_errors`).

This module imports Gradio at the top: only `prefloop serve`/`demo` import it.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.ui import tab_annotate, tab_dashboard, tab_data, tab_judge, tab_review, tab_train
from app.ui.context import AppContext
from app.ui.events import ui_errors

# Keys 1/2/3/4/s/u click the buttons with these element ids (not while typing).
KEYBOARD_JS = """
<script>
document.addEventListener('keydown', (event) => {
  const target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  if (target && (target.tagName === 'TEXTAREA' || target.tagName === 'INPUT' || target.isContentEditable)) return;
  const ids = {'1': 'btn-a', '2': 'btn-b', '3': 'btn-tie', '4': 'btn-both-bad', 's': 'btn-skip', 'u': 'btn-undo'};
  const id = ids[event.key.toLowerCase()];
  if (!id) return;
  const button = document.getElementById(id);
  if (!button || button.offsetParent === null || button.disabled) return;
  event.preventDefault();
  button.click();
});
</script>
"""

CSS = """
.response-box { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px; min-height: 120px; }
#prompt button[aria-label="Clear"], #prompt button[title="Clear"] { display: none; }
"""


def build_blocks(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="prefloop") as blocks:
        identity = gr.JSON(visible=False)
        tab_annotate.build(ctx, blocks)
        admin = [tab_judge.build(ctx, blocks), tab_train.build(ctx, blocks)]
        tab_dashboard.build(ctx, blocks)
        admin += [tab_data.build(ctx, blocks), tab_review.build(ctx, blocks)]
        admin_tabs = [part.tab for part in admin]
        admin_timers = [timer for part in admin for timer in part.timers]

        @ui_errors
        def whoami(request: gr.Request) -> tuple[Any, ...]:
            user = ctx.user(request)
            is_admin = ctx.access.role_of(user) == "admin" or not ctx.access.enabled
            role = "admin" if is_admin else "annotator"
            return (
                {"user": user, "role": role},
                *(gr.Tab(visible=is_admin) for _ in admin_tabs),
                *(gr.Timer(active=is_admin) for _ in admin_timers),
            )

        blocks.load(whoami, None, [identity, *admin_tabs, *admin_timers], api_name="whoami")
    return blocks
