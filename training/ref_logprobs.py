"""Reference log-probs of (prompt, chosen, rejected) token lists, the prompt run once.

A DPO pair's two completions share their prompt, and in chat data the prompt is most of
the tokens. TRL's reference pass runs prompt + chosen and prompt + rejected as two
sequences; here the prompt goes through the model once, its key/value cache is repeated
for the two completions, and only the completions run again. The result is the same sum
of completion-token log-probs TRL computes (checked against it in
tests/training/test_ref_logprobs.py).

Only pairs that fit `max_length` untruncated can share: with `keep_end` truncation the
kept part of the prompt differs between chosen and rejected, so those pairs go through
TRL's own path (`split_shared`).
"""

from __future__ import annotations

from typing import Any

Triple = tuple[list[int], list[int], list[int]]  # prompt, chosen, rejected token ids


def split_shared(triples: list[Triple], max_length: int | None) -> tuple[list[int], list[int]]:
    """(indices that can share the prompt, indices that need the per-sequence path)."""
    shared, other = [], []
    for k, (p, c, r) in enumerate(triples):
        fits = max_length is None or len(p) + max(len(c), len(r)) <= max_length
        (shared if fits and p and c and r else other).append(k)
    return shared, other


def supports_shared_prompt(model: Any) -> bool:
    """Decoder-only LMs: the prompt's key/value cache can be continued by a completion."""
    return not getattr(getattr(model, "config", None), "is_encoder_decoder", False)


def shared_prompt_logps(
    model: Any, triples: list[Triple], pad_id: int, device: Any
) -> tuple[list[float], list[float]]:
    """Summed log-probs of each chosen and rejected completion given its prompt.

    Call under `torch.inference_mode()` with the reference weights active (adapter off).
    Prompts are right-padded (a padded position never feeds a real one: the mask hides
    it and positions are explicit), so no row sees a fully masked attention row.
    """
    import torch

    n = len(triples)
    prompt_lens = [len(p) for p, _, _ in triples]
    prompt, prompt_mask = _right_padded([p for p, _, _ in triples], pad_id)
    last = torch.tensor([length - 1 for length in prompt_lens])
    keep = torch.unique(last)  # the LM head runs only at each prompt's last position
    out = model(
        input_ids=prompt.to(device),
        attention_mask=prompt_mask.to(device),
        use_cache=True,
        logits_to_keep=keep.to(device),
    )
    column = torch.searchsorted(keep, last).to(device)
    first = out.logits[torch.arange(n, device=device), column].float().log_softmax(-1)
    cache = out.cache if hasattr(out, "cache") else out.past_key_values  # renamed in 5.x
    cache.batch_repeat_interleave(2)  # rows: p0, p0, p1, p1, ... for c0, r0, c1, r1, ...

    tokens, mask = _right_padded([ids for _, c, r in triples for ids in (c, r)], pad_id)
    span = tokens.shape[1]
    attention = torch.cat([prompt_mask.repeat_interleave(2, dim=0), mask], dim=1)
    positions = torch.tensor(prompt_lens).repeat_interleave(2)[:, None] + torch.arange(span)
    tokens, mask = tokens.to(device), mask.to(device)
    out = model(
        input_ids=tokens,
        attention_mask=attention.to(device),
        position_ids=positions.to(device),
        cache=cache,
        use_cache=False,
    )
    per_token = torch.empty((2 * n, span), dtype=torch.float32, device=device)
    # token 0 is predicted by the prompt's last position, token t by completion position t-1
    per_token[:, 0] = first.repeat_interleave(2, dim=0).gather(1, tokens[:, :1]).squeeze(1)
    if span > 1:
        logp = out.logits[:, :-1].float().log_softmax(-1)
        per_token[:, 1:] = logp.gather(2, tokens[:, 1:, None]).squeeze(-1)
    total = (per_token * mask).sum(dim=1).cpu().tolist()
    return total[0::2], total[1::2]


def _right_padded(seqs: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """Token ids padded on the right to the longest, and the mask of the real tokens."""
    import torch

    width = max(len(ids) for ids in seqs)
    tokens = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, ids in enumerate(seqs):
        tokens[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    return tokens, mask
