"""Prices: token prices for hosted APIs, GPU-hour shares for self-hosted models, CPU time for
the specialist, counterfactual cost on the reference backend, and monthly projections.

All arithmetic lives here so the screens and the CLI show the same figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tui.core.config import DEFAULT_CPU_USD_PER_HOUR

if TYPE_CHECKING:
    from tui.core.backend import RouteResult
    from tui.core.config import BackendConfig


class PricingError(ValueError):
    """A price came out infinite, NaN or negative; the engine makes it this ticket's error."""


def _finite(value: float | None, config: BackendConfig) -> float | None:
    """`value` if it is a usable amount of USD; an infinite or negative cost is refused so it
    can never reach the store, the statistics or `stats --json` (which printed `Infinity`)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise PricingError(f"cost {value!r} USD for backends.{config.name}: check its prices")
    return value


HOURS_PER_MONTH = 730.0
"""Average hours in a month (8,760 / 12), the unit cloud providers bill monthly GPUs in."""
DAYS_PER_MONTH = 30.0


def token_cost(
    config: BackendConfig,
    input_tokens: int | None,
    output_tokens: int | None,
    cached_input_tokens: int | None = None,
) -> float | None:
    """Tokens × configured prices; None when the backend has no token prices."""
    if config.input_usd_per_mtok is None and config.output_usd_per_mtok is None:
        return None
    cached = cached_input_tokens or 0
    fresh = max((input_tokens or 0) - cached, 0)
    cached_price = (
        config.cached_input_usd_per_mtok
        if config.cached_input_usd_per_mtok is not None
        else config.input_usd_per_mtok or 0.0
    )
    return _finite(
        (
            fresh * (config.input_usd_per_mtok or 0.0)
            + cached * cached_price
            + (output_tokens or 0) * (config.output_usd_per_mtok or 0.0)
        )
        / 1_000_000,
        config,
    )


def gpu_cost(config: BackendConfig, total_ms: float | None) -> float | None:
    """The ticket's share of GPU time: its latency over the slots the GPU serves at once."""
    if config.gpu_usd_per_hour is None or total_ms is None:
        return None
    return config.gpu_usd_per_hour * (total_ms / 3_600_000) / config.gpu_parallel_slots


def cpu_cost(config: BackendConfig, cpu_seconds: float | None) -> float | None:
    if cpu_seconds is None:
        return None
    # Only the specialist's Options (and a plugin, as its own key) set a CPU price; a cascade
    # billing its specialist stage's CPU time uses the default rate.
    configured = getattr(config, "cpu_usd_per_hour", None)
    rate = configured if isinstance(configured, int | float) else DEFAULT_CPU_USD_PER_HOUR
    return rate * cpu_seconds / 3600


def price_result(config: BackendConfig, result: RouteResult) -> float | None:
    """Cost of one routing call in USD, by whichever pricing the backend's config has.

    Raises:
        PricingError: The cost is infinite, NaN or negative (prices the config should have
            refused, or numbers a backend should have): the ticket's decision is an error.
    """
    return _finite(_price(config, result), config)


def _price(config: BackendConfig, result: RouteResult) -> float | None:
    if result.cost_usd is not None:
        return result.cost_usd
    if config.gpu_usd_per_hour is not None:
        return gpu_cost(config, result.total_ms)
    tokens = token_cost(
        config, result.input_tokens, result.output_tokens, result.cached_input_tokens
    )
    if tokens is not None:
        return tokens
    if result.cpu_seconds is not None:
        return cpu_cost(config, result.cpu_seconds)
    if config.type in ("ollama", "llamacpp", "llamacpp-local"):
        return 0.0  # self-hosted with no GPU price configured: nothing billed per ticket
    return None


def per_1k(total_usd: float, n: int) -> float | None:
    return None if n == 0 else total_usd / n * 1000


def monthly(cost_per_ticket: float | None, daily_volume: int) -> float | None:
    return None if cost_per_ticket is None else cost_per_ticket * daily_volume * DAYS_PER_MONTH


@dataclass(frozen=True, slots=True)
class BreakEven:
    """Hosted per-ticket pricing against a GPU billed by the hour whether busy or not."""

    hosted_cost_per_ticket: float
    gpu_monthly_usd: float
    daily_volume: float | None
    """Tickets/day above which the GPU is cheaper; None when hosted costs nothing per ticket."""
    gpu_capacity_per_day: float | None
    """Tickets/day one GPU can serve at the measured latency, if known."""


def break_even(
    hosted_cost_per_ticket: float,
    gpu_usd_per_hour: float,
    *,
    gpu_ms_per_ticket: float | None = None,
    parallel_slots: int = 1,
) -> BreakEven:
    gpu_monthly = gpu_usd_per_hour * HOURS_PER_MONTH
    volume = (
        None
        if hosted_cost_per_ticket <= 0
        else gpu_monthly / (DAYS_PER_MONTH * hosted_cost_per_ticket)
    )
    capacity = None
    if gpu_ms_per_ticket:
        capacity = 86_400_000 / gpu_ms_per_ticket * parallel_slots
    return BreakEven(hosted_cost_per_ticket, gpu_monthly, volume, capacity)
