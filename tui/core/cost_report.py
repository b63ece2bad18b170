"""The statistics screen's cost figures: what each hosted backend costs per ticket, where a
rented GPU becomes cheaper than it, and spending over time, all from the user's own
measurements. Plain arithmetic over `tui.core.costs`; the screen only draws the results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tui.core.config import Settings
from tui.core.costs import BreakEven, break_even, monthly, token_cost
from tui.core.models import BackendStats


@dataclass(frozen=True, slots=True)
class HostedPrice:
    """What one hosted backend costs per ticket, and how that figure was obtained."""

    backend: str
    per_ticket: float
    how: str
    """'measured', 'token means' or 'reference counterfactual'."""


@dataclass(frozen=True, slots=True)
class BreakEvenRow:
    hosted: HostedPrice
    self_hosted: str
    gpu_usd_per_hour: float
    result: BreakEven
    hosted_monthly: float | None
    """Hosted bill at the configured daily volume."""

    @property
    def cheaper(self) -> str:
        """The backend that costs less at the configured daily volume."""
        if self.hosted_monthly and self.hosted_monthly > self.result.gpu_monthly_usd:
            return self.self_hosted
        return self.hosted.backend


@dataclass(frozen=True, slots=True)
class CostSeries:
    """Cumulative spending per backend over time buckets, ready to plot."""

    buckets: tuple[str, ...]
    """Bucket names (ISO timestamps cut to the hour), in time order."""
    lines: dict[str, tuple[list[int], list[float]]]
    """Backend -> (bucket indexes, cumulative cost at each), backends in name order."""


def hosted_prices(
    settings: Settings,
    stats: dict[str, BackendStats],
    token_means: Callable[[str], tuple[float | None, float | None]],
    counterfactual_mean: float | None,
) -> list[HostedPrice]:
    """Per-ticket price of each hosted backend with token prices, cheapest first."""
    out: list[HostedPrice] = []
    for name, config in settings.backends.items():
        has_prices = config.input_usd_per_mtok is not None or config.output_usd_per_mtok is not None
        if not has_prices or config.is_self_hosted or config.type == "cascade":
            continue
        figure = stats.get(name)
        if figure is not None and figure.cost_per_1k_usd:
            out.append(HostedPrice(name, figure.cost_per_1k_usd / 1000, "measured"))
            continue
        tokens_in, tokens_out = token_means(name)
        if tokens_in is not None:
            cost = token_cost(config, round(tokens_in), round(tokens_out or 0))
            if cost:
                out.append(HostedPrice(name, cost, "token means"))
                continue
        if name == settings.routing.reference_backend and counterfactual_mean:
            out.append(HostedPrice(name, counterfactual_mean, "reference counterfactual"))
    return sorted(out, key=lambda price: price.per_ticket)


def break_even_rows(
    settings: Settings, hosted: list[HostedPrice], stats: dict[str, BackendStats]
) -> list[BreakEvenRow]:
    """The cheapest hosted backend against each self-hosted one."""
    if not hosted:
        return []
    cheapest = hosted[0]
    rows = []
    for name, config in settings.backends.items():
        if config.gpu_usd_per_hour is None:
            continue
        figure = stats.get(name)
        p50 = figure.latency_ms.get("p50") if figure is not None else None
        result = break_even(
            cheapest.per_ticket,
            config.gpu_usd_per_hour,
            gpu_ms_per_ticket=p50,
            parallel_slots=config.gpu_parallel_slots,
        )
        rows.append(
            BreakEvenRow(
                cheapest,
                name,
                config.gpu_usd_per_hour,
                result,
                monthly(cheapest.per_ticket, settings.routing.daily_volume),
            )
        )
    return rows


def cumulative_costs(timeline: list[tuple[str, str, float, int]]) -> CostSeries:
    """Running totals per backend from `Store.cost_timeline` rows (bucket, backend, cost, n)."""
    buckets = sorted({bucket for bucket, *_ in timeline})
    index = {bucket: i for i, bucket in enumerate(buckets)}
    lines: dict[str, tuple[list[int], list[float]]] = {}
    for backend in sorted({b for _, b, *_ in timeline}):
        xs: list[int] = []
        ys: list[float] = []
        total = 0.0
        for bucket, name, cost, _n in timeline:
            if name == backend:
                total += cost
                xs.append(index[bucket])
                ys.append(total)
        lines[backend] = (xs, ys)
    return CostSeries(tuple(buckets), lines)
