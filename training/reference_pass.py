"""Reference pass: the reference log-probs of stored pairs the cache lacks, computed ahead
of the DPO run that will need them. A pipelined loop runs one for round k's pairs while
round k-1 trains, so round k's run finds them cached.

It builds the trainer a DPO run with these settings builds (`training.dpo.build_trainer`:
the same tokenisation, truncation, batching and reference weights, the adapter-disabled
base), and building it runs TRL's reference precompute; nothing is trained. The owner
caches what it writes (`ref_logprobs.parquet`), keyed as the DPO run looks them up.
"""

from __future__ import annotations

from training.dpo import DPOStageConfig, build_trainer, reference_key, write_ref_logprobs
from training.models import resolve_policy
from training.run_context import RunContext
from training.runfiles import REF_PAIRS


def run(ctx: RunContext) -> None:
    import pyarrow.parquet as pq

    cfg = ctx.stage_config(DPOStageConfig)
    rows = pq.read_table(ctx.run_dir / REF_PAIRS).to_pylist()
    policy = resolve_policy(ctx, cfg, rows)
    ref_hash, use_cache = reference_key(ctx, cfg, policy)
    if not use_cache:  # the owner checked this; a changed model folder would land here
        raise RuntimeError(
            f"{policy} no longer hashes to {ref_hash}: its reference log-probs would be "
            "cached under the wrong key"
        )
    ctx.status("running", message=f"reference log-probs of {len(rows)} pairs")
    _, trainer_cls = build_trainer(
        ctx, cfg, policy, rows, [], use_cache, on_model=ctx.follow_cpu_share_in
    )
    if ctx.is_main:
        write_ref_logprobs(ctx, trainer_cls.computed, ref_hash, ctx.config.get("template_hash"))
    metrics = {
        "ref_forward_pairs": trainer_cls.ref_forward_rows,
        "ref_seconds": round(trainer_cls.ref_seconds, 3),
        "pairs": len(rows),
    }
    ctx.finish(metrics, artifact=None, promote=False, extra={"base_policy": policy})
