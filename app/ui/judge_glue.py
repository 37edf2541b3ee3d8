"""The Judge tab's way into `judges` (imported lazily): the config, the batch, its summary.

The config is built on the handler's thread, so a bad field is an error in the tab at
once; the batch then runs on a background thread. The API key goes from the tab's
password field straight to the batch's client: it is no part of the config and is kept
nowhere after the batch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from data.store import PreferenceStore


def _judges() -> Any:
    from app.ui.background import MissingPiece

    try:
        import judges.batch
        import judges.config
    except ImportError as exc:
        raise MissingPiece(f"the judge engine (judges/) is not available here ({exc})") from None
    return judges


def judge_config(
    *,
    backend: str,
    base_url: str | None,
    model: str,
    template: str | None,
    concurrency: int,
    limit: int | None,
    swap: bool,
    price_per_million: tuple[float, float] = (0.0, 0.0),
) -> Any:
    """The `JudgeConfig` the CLI would build from the same values (`ConfigError` if bad).
    With backend 'hf' the model is a folder or a named model such as
    `smollm2-135m-instruct`, resolved by `data.models.resolve_model` as for `--backend hf`."""
    config = _judges().config
    template_path = None
    if template:
        # the engine reads templates from files: keep the tab's text in a private temp file
        folder = Path(tempfile.mkdtemp(prefix="prefloop-judge-"))
        template_path = str(folder / "template.txt")
        Path(template_path).write_text(template, encoding="utf-8")
    models = tuple(m.strip() for m in model.split(",") if m.strip())
    return config.JudgeConfig(
        models=models,
        base_url=base_url if backend == "openai" else None,
        backend=backend,
        concurrency=concurrency,
        swap=swap,
        limit=limit,
        template_path=template_path,
        progress=False,
        prices={m: config.Price(*price_per_million) for m in models if any(price_per_million)},
    )


def run_batch(store: PreferenceStore, config: Any, *, api_key: str | None) -> dict[str, Any]:
    """Judge the judge queue; returns the batch report. Progress shows up in the store as it goes."""
    return _judges().batch.run_batch(store, config, api_key=api_key).as_dict()


def summary(result: dict[str, Any]) -> list[str]:
    """The batch report in words, as `prefloop judge` prints it without --json."""
    return _judges().batch.summary_lines(result)
