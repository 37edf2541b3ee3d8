"""The Gradio Blocks: tabs, components and events. Each event has an `api_name`.

Every handler starts with `ctx.user(request, role)`, so roles are enforced on the
server for the browser and the API alike; library errors become `gr.Error` here.

This module imports Gradio at the top: only `prefloop serve`/`demo` import it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gradio as gr

from app.ui import dashboard, data_io, jobs
from app.ui.annotate import Progress, Shown
from app.ui.context import AppContext
from app.ui.render import conversation, safe_markdown
from data.errors import PrefloopError

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


def _postprocessed(components: list[Any], values: tuple[Any, ...]) -> tuple[Any, ...]:
    """What Gradio's postprocessing would send for `values`, done on the caller's thread."""
    ready = []
    for component, value in zip(components, values, strict=True):
        out = component.postprocess(value)
        ready.append(out.model_dump() if hasattr(out, "model_dump") else out)
    return tuple(ready)


VERDICT_BUTTONS = (
    ("a", "A better  [1]", "btn-a", "label_a"),
    ("b", "B better  [2]", "btn-b", "label_b"),
    ("tie", "Tie  [3]", "btn-tie", "label_tie"),
    ("both_bad", "Both bad  [4]", "btn-both-bad", "label_both_bad"),
)


def _ui_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """PrefloopError (and AccessDenied) -> gr.Error with the same message."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PrefloopError as exc:
            raise gr.Error(str(exc)) from None

    return wrapper


def build_blocks(ctx: AppContext) -> gr.Blocks:  # noqa: PLR0915 - one declarative layout
    # -- annotate handlers ------------------------------------------------------------

    shown_components: list[Any] = []  # filled once the layout exists

    def view(
        user: str, shown: Shown | None, status: str, progress: Progress | None = None
    ) -> tuple[Any, ...]:
        progress = progress or ctx.annotator.progress(user)
        return _postprocessed(shown_components, plain_view(user, shown, status, progress))

    def plain_view(
        user: str, shown: Shown | None, status: str, progress: Progress
    ) -> tuple[Any, ...]:
        progress_md = f"**{user}** · labelled by me today: **{progress.mine_today}** · queue left: **{progress.queue_left}**"
        if shown is None:
            return (
                [],
                "*The queue is empty: nothing to label right now.*",
                "",
                "",
                progress_md,
                status,
                "",
            )
        return (
            conversation(shown.messages),
            safe_markdown(shown.left),
            safe_markdown(shown.right),
            shown.pair_id,
            progress_md,
            status,
            "",
        )

    @_ui_errors
    def next_pair(request: gr.Request) -> tuple[Any, ...]:
        user = ctx.user(request)
        return view(user, ctx.annotator.next(user), "")

    def make_label(verdict: str) -> Callable[..., tuple[Any, ...]]:
        @_ui_errors
        def label(pair_id: str, rationale: str, request: gr.Request) -> tuple[Any, ...]:
            user = ctx.user(request)
            shown, progress = ctx.annotator.click(user, pair_id, verdict, rationale)
            return view(user, shown, f"Saved: {verdict.replace('_', ' ')}.", progress)

        label.__name__ = f"label_{verdict}"
        return label

    @_ui_errors
    def skip(pair_id: str, request: gr.Request) -> tuple[Any, ...]:
        user = ctx.user(request)
        ctx.annotator.skip(user, pair_id)
        return view(user, ctx.annotator.next(user), "Skipped.")

    @_ui_errors
    def undo(request: gr.Request) -> tuple[Any, ...]:
        user = ctx.user(request)
        pair_id = ctx.annotator.undo(user)
        status = "Undone: label it again." if pair_id else "Nothing to undo."
        return view(user, ctx.annotator.next(user), status)

    @_ui_errors
    def whoami(request: gr.Request) -> tuple[Any, ...]:
        user = ctx.user(request)
        admin = ctx.access.role_of(user) == "admin" or not ctx.access.enabled
        role = "admin" if admin else "annotator"
        return (
            {"user": user, "role": role},
            gr.Tab(visible=admin),
            gr.Tab(visible=admin),
            gr.Tab(visible=admin),
            gr.Timer(active=admin),
            gr.Timer(active=admin),
        )

    # -- admin handlers ---------------------------------------------------------------

    @_ui_errors
    def judge_start(
        base_url: str,
        model: str,
        template: str,
        concurrency: float,
        limit: float,
        swap: bool,
        price_prompt: float | None,
        price_completion: float | None,
        request: gr.Request,
    ) -> str:
        ctx.user(request, "admin")
        if ctx.judge_task is not None and ctx.judge_task.running:
            raise PrefloopError("a judge batch is already running; wait for it to finish")
        ctx.judge_task = jobs.start_judge_batch(
            ctx.store,
            base_url=base_url,
            model=model,
            template=template,
            concurrency=int(concurrency),
            limit=int(limit) if limit else None,
            swap=bool(swap),
            price_per_million=(float(price_prompt or 0), float(price_completion or 0)),
        )
        return jobs.judge_status_markdown(ctx.store, ctx.judge_task)

    @_ui_errors
    def judge_status(request: gr.Request) -> tuple[str, list[list[Any]]]:
        ctx.user(request, "admin")
        return jobs.judge_status_markdown(ctx.store, ctx.judge_task), jobs.judge_failures(ctx.store)

    @_ui_errors
    def train_start(kind: str, request: gr.Request) -> str:
        user = ctx.user(request, "admin")
        return jobs.start_training(ctx, kind, who=user)

    @_ui_errors
    def train_cancel(run_id: str, request: gr.Request) -> str:
        ctx.user(request, "admin")
        return jobs.cancel_training(ctx, run_id)

    @_ui_errors
    def train_status(request: gr.Request) -> tuple[Any, ...]:
        ctx.user(request, "admin")
        return jobs.training_view(ctx)

    @_ui_errors
    def show_dashboard(request: gr.Request) -> tuple[Any, ...]:
        ctx.user(request, "annotator")
        return dashboard.dashboard(ctx.store)

    @_ui_errors
    def import_file(
        path: str | None, fmt: str, skip_invalid: bool, request: gr.Request
    ) -> tuple[Any, ...]:
        user = ctx.user(request, "admin")
        return data_io.import_upload(ctx.store, path, fmt, bool(skip_invalid), who=f"upload:{user}")

    @_ui_errors
    def export(fmt: str, test_fraction: float, request: gr.Request) -> tuple[Any, ...]:
        ctx.user(request, "admin")
        return data_io.export_dataset(ctx.store, fmt, float(test_fraction))

    # -- layout -----------------------------------------------------------------------

    with gr.Blocks(title="prefloop") as blocks:
        identity = gr.JSON(visible=False)
        with gr.Tab("Annotate", id="annotate"):
            progress = gr.Markdown(elem_id="progress")
            with gr.Accordion("Guidelines", open=False):
                gr.Markdown(ctx.guidelines)
            chat = gr.Chatbot(
                label="Prompt",
                height=260,
                sanitize_html=True,
                elem_id="prompt",
                feedback_options=None,
                buttons=[],
            )
            with gr.Row(equal_height=True):
                with gr.Column():
                    gr.Markdown("### Response A")
                    left = gr.Markdown(
                        sanitize_html=True,
                        line_breaks=True,
                        elem_id="response-a",
                        elem_classes="response-box",
                    )
                with gr.Column():
                    gr.Markdown("### Response B")
                    right = gr.Markdown(
                        sanitize_html=True,
                        line_breaks=True,
                        elem_id="response-b",
                        elem_classes="response-box",
                    )
            with gr.Row():
                verdict_buttons = [
                    gr.Button(
                        text, elem_id=elem, variant="primary" if v in ("a", "b") else "secondary"
                    )
                    for v, text, elem, _ in VERDICT_BUTTONS
                ]
                skip_button = gr.Button("Skip  [s]", elem_id="btn-skip")
                undo_button = gr.Button("Undo last  [u]", elem_id="btn-undo")
            rationale = gr.Textbox(label="Rationale (optional)", lines=2, elem_id="rationale")
            status = gr.Markdown(elem_id="status")
            pair_id = gr.Textbox(visible=False, elem_id="pair-id")

        with gr.Tab("Judge", id="judge", visible=False) as judge_tab:
            with gr.Row():
                base_url = gr.Textbox(
                    label="Endpoint (OpenAI-compatible base URL)", placeholder="$OPENAI_BASE_URL"
                )
                model = gr.Textbox(label="Model")
            template = gr.Textbox(label="Template / rubric (empty: the default)", lines=4)
            with gr.Row():
                concurrency = gr.Slider(1, 64, value=8, step=1, label="Concurrency")
                limit = gr.Number(value=0, precision=0, label="Limit (0: whole judge queue)")
                swap = gr.Checkbox(value=True, label="Judge both orders (swap)")
            with gr.Row():
                price_prompt = gr.Number(
                    value=0, minimum=0, label="USD per 1M prompt tokens (for the cost shown)"
                )
                price_completion = gr.Number(
                    value=0, minimum=0, label="USD per 1M completion tokens"
                )
            judge_button = gr.Button("Launch judge batch", variant="primary", elem_id="btn-judge")
            judge_md = gr.Markdown()
            failures = gr.Dataframe(
                headers=["pair", "model", "order", "error", "raw text"],
                label="Failures",
                interactive=False,
            )
            judge_timer = gr.Timer(2.0, active=False)

        with gr.Tab("Train", id="train", visible=False) as train_tab:
            with gr.Row():
                kind = gr.Radio(list(jobs.TRAIN_KINDS), value="dpo", label="What to train")
                train_button = gr.Button("Retrain now", variant="primary", elem_id="btn-train")
            train_md = gr.Markdown()
            curves = gr.Plot(label="Loss / reward / KL")
            history = gr.Dataframe(
                headers=["run", "kind", "status", "created", "finished", "metrics"],
                label="Run history",
                interactive=False,
            )
            with gr.Row():
                cancel_id = gr.Textbox(label="Run id to cancel (empty: the running one)")
                cancel_button = gr.Button("Cancel run", variant="stop", elem_id="btn-cancel")
            train_timer = gr.Timer(2.0, active=False)

        with gr.Tab("Dashboard", id="dashboard"):
            refresh = gr.Button("Refresh", elem_id="btn-dashboard")
            agreement = gr.Markdown()
            with gr.Row():
                over_time = gr.Plot(label="Labels by source")
                calibration = gr.Plot(label="Calibration accuracy per round")
            with gr.Row():
                histogram = gr.Plot(label="Uncertainty")
                efficiency = gr.Plot(label="Label efficiency")

        with gr.Tab("Data", id="data", visible=False) as data_tab:
            with gr.Row():
                upload = gr.File(
                    label="Preference file (.jsonl, .json, .csv, .parquet)", type="filepath"
                )
                with gr.Column():
                    fmt = gr.Dropdown(
                        ["auto", "trl", "hh", "pairs", "responses"], value="auto", label="Format"
                    )
                    skip_invalid = gr.Checkbox(label="Skip invalid rows (import the valid ones)")
                    import_button = gr.Button("Import", variant="primary", elem_id="btn-import")
            import_md = gr.Markdown()
            problems = gr.Dataframe(
                headers=data_io.PROBLEM_COLUMNS, label="Validation problems", interactive=False
            )
            with gr.Row():
                export_fmt = gr.Dropdown(
                    ["trl", "trl-conversational", "pairs"], value="trl", label="Export format"
                )
                test_fraction = gr.Slider(
                    0, 0.5, value=0.0, step=0.05, label="Test fraction (split by prompt)"
                )
                export_button = gr.Button("Export", elem_id="btn-export")
            export_md = gr.Markdown()
            download = gr.File(label="Download", file_count="multiple")

        # -- events -------------------------------------------------------------------
        shown = [chat, left, right, pair_id, progress, status, rationale]
        shown_components.extend(shown)
        blocks.load(next_pair, None, shown, api_name="next_pair", **FAST)
        blocks.load(
            whoami,
            None,
            [identity, judge_tab, train_tab, data_tab, judge_timer, train_timer],
            api_name="whoami",
        )
        for button, (verdict, _, _, api_name) in zip(verdict_buttons, VERDICT_BUTTONS, strict=True):
            button.click(
                make_label(verdict),
                [pair_id, rationale],
                shown,
                api_name=api_name,
                trigger_mode="once",
                **FAST,
            )
        skip_button.click(skip, [pair_id], shown, api_name="skip", trigger_mode="once", **FAST)
        undo_button.click(undo, None, shown, api_name="undo", trigger_mode="once", **FAST)

        judge_button.click(
            judge_start,
            [base_url, model, template, concurrency, limit, swap, price_prompt, price_completion],
            judge_md,
            api_name="judge_start",
        )
        judge_timer.tick(
            judge_status,
            None,
            [judge_md, failures],
            api_name="judge_status",
            show_progress="hidden",
        )

        train_outputs = [train_md, curves, history]
        train_button.click(train_start, [kind], train_md, api_name="train_start")
        cancel_button.click(train_cancel, [cancel_id], train_md, api_name="train_cancel")
        train_timer.tick(
            train_status, None, train_outputs, api_name="train_status", show_progress="hidden"
        )

        dashboard_outputs = [agreement, over_time, calibration, histogram, efficiency]
        refresh.click(show_dashboard, None, dashboard_outputs, api_name="dashboard")

        import_button.click(
            import_file, [upload, fmt, skip_invalid], [import_md, problems], api_name="import_file"
        )
        export_button.click(
            export, [export_fmt, test_fraction], [export_md, download], api_name="export"
        )
    return blocks
