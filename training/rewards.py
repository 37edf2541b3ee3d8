"""Reward functions for RL stages: a trained reward model, a fitted embedding ensemble, or
the LLM judge (`judge:<url>`, served by the process that owns the store).

`load_reward_fn(spec)` returns a callable `(prompts, completions) -> list[float]` where
prompts/completions use the run template (`training.snapshot.prompt_text`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from data.errors import ConfigError
from training.snapshot import transcript_from_prompt

RewardFn = Callable[[list[str], list[str]], list[float]]


class ModelReward:
    """Scores prompt + completion with a sequence-classification reward model."""

    def __init__(self, folder: str, max_length: int = 256, batch_size: int = 16):
        from training.models import load_tokenizer
        from training.reward import load_reward_model

        base_file = Path(folder) / "prefloop_base.txt"
        if base_file.exists():  # a LoRA adapter from `prefloop train rm`
            base = base_file.read_text(encoding="utf-8").strip()
            self.model = load_reward_model(base, folder).eval()
        else:
            self.model = load_reward_model(folder).eval()
        self.tokenizer = load_tokenizer(folder)
        self.max_length = max_length
        self.batch_size = batch_size

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        import torch

        scores: list[float] = []
        device = next(self.model.parameters()).device
        for start in range(0, len(prompts), self.batch_size):
            texts = [
                p + c
                for p, c in zip(
                    prompts[start : start + self.batch_size],
                    completions[start : start + self.batch_size],
                    strict=True,
                )
            ]
            batch = self.tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(device)
            with torch.no_grad():
                scores += self.model(**batch).logits[:, 0].float().cpu().tolist()
        return scores


class EnsembleRewardFn:
    """The ensemble's conservative reward on the transcript/response the encoder expects."""

    def __init__(self, folder: str, conservative_lambda: float):
        from training.ensemble_reward import EnsembleReward

        self.ensemble = EnsembleReward(folder, conservative_lambda)

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        return self.ensemble(
            [transcript_from_prompt(p) for p in prompts], [c.strip() for c in completions]
        )


class JudgeRewardFn:
    """The judge's P(completion better than the prompt's reference), over HTTP.

    The owner of the store serves the judge (`judges.reward_server`): this process only
    posts the texts. The reference of a prompt is its preferred response in the snapshot.
    """

    JUDGE = "judge:"

    def __init__(self, spec: str, references: dict[str, str], timeout: float = 600.0):
        self.url = spec[len(self.JUDGE) :]
        self.references = references
        self.timeout = timeout

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        import json
        import urllib.error
        import urllib.request

        items = [
            {
                "prompt": transcript_from_prompt(p),
                "completion": c.strip(),
                "reference": self.references.get(p, ""),
            }
            for p, c in zip(prompts, completions, strict=True)
        ]
        request = urllib.request.Request(
            self.url,
            data=json.dumps({"items": items}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return [float(r) for r in json.loads(response.read())["rewards"]]
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise ConfigError(f"judge reward endpoint answered {exc.code}: {detail}") from None
        except OSError as exc:
            raise ConfigError(
                f"judge reward endpoint {self.url} cannot be reached ({exc}); `--reward judge` "
                "works while `prefloop loop` serves it"
            ) from None


def load_reward_fn(
    spec: str | None,
    conservative_lambda: float = 1.0,
    max_length: int = 256,
    references: dict[str, str] | None = None,
) -> RewardFn:
    if not spec:
        raise ConfigError(
            "no reward given: train a reward model (`prefloop train rm`) or pass "
            "--reward PATH to an ensemble artifact folder"
        )
    if spec.startswith(JudgeRewardFn.JUDGE):
        if references is None:
            raise ConfigError(
                "a judge reward (judge:URL) compares each completion with its prompt's "
                "preferred response: GRPO and RLOO pass those; use a reward model here"
            )
        return JudgeRewardFn(spec, references)
    folder = Path(spec)
    if (folder / "ensemble.json").exists():
        return EnsembleRewardFn(spec, conservative_lambda)
    if not folder.exists():
        raise ConfigError(
            f"reward {spec!r} does not exist; pass a reward model run's artifact "
            "folder or an ensemble artifact folder"
        )
    return ModelReward(spec, max_length=max_length)
