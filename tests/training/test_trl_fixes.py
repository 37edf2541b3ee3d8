"""Scoring only completion tokens on CPU gives TRL's values, and their gradients, unchanged."""

from __future__ import annotations

from training.trl_fixes import score_completions_only_on_cpu


def test_compact_scoring_on_cpu_matches_scoring_every_position(monkeypatch) -> None:
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import GPT2Config, GPT2LMHeadModel
    from trl.kernels import chunked_logprob

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=97, n_positions=64, n_embd=32, n_layer=2, n_head=2)
    ).eval()
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    ids = torch.randint(1, 97, (3, 20))
    labels = ids.clone()
    labels[:, :12] = -100  # a prompt of 12 tokens
    labels[2, 17:] = -100  # and a shorter completion (padding)

    def score():
        model.zero_grad()
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        out.log_probs.sum().backward()
        grad = model.transformer.h[0].attn.c_attn.weight.grad.clone()
        fields = (out.log_probs, out.entropy, out.mean_logits, out.is_top1)
        return [f.detach() for f in fields], grad

    monkeypatch.setattr(trl_utils, "_use_triton", chunked_logprob._use_triton)  # TRL as shipped
    before, grad_before = score()
    assert score_completions_only_on_cpu()
    assert trl_utils._use_triton is not chunked_logprob._use_triton
    after, grad_after = score()
    mask = labels[:, 1:] != -100
    for b, a in zip(before, after, strict=True):
        assert torch.equal(b[mask], a[mask]) or torch.allclose(
            b[mask].float(), a[mask].float(), atol=1e-5
        )
    assert torch.allclose(grad_before, grad_after, atol=1e-6)
    assert score_completions_only_on_cpu()  # applying it twice is harmless
    assert not score_completions_only_on_cpu(False)  # TRL as shipped again
    assert trl_utils._use_triton is chunked_logprob._use_triton


def test_fix_leaves_other_trl_versions_alone(monkeypatch) -> None:
    import trl.trainer.utils as trl_utils

    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)
    assert not score_completions_only_on_cpu()


def test_cuda_keeps_trls_own_choice(monkeypatch) -> None:
    import torch
    import trl.trainer.utils as trl_utils
    from trl.kernels import chunked_logprob

    monkeypatch.setattr(trl_utils, "_use_triton", chunked_logprob._use_triton)
    score_completions_only_on_cpu()
    assert trl_utils._use_triton(torch.device("cpu"))
    cuda = torch.device("cuda")
    assert trl_utils._use_triton(cuda) == chunked_logprob._use_triton(cuda)
