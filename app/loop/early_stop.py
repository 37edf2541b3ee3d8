"""When a loop stops before its last round, and why (a pure function over the rounds so far)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RoundOutcome:
    """What one round's training ended with."""

    round: int
    promoted: bool  # the gate promoted the round's run (False: parent kept, or nothing new)
    metric: float | None  # held-out accuracy (DPO) or held-out reward (RL); None: no held-out


def early_stop_reason(outcomes: list[RoundOutcome], min_gain: float) -> str | None:
    """Why to stop after the last of `outcomes` (in round order), or None to go on.

    - the gate failed in the last two rounds in a row;
    - the held-out metric gained less than `min_gain` over the last two rounds
      (metric of round k minus metric of round k-2, both measured).
    """
    if len(outcomes) >= 2 and not outcomes[-1].promoted and not outcomes[-2].promoted:
        return (
            f"the gate failed twice in a row (rounds {outcomes[-2].round} and "
            f"{outcomes[-1].round}): the parent was kept both times (the run did not beat "
            "it, or there was nothing new to train on)"
        )
    if len(outcomes) >= 3:
        now, before = outcomes[-1].metric, outcomes[-3].metric
        if now is not None and before is not None and now - before < min_gain:
            return (
                f"the held-out metric gained {now - before:+.4f} over the last two rounds "
                f"({outcomes[-3].round} -> {outcomes[-1].round}: {before:.4f} -> {now:.4f}), "
                f"below --min-gain {min_gain:g}"
            )
    return None
