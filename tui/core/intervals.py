"""Confidence intervals for the accuracies the product shows.

An accuracy from 40 labels and one from 4,000 are not the same claim. Every accuracy a screen or
`stats --json` shows comes with the number of labels it rests on and a 95 % Wilson score
interval: unlike the normal approximation it stays inside [0, 1] and is honest at small n and at
accuracies near 100 %, which is exactly where a freshly trained specialist sits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054
"""The standard normal quantile for a two-sided 95 % interval."""


@dataclass(frozen=True, slots=True)
class Interval:
    """A proportion with its interval; `low`/`high` are None when nothing was counted."""

    successes: int
    n: int
    low: float | None
    high: float | None

    @property
    def value(self) -> float | None:
        return self.successes / self.n if self.n else None


def wilson_interval(successes: int, n: int, z: float = Z_95) -> Interval:
    """The Wilson score interval of `successes` out of `n`.

    Raises:
        ValueError: n or successes negative, or successes above n.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return Interval(0, 0, None, None)
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Interval(successes, n, max(0.0, centre - half), min(1.0, centre + half))
