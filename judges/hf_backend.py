"""The in-process backend: any Hugging Face causal LM judges by comparing P("A") and P("B").

For users with a GPU and no server: `prefloop judge --backend hf --model PATH`
(or `--model smollm2-135m-instruct`, converted offline on first use; a 135M model is
far too small to judge well, see README). The
prompt is the same template (through the tokenizer's chat template when it has one);
one forward pass gives the next-token distribution, and the verdict is whichever of
the `A` / `B` tokens (with and without a leading space) has more probability mass.
The reply is shaped like an OpenAI completion with top logprobs, so parsing, caching
and storage are the same code as for a server. torch and transformers are imported
only here, only when this backend is used.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from data.errors import JudgeError
from judges.client import Completion
from judges.config import JudgeConfig


class HFBackend:
    """Judges with a local causal LM; `model` names are paths, named models or cached hub ids."""

    endpoint = "hf://local"

    def __init__(self, config: JudgeConfig):
        self.config = config
        self.logprobs_enabled = True
        self.logprobs_disabled_reason: str | None = None
        self._loaded: dict[str, tuple[Any, Any, list[int], list[int], int]] = {}
        self._lock = threading.Lock()  # one forward pass at a time: the model is the bottleneck

    def params(self) -> dict[str, Any]:
        return {"backend": "hf", "method": "next-token A/B logprobs"}

    async def aclose(self) -> None:
        self._loaded.clear()

    async def complete(self, model: str, messages: list[dict[str, str]]) -> Completion:
        return await asyncio.to_thread(self._complete, model, messages)

    def _load(self, model: str) -> tuple[Any, Any, list[int], list[int], int]:
        if model in self._loaded:
            return self._loaded[model]
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - both are dependencies
            raise JudgeError(
                f"--backend hf needs torch and transformers ({exc}); pip install prefloop"
            ) from None
        if not self.config.progress:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        from data.models import resolve_model

        path = resolve_model(model, progress=self.config.progress)  # a named model: its folder
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            lm = AutoModelForCausalLM.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise JudgeError(
                f"--backend hf: cannot load a causal LM and tokenizer from {model!r} ({exc}); "
                "pass a local model folder (config.json, weights, tokenizer files)"
            ) from None
        lm.eval()
        if torch.cuda.is_available():
            lm.to("cuda")
        tokenizer.truncation_side = "left"  # keep the question and answers' end, drop old turns
        ids_a = _letter_ids(tokenizer, "A")
        ids_b = _letter_ids(tokenizer, "B")
        if not ids_a or not ids_b or set(ids_a) & set(ids_b):
            raise JudgeError(
                f"--backend hf: the tokenizer of {model!r} has no distinct A and B tokens"
            )
        window = int(
            getattr(lm.config, "max_position_embeddings", None)
            or getattr(lm.config, "n_positions", 0)
            or 2048
        )
        self._loaded[model] = (tokenizer, lm, ids_a, ids_b, window)
        return self._loaded[model]

    def _complete(self, model: str, messages: list[dict[str, str]]) -> Completion:
        import torch

        with self._lock:
            tokenizer, lm, ids_a, ids_b, window = self._load(model)
            text = _render(tokenizer, messages)
            encoded = tokenizer(
                text,
                return_tensors="pt",
                truncation=True,
                max_length=window,
                add_special_tokens=False,
            )
            input_ids = encoded["input_ids"].to(lm.device)
            with torch.no_grad():
                logits = lm(input_ids=input_ids).logits[0, -1].float()
            logp = torch.log_softmax(logits, dim=-1)
            lp_a = float(torch.logsumexp(logp[ids_a], dim=0))
            lp_b = float(torch.logsumexp(logp[ids_b], dim=0))
        verdict = "A" if lp_a >= lp_b else "B"
        alternatives = sorted(
            [{"token": "A", "logprob": lp_a}, {"token": "B", "logprob": lp_b}],
            key=lambda alt: -alt["logprob"],
        )
        return Completion(
            text=verdict,
            logprobs=[{"token": verdict, "logprob": max(lp_a, lp_b), "top_logprobs": alternatives}],
            prompt_tokens=int(input_ids.shape[1]),
            completion_tokens=1,
            params=self.params(),
        )


def _letter_ids(tokenizer: Any, letter: str) -> list[int]:
    """Single-token spellings of a verdict letter ("A", " A"); multi-token spellings are skipped."""
    ids: set[int] = set()
    for spelling in (letter, " " + letter):
        encoded = tokenizer.encode(spelling, add_special_tokens=False)
        if len(encoded) == 1:
            ids.add(int(encoded[0]))
    return sorted(ids)


def _render(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(turns) + "\n\nAssistant: Verdict:"
