"""Runs one judge batch for the Judge tab through `judges.batch` (imported lazily)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from data.store import PreferenceStore


def run_batch(
    store: PreferenceStore,
    *,
    base_url: str | None,
    model: str,
    template: str | None,
    concurrency: int,
    limit: int | None,
    swap: bool,
    price_per_million: tuple[float, float] = (0.0, 0.0),
) -> dict[str, Any]:
    """Judge the judge queue; returns the batch report. Progress shows up in the store as it goes."""
    from app.ui.jobs import MissingPiece

    try:
        from judges.batch import run_batch as judge_batch
        from judges.config import JudgeConfig, Price
    except ImportError as exc:
        raise MissingPiece(f"the judge engine (judges/) is not available here ({exc})") from None
    template_path = None
    if template:
        # the engine reads templates from files: keep the tab's text in a private temp file
        folder = Path(tempfile.mkdtemp(prefix="prefloop-judge-"))
        template_path = str(folder / "template.txt")
        Path(template_path).write_text(template, encoding="utf-8")
    models = tuple(m.strip() for m in model.split(",") if m.strip())
    config = JudgeConfig(
        models=models,
        base_url=base_url,
        concurrency=concurrency,
        swap=swap,
        limit=limit,
        template_path=template_path,
        progress=False,
        prices={m: Price(*price_per_million) for m in models if any(price_per_million)},
    )
    return judge_batch(store, config).as_dict()
