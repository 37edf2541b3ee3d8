"""Accuracies with 95% Wilson score intervals, for every report that states one."""

from __future__ import annotations

import math
from typing import Any

Z95 = 1.959964


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of successes/n; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_with_interval(right: int, n: int) -> dict[str, Any]:
    """{pairs, right, accuracy, interval} rounded for reports (accuracy None when n is 0)."""
    low, high = wilson(right, n)
    return {
        "pairs": n,
        "right": right,
        "accuracy": round(right / n, 4) if n else None,
        "interval": [round(low, 4), round(high, 4)] if n else None,
    }
