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


def accuracy_text(
    accuracy: float | None, low: float | None, high: float | None, n: int, *, left_out: int = 0
) -> str:
    """An accuracy as every screen shows it: the figure, its 95 % interval and the number of
    labels it rests on, e.g. `86.3% (81–90%, n=412)`.

    The bounds are rounded outwards (low down, high up), so the interval shown is never
    narrower than the one computed; n has no thousands separator, so that the text fits a
    table column up to n = 9999 with two-digit bounds. With nothing counted: "no held-out
    labels yet" when labels were left out because the model trained on them, "–" when there
    are none at all.
    """
    if accuracy is None or low is None or high is None or n == 0:
        return "no held-out labels yet" if left_out else "–"
    floor = math.floor(low * 100 + 1e-9)
    ceil = math.ceil(high * 100 - 1e-9)
    return f"{accuracy * 100:.1f}% ({floor}–{ceil}%, n={n})"
