"""The shared-prompt reference pass equals running prompt + completion as one sequence."""

from __future__ import annotations

import random

import pytest

from training.ref_logprobs import shared_prompt_logps, split_shared


def full_sequence_logp(model, prompt: list[int], completion: list[int]) -> float:
    import torch

    ids = torch.tensor([prompt + completion])
    logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
    targets = ids[0, 1:]
    per_token = logp.gather(1, targets[:, None]).squeeze(1)
    return float(per_token[len(prompt) - 1 :].sum())


@pytest.mark.parametrize("batch", [1, 5])
def test_shared_prompt_equals_one_sequence_per_completion(batch: int) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=97, n_positions=128, n_embd=32, n_layer=2, n_head=2)
    ).eval()
    rng = random.Random(batch)
    triples = [
        (
            [rng.randrange(1, 97) for _ in range(rng.randint(1, 30))],
            [rng.randrange(1, 97) for _ in range(rng.randint(1, 12))],
            [rng.randrange(1, 97) for _ in range(rng.randint(1, 12))],
        )
        for _ in range(batch)
    ]
    with torch.inference_mode():
        chosen, rejected = shared_prompt_logps(model, triples, pad_id=0, device="cpu")
        for (p, c, r), got_c, got_r in zip(triples, chosen, rejected, strict=True):
            assert got_c == pytest.approx(full_sequence_logp(model, p, c), abs=1e-4)
            assert got_r == pytest.approx(full_sequence_logp(model, p, r), abs=1e-4)


def test_pairs_cut_by_max_length_take_the_per_sequence_path() -> None:
    triples = [([1] * 10, [2] * 5, [3] * 3), ([1] * 10, [2] * 5, [3] * 7), ([], [2], [3])]
    assert split_shared(triples, 16) == ([0], [1, 2])
    assert split_shared(triples, None) == ([0, 1], [2])
