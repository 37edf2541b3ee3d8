"""A reward ensemble on disk with random weights, in the format `labeling.ensemble` saves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def make_ensemble(
    folder: Path, features: list[str], dim: int, members: int = 3, seed: int = 0
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    (folder / "ensemble.json").write_text(
        json.dumps(
            {
                "format": "prefloop-ensemble/1",
                "encoder": "sentence-transformers/all-MiniLM-L6-v2",
                "max_length": 64,
                "normalize": True,
                "features": features,
                "members": members,
                "head": "linear",
                "version": 1,
            }
        )
    )
    np.savez(
        folder / "ensemble.npz",
        W=rng.normal(size=(members, dim)).astype(np.float32),
        b=rng.normal(size=members).astype(np.float32),
    )
    return folder
