"""The statistics screen's cost figures without the screen: hosted per-ticket prices and how
each was obtained, break-even rows and which side is cheaper, cost over time, and the status
bar's rolling figures."""

from __future__ import annotations

import pytest

from tui.core.config import Settings, _build
from tui.core.cost_report import break_even_rows, cumulative_costs, hosted_prices
from tui.core.models import BackendStats, Decision
from tui.services.status_figures import StatusTracker


def settings(daily_volume: int = 1000) -> Settings:
    return _build(
        {
            "routing": {"backend": "api", "reference_backend": "ref", "daily_volume": daily_volume},
            "backends": {
                "api": {
                    "type": "specialist",
                    "input_usd_per_mtok": 1.0,
                    "output_usd_per_mtok": 2.0,
                },
                "ref": {
                    "type": "openai",
                    "base_url": "http://127.0.0.1:9/v1",
                    "model": "m",
                    "input_usd_per_mtok": 0.15,
                    "output_usd_per_mtok": 0.6,
                },
                "gpu": {"type": "specialist", "gpu_usd_per_hour": 2.0},
            },
        },
        None,
    )


def stats(backend: str, *, per_1k: float | None, p50: float | None = None) -> BackendStats:
    return BackendStats(
        backend=backend,
        n=10,
        errors=0,
        accuracy=None,
        macro_f1=None,
        latency_ms={"p50": p50, "p95": p50},
        cost_usd=0.0,
        cost_per_1k_usd=per_1k,
    )


def test_hosted_prices_say_how_each_was_obtained_cheapest_first() -> None:
    config = settings()
    measured = {"api": stats("api", per_1k=5.0)}
    means = {"api": (None, None), "ref": (1000.0, 100.0), "gpu": (None, None)}
    prices = hosted_prices(config, measured, means.__getitem__, None)
    assert [(p.backend, p.how) for p in prices] == [("ref", "token means"), ("api", "measured")]
    assert prices[0].per_ticket == pytest.approx((1000 * 0.15 + 100 * 0.6) / 1e6)
    assert prices[1].per_ticket == pytest.approx(0.005)
    nothing = hosted_prices(config, {}, lambda _name: (None, None), 0.002)
    assert [(p.backend, p.how) for p in nothing] == [("ref", "reference counterfactual")]


def test_break_even_rows_pair_the_cheapest_hosted_with_each_gpu() -> None:
    config = settings(daily_volume=100_000)
    prices = hosted_prices(config, {"api": stats("api", per_1k=5.0)}, lambda _n: (None, None), None)
    (row,) = break_even_rows(config, prices, {"gpu": stats("gpu", per_1k=None, p50=100.0)})
    assert (row.hosted.backend, row.self_hosted, row.gpu_usd_per_hour) == ("api", "gpu", 2.0)
    assert row.result.gpu_capacity_per_day == pytest.approx(864_000)
    assert row.hosted_monthly == pytest.approx(0.005 * 100_000 * 30)
    assert row.cheaper == "gpu"  # $15,000 a month hosted against $1,460 for the GPU
    (small,) = break_even_rows(settings(daily_volume=10), prices, {})
    assert small.cheaper == "api" and small.result.gpu_capacity_per_day is None
    assert break_even_rows(config, [], {}) == []


def test_cumulative_costs_run_per_backend_over_shared_buckets() -> None:
    timeline = [
        ("2025-03-14T09", "b", 1.0, 3),
        ("2025-03-14T09", "a", 0.5, 1),
        ("2025-03-14T11", "a", 0.25, 1),
        ("2025-03-14T12", "b", 2.0, 2),
    ]
    series = cumulative_costs(timeline)
    assert series.buckets == ("2025-03-14T09", "2025-03-14T11", "2025-03-14T12")
    assert list(series.lines) == ["a", "b"]
    assert series.lines["a"] == ([0, 1], [0.5, 0.75])
    assert series.lines["b"] == ([0, 2], [1.0, 3.0])
    assert cumulative_costs([]).lines == {}


def test_the_status_figures_prefer_this_sessions_decisions_over_the_baseline() -> None:
    tracker = StatusTracker(daily_volume=1000)
    tracker.load_baseline([stats("api", per_1k=2.0, p50=40.0)], total_cost=1.5)
    base = tracker.figures("api", in_flight=3)
    assert (base.p50_ms, base.per_1k, base.total_cost, base.in_flight) == (40.0, 2.0, 1.5, 3)
    assert base.monthly == pytest.approx(2.0 / 1000 * 1000 * 30)
    tracker.add(
        Decision(
            ticket_id=f"T{i}",
            run_id="r",
            backend="api",
            backend_type="openai",
            label="billing",
            confidence=0.9,
            total_ms=float(10 * (i + 1)),
            cost_usd=0.004,
        )
        for i in range(4)
    )
    live = tracker.figures("api", in_flight=0)
    assert (live.p50_ms, live.p95_ms) == (20.0, 40.0)
    assert live.per_1k == pytest.approx(4.0) and live.total_cost == pytest.approx(1.516)
    assert live.per_second == pytest.approx(4 / 5)
    assert tracker.figures("other", in_flight=0).p50_ms is None
