"""The Judge tab (admins): launch an LLM-judge batch and watch its tokens, cost and failures."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.ui import judge_jobs
from app.ui.context import AppContext
from app.ui.events import AdminParts, ui_errors
from data.errors import PrefloopError

BACKENDS = [("OpenAI-compatible endpoint", "openai"), ("in-process hf (local model)", "hf")]

# the three ways, as in README's "Judging without internet"
THREE_WAYS = """\
**Three ways to judge.**
1. **A server you run** (offline once the model is on disk); put its URL in *Endpoint*:
   `vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000` → `http://127.0.0.1:8000/v1` ·
   `llama-server -m model.gguf --port 8080` → `http://127.0.0.1:8080/v1` ·
   `ollama pull qwen2.5:7b` (Ollama serves on its own) → `http://127.0.0.1:11434/v1`.
2. **A hosted API**, e.g. `https://api.openai.com/v1` and model `gpt-4o-mini`, with its key
   in *API key*: used for this batch only, never stored (empty: `$OPENAI_API_KEY`).
3. **In-process hf**: choose it below and give a local model folder, or
   `smollm2-135m-instruct` (ships offline; far too small to judge well, see README).
"""


def build(ctx: AppContext, blocks: gr.Blocks) -> AdminParts:
    @ui_errors
    def judge_start(
        base_url: str,
        model: str,
        template: str,
        concurrency: float,
        limit: float,
        swap: bool,
        price_prompt: float | None,
        price_completion: float | None,
        backend: str,
        api_key: str,
        request: gr.Request,
    ) -> str:
        ctx.user(request, "admin")
        if ctx.judge_task is not None and ctx.judge_task.running:
            raise PrefloopError("a judge batch is already running; wait for it to finish")
        ctx.judge_task = judge_jobs.start_judge_batch(
            ctx.store,
            base_url=base_url,
            model=model,
            template=template,
            concurrency=int(concurrency),
            limit=int(limit) if limit else None,
            swap=bool(swap),
            price_per_million=(float(price_prompt or 0), float(price_completion or 0)),
            backend=backend or "openai",
            api_key=api_key,
        )
        return judge_jobs.judge_status_markdown(ctx.store, ctx.judge_task)

    @ui_errors
    def judge_status(request: gr.Request) -> tuple[str, list[list[Any]]]:
        ctx.user(request, "admin")
        return judge_jobs.judge_status_markdown(
            ctx.store, ctx.judge_task
        ), judge_jobs.judge_failures(ctx.store)

    with gr.Tab("Judge", id="judge", visible=False) as judge_tab:
        gr.Markdown(THREE_WAYS)
        backend = gr.Radio(BACKENDS, value="openai", label="Backend")
        with gr.Row():
            base_url = gr.Textbox(
                label="Endpoint (OpenAI-compatible base URL)",
                placeholder="http://127.0.0.1:8000/v1 (empty: $OPENAI_BASE_URL)",
                info="Several replicas of one model: separate the URLs with commas or spaces; "
                "requests go to the least busy healthy one.",
            )
            model = gr.Textbox(
                label="Model",
                placeholder="the served name, e.g. qwen2.5:7b; hf: a folder or smollm2-135m-instruct",
            )
            api_key = gr.Textbox(
                label="API key (this batch only, never stored)",
                value="",
                type="password",
                placeholder="empty: $OPENAI_API_KEY",
            )
        template = gr.Textbox(label="Template / rubric (empty: the default)", lines=4)
        with gr.Row():
            concurrency = gr.Slider(1, 64, value=8, step=1, label="Concurrency")
            limit = gr.Number(value=0, precision=0, label="Limit (0: whole judge queue)")
            swap = gr.Checkbox(value=True, label="Judge both orders (swap)")
        with gr.Row():
            price_prompt = gr.Number(
                value=0, minimum=0, label="USD per 1M prompt tokens (for the cost shown)"
            )
            price_completion = gr.Number(value=0, minimum=0, label="USD per 1M completion tokens")
        judge_button = gr.Button("Launch judge batch", variant="primary", elem_id="btn-judge")
        judge_md = gr.Markdown()
        failures = gr.Dataframe(
            headers=["pair", "model", "order", "error", "raw text"],
            label="Failures",
            interactive=False,
        )
        judge_timer = gr.Timer(2.0, active=False)

    judge_button.click(
        judge_start,
        # new inputs go last: scripts that pass the first eight keep working
        [
            base_url,
            model,
            template,
            concurrency,
            limit,
            swap,
            price_prompt,
            price_completion,
            backend,
            api_key,
        ],
        judge_md,
        api_name="judge_start",
    )
    judge_timer.tick(
        judge_status, None, [judge_md, failures], api_name="judge_status", show_progress="hidden"
    )
    return AdminParts(judge_tab, [judge_timer])
