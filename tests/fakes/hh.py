"""Real HH-RLHF pairs for training tests, and the tiny model's settings."""

from __future__ import annotations

import gzip
from pathlib import Path

TINY = {"tiny_layers": 2, "tiny_width": 64, "tiny_vocab": 512, "max_length": 96, "batch_size": 4}


def write_hh_subset(hh_path: Path, out: Path, start: int, count: int) -> Path:
    with gzip.open(hh_path, "rt", encoding="utf-8") as handle:
        lines = [line for i, line in enumerate(handle) if start <= i < start + count]
    out.write_text("".join(lines), encoding="utf-8")
    return out


def import_hh(store, hh_path: Path, tmp_path: Path, start: int, count: int) -> None:
    from data.importer import ImportOptions, import_sources

    src = write_hh_subset(hh_path, tmp_path / f"hh-{start}-{count}.jsonl", start, count)
    import_sources(store, [str(src)], ImportOptions(skip_invalid=True))
