"""The Gradio Blocks: the tabs in order, and who sees which. Each event has an `api_name`.

Each tab lives in its own `tab_*` module with its layout, handlers and events. Every
handler starts with `ctx.user(request, role)`, so roles are enforced on the server for
the browser and the API alike; library errors become `gr.Error` there (`events.ui_errors`).

This module imports Gradio at the top: only `prefloop serve`/`demo` import it.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.ui import (
    tab_adjudicate,
    tab_annotate,
    tab_dashboard,
    tab_data,
    tab_judge,
    tab_loop,
    tab_project,
    tab_review,
    tab_train,
)
from app.ui.context import AppContext
from app.ui.events import ui_errors

# Keys 1/2/3/4/s/u click the buttons with these element ids (not while typing). Shift+1 and
# Shift+2 click "A/B much better" where the project asks for a strength (by key position,
# event.code, so any keyboard layout works); elsewhere they are ignored. A disabled button
# (nothing to label) ignores its key too.
KEYBOARD_JS = (
    """
<script>
document.addEventListener('keydown', (event) => {
  const target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  if (target && (target.tagName === 'TEXTAREA' || target.tagName === 'INPUT' || target.isContentEditable)) return;
  const shown = (id) => { const b = document.getElementById(id); return b && b.offsetParent !== null ? b : null; };
  const much = {'Digit1': 'btn-a-much', 'Digit2': 'btn-b-much'};
  const ids = {'1': 'btn-a', '2': 'btn-b', '3': 'btn-tie', '4': 'btn-both-bad', 's': 'btn-skip', 'u': 'btn-undo'};
  let button = event.shiftKey && much[event.code] ? shown(much[event.code]) : null;
  if (!button && ids[event.key.toLowerCase()]) button = shown(ids[event.key.toLowerCase()]);
  if (!button || button.disabled) return;
  event.preventDefault();
  button.click();
});
</script>
"""
    + tab_adjudicate.KEYBOARD_JS
)

# Gradio's Source Sans Pro SemiBold file (weight 600: buttons, headings) holds only a few
# glyphs (A, B, some Cyrillic), so "A better" mixed two fonts. The app's font is the same
# Source Sans Pro under its own family name, where weight 600 takes the complete Bold file;
# `:root:root` outranks the theme's `:root`, whatever order the stylesheets load in.
# Responses stay top-aligned whatever their lengths. Content (`app.ui.render`, class
# `pl-content`) sits in a box it cannot draw outside of: it paints only inside itself,
# forms its own stacking context and clips or scrolls what overflows; the label buttons
# form a stacking context above the page's content.
CSS = """
@font-face { font-family: 'prefloop sans'; font-weight: 100 500; font-style: normal;
  src: url('static/fonts/SourceSansPro/SourceSansPro-Regular.woff2') format('woff2'); }
@font-face { font-family: 'prefloop sans'; font-weight: 600 900; font-style: normal;
  src: url('static/fonts/SourceSansPro/SourceSansPro-Bold.woff2') format('woff2'); }
:root:root { --font: 'prefloop sans', 'Source Sans Pro', ui-sans-serif, system-ui, sans-serif; }
.response-box { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px; min-height: 120px; }
#responses { align-items: flex-start; }
#responses > .response-column { justify-content: flex-start; align-self: flex-start; }
#prompt button[aria-label="Clear"], #prompt button[title="Clear"] { display: none; }
#verdicts button:disabled, #actions button:disabled { opacity: 0.45; cursor: not-allowed; }
.pl-content { contain: paint; isolation: isolate; position: relative; overflow: auto;
  max-width: 100%; overflow-wrap: anywhere; }
.pl-content pre { overflow: auto; }
#verdicts, #actions { position: relative; z-index: 10; isolation: isolate; }
"""


def build_blocks(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="prefloop") as blocks:
        identity = gr.JSON(visible=False)
        tab_annotate.build(ctx, blocks)
        admin = [tab_judge.build(ctx, blocks), tab_train.build(ctx, blocks)]
        admin.append(tab_loop.build(ctx, blocks))
        admin_section = tab_dashboard.build(ctx, blocks)
        adjudicate_tab = tab_adjudicate.build(ctx, blocks).tab
        admin += [tab_data.build(ctx, blocks), tab_review.build(ctx, blocks)]
        admin.append(tab_project.build(ctx, blocks))
        admin_tabs = [part.tab for part in admin]
        admin_timers = [timer for part in admin for timer in part.timers]

        @ui_errors
        def whoami(request: gr.Request) -> tuple[Any, ...]:
            user = ctx.user(request)
            role = ctx.access.role_of(user) if ctx.access.enabled else "admin"
            is_admin = role == "admin"
            return (
                {"user": user, "role": role},
                *(gr.Tab(visible=is_admin) for _ in admin_tabs),
                *(gr.Timer(active=is_admin) for _ in admin_timers),
                gr.Tab(visible=role in ("adjudicator", "admin")),
                gr.update(visible=is_admin),
            )

        blocks.load(
            whoami,
            None,
            [identity, *admin_tabs, *admin_timers, adjudicate_tab, admin_section],
            api_name="whoami",
        )
    return blocks
