"""A policy's implicit reward on pairs: log pi(y|x) - log pi_ref(y|x), summed over y's tokens.

DPO and KTO both define a reward this way, so a trained policy ranks a pair's two
responses with it; preference accuracy is the share of pairs whose chosen response gets
the higher reward. With a LoRA policy the reference is the same model with the adapter
switched off; a full fine-tune computes the reference log-probs before training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any


def completion_logps(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 4,
) -> list[float]:
    """Sum of log-probs of each completion's tokens after its prompt (the prompt cut at the
    start to fit `max_length`, as the trainers cut it)."""
    import torch

    device = next(model.parameters()).device
    out: list[float] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = list(
                zip(
                    prompts[start : start + batch_size],
                    completions[start : start + batch_size],
                    strict=True,
                )
            )
            seqs, masks = [], []
            for prompt, completion in chunk:
                p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
                c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
                c_ids = c_ids[:max_length]
                p_ids = p_ids[max(0, len(p_ids) - (max_length - len(c_ids))) :]
                seqs.append(p_ids + c_ids)
                masks.append([0] * len(p_ids) + [1] * len(c_ids))
            width = max(len(s) for s in seqs)
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=device)
            attention = torch.tensor(
                [[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device
            )
            scored = torch.tensor([m + [0] * (width - len(m)) for m in masks], device=device)
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
            logps = torch.log_softmax(logits, dim=-1).gather(2, ids[:, 1:, None]).squeeze(2)
            out += (logps * scored[:, 1:]).sum(dim=1).tolist()
    finally:
        model.train(was_training)
    return out


def reference_off(model: Any) -> contextlib.AbstractContextManager[Any]:
    """The reference of a LoRA policy: its adapter switched off (else nothing changes)."""
    disable = getattr(model, "disable_adapter", None)
    return disable() if callable(disable) else contextlib.nullcontext()


def pair_logps(
    model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], *, max_length: int
) -> tuple[list[float], list[float]]:
    """Log-probs of each pair's chosen and rejected completion."""
    prompts = [r["prompt"] for r in rows]
    chosen = completion_logps(
        model, tokenizer, prompts, [r["chosen"] for r in rows], max_length=max_length
    )
    rejected = completion_logps(
        model, tokenizer, prompts, [r["rejected"] for r in rows], max_length=max_length
    )
    return chosen, rejected


def implicit_reward_margins(
    policy: tuple[list[float], list[float]], reference: tuple[list[float], list[float]]
) -> list[float]:
    """Per pair: the chosen response's implicit reward minus the rejected one's."""
    return [
        (pc - rc) - (pr - rr)
        for pc, pr, rc, rr in zip(policy[0], policy[1], reference[0], reference[1], strict=True)
    ]


def implicit_reward_accuracy(
    policy: tuple[list[float], list[float]], reference: tuple[list[float], list[float]]
) -> dict[str, float]:
    """Share of pairs whose chosen response has the higher implicit reward, and the mean margin."""
    margins = implicit_reward_margins(policy, reference)
    if not margins:
        return {"accuracy": float("nan"), "margin": float("nan"), "pairs": 0}
    return {
        "accuracy": sum(m > 0 for m in margins) / len(margins),
        "margin": sum(margins) / len(margins),
        "pairs": len(margins),
    }
