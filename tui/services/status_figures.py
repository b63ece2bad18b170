"""The status bar's arithmetic: a rolling window of recent decisions over a store baseline.

Textual-free: the inbox feeds it decisions as they are stored and draws the `StatusFigures`
it computes; how fast, how slow and how costly the active backend is are numbers, not UI.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from tui.core.costs import monthly, per_1k
from tui.core.models import BackendStats, Decision
from tui.services.routing import percentile

RATE_WINDOW_S = 5.0
"""Tickets per second is measured over this many seconds."""


@dataclass(frozen=True, slots=True)
class StatusFigures:
    """What the status bar shows; replaced whole, never mutated."""

    backend: str = ""
    in_flight: int = 0
    limit: tuple[int, int] | None = None
    """(calls the active backend takes at once now, its `max_concurrency`), once learnt."""
    per_second: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    total_cost: float | None = None
    per_1k: float | None = None
    monthly: float | None = None
    daily_volume: int = 0


class StatusTracker:
    """Turns decisions as they arrive into the numbers of the status bar."""

    def __init__(self, daily_volume: int) -> None:
        self.daily_volume = daily_volume
        self.baseline: dict[str, BackendStats] = {}
        self.total_cost: float | None = None
        self._recent: deque[tuple[float, Decision]] = deque(maxlen=2000)

    def load_baseline(self, stats: Iterable[BackendStats], total_cost: float) -> None:
        self.baseline = {s.backend: s for s in stats}
        self.total_cost = total_cost + sum(d.cost_usd or 0.0 for _, d in self._recent)

    def add(self, decisions: Iterable[Decision]) -> None:
        now = time.monotonic()
        for decision in decisions:
            self._recent.append((now, decision))
            if self.total_cost is not None:
                self.total_cost += decision.cost_usd or 0.0

    def figures(
        self, backend: str, in_flight: int, limit: tuple[int, int] | None = None
    ) -> StatusFigures:
        """Figures for the active backend: this session's decisions, else the store's."""
        now = time.monotonic()
        rate = sum(1 for t, _ in self._recent if now - t <= RATE_WINDOW_S) / RATE_WINDOW_S
        mine = [d for _, d in self._recent if d.backend == backend and d.ok]
        base = self.baseline.get(backend)
        latencies = [d.total_ms for d in mine if d.total_ms is not None]
        if latencies:
            p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        elif base is not None:
            p50, p95 = base.latency_ms.get("p50"), base.latency_ms.get("p95")
        else:
            p50 = p95 = None
        costs = [d.cost_usd for d in mine if d.cost_usd is not None]
        if costs:
            thousand = per_1k(sum(costs), len(costs))
        else:
            thousand = base.cost_per_1k_usd if base is not None else None
        return StatusFigures(
            backend=backend,
            in_flight=in_flight,
            limit=limit,
            per_second=rate,
            p50_ms=p50,
            p95_ms=p95,
            total_cost=self.total_cost,
            per_1k=thousand,
            monthly=monthly(None if thousand is None else thousand / 1000, self.daily_volume),
            daily_volume=self.daily_volume,
        )
