"""Small, version-checked adjustments to TRL 1.16 internals that cost time on CPU.

Imported by the stages inside the trainer subprocess only; each fix checks that the
function it replaces is still the one it was written for, and otherwise does nothing.
"""

from __future__ import annotations


def score_completions_only_on_cpu(enabled: bool = True) -> bool:
    """Let TRL's fused LM head score only completion tokens on CPU, as it does on CUDA.

    TRL's `_fused_forward` runs the LM head and log-softmax over the vocabulary at every
    position, prompt included, unless Triton is in use ("compact" scoring): on other
    devices a varying number of scored positions would recompile kernels (Neuron). On
    CPU nothing is compiled, and a chat prompt is most of a DPO sequence, so most of that
    work is thrown away (the masked positions are zeroed afterwards). The values of the
    scored positions, and every metric (all masked by the completion mask), are the same.
    `enabled=False` puts TRL's own choice back (a run that measures TRL as shipped).
    Returns whether the fix is active.
    """
    import trl.trainer.utils as trl_utils
    from trl.kernels import chunked_logprob

    current = getattr(trl_utils, "_use_triton", None)
    installed = getattr(current, "_prefloop_cpu_compact", False)
    if not enabled:
        if installed:
            trl_utils._use_triton = chunked_logprob._use_triton
        return False
    if installed:
        return True
    if current is not chunked_logprob._use_triton:
        return False  # another TRL version: leave it alone

    def use_compact(device) -> bool:
        return device.type == "cpu" or chunked_logprob._use_triton(device)

    use_compact._prefloop_cpu_compact = True  # type: ignore[attr-defined]
    trl_utils._use_triton = use_compact
    return True
