"""The numbers behind the statistics screen's plots, computed without a plotting library.

A histogram per backend drawn by the plotting library bins each backend on its own range, so
the bars of two backends never line up and the axis reads in log10 units; here all backends
share one set of bins in log-milliseconds, and every tick label is written as a person reads it
(`100 ms`, `$0.0023`), never `1e-05` (issue 18).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tui.core import money

MIN_MS = 0.01
"""Latencies are clamped to this before taking logs (a cached answer can report 0 ms)."""


@dataclass(frozen=True)
class LatencyBins:
    """Ticket counts per backend over shared log-spaced latency bins."""

    centers: tuple[float, ...]
    """Each bin's centre, in log10(ms): the x axis the bars stand on."""
    counts: dict[str, tuple[int, ...]]
    """Per backend, tickets per bin (same length as `centers`)."""
    ticks: tuple[float, ...]
    """Where the x axis is labelled, in log10(ms)."""
    tick_labels: tuple[str, ...]
    """The labels of `ticks`, in milliseconds (`1`, `10`, `100`, `1k`)."""


def _ms_label(log_ms: float) -> str:
    value = 10**log_ms
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def latency_bins(latencies: Mapping[str, Sequence[float]], bins: int = 20) -> LatencyBins:
    """Shared bins from the fastest to the slowest ticket of any backend, whole decades for
    ticks; backends with no latency are left out."""
    logs = {
        name: [math.log10(max(v, MIN_MS)) for v in values]
        for name, values in latencies.items()
        if values
    }
    if not logs:
        return LatencyBins((), {}, (), ())
    low = math.floor(min(min(v) for v in logs.values()))
    high = max(math.ceil(max(max(v) for v in logs.values())), low + 1)
    width = (high - low) / bins
    centers = tuple(low + width * (i + 0.5) for i in range(bins))
    counts: dict[str, tuple[int, ...]] = {}
    for name, values in logs.items():
        row = [0] * bins
        for v in values:
            row[min(int((v - low) / width), bins - 1)] += 1
        counts[name] = tuple(row)
    ticks = tuple(float(t) for t in range(low, high + 1))
    return LatencyBins(centers, counts, ticks, tuple(_ms_label(t) for t in ticks))


def money_ticks(top: float, steps: int = 3) -> tuple[tuple[float, ...], tuple[str, ...]]:
    """Y ticks from $0 to `top` labelled in plain dollars (`$0.0023`, not `2.3e-03`)."""
    if top <= 0 or not math.isfinite(top):
        return (0.0,), ("$0",)
    ticks = tuple(top * i / (steps - 1) for i in range(steps))
    return ticks, tuple(money.usd(t) for t in ticks)


def percent_ticks(values: Sequence[float]) -> tuple[tuple[float, ...], tuple[str, ...]]:
    """Y ticks in percent for a learning curve: the lowest and highest decade around it."""
    if not values:
        return (), ()
    low = max(0, math.floor(min(values) / 10) * 10)
    high = min(100, max(math.ceil(max(values) / 10) * 10, low + 10))
    step = 10 if high - low <= 40 else 20
    ticks = tuple(float(t) for t in range(low, high + 1, step))
    return ticks, tuple(f"{t:.0f}%" for t in ticks)
