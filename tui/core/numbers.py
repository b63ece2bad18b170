"""Validation of every number a server (or a plugin) reports: token counts, timings, costs.

A number from the wire is data from someone else: `usage.prompt_tokens = 10**30` once made
SQLite raise OverflowError when the batch was written, which lost the batch and did so again
on every rerun. Each parser of a backend passes what it read through `count` or `duration`,
naming the field as the server spelt it, and `tui.services.routing.Router` checks every
numeric field of a `RouteResult` once more at the boundary (`check_result`), so plugins and sums (a
cascade, a repair round) are held to the same bounds. A bad number is a `BadResponse` naming
the field: that ticket's decision is an error, never the run's.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tui.core.backend import BadResponse

if TYPE_CHECKING:
    from tui.core.backend import RouteResult

MAX_TOKENS = 1_000_000_000
"""Most tokens one call may report for a field; the largest context windows are ~10**7."""
MAX_MS = 86_400_000.0
"""Longest duration one call may report (a day): a timeout bounds every request far below."""
MAX_CPU_S = 86_400.0
"""Most CPU seconds one call may report (a day)."""
MAX_COST_USD = 1_000_000.0
"""Most one call may cost (a plugin or a cascade that prices itself)."""
NS_PER_MS = 1_000_000
"""Ollama reports durations in nanoseconds."""


def shown(value: Any) -> str:
    """A short, safe rendering of a bad value for an error message.

    `str()` of an int over 4,300 digits raises in Python ≥ 3.11, and a server's value may be
    any size, so huge ints are described by their magnitude instead.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"{'-' if value < 0 else ''}a {digits}-digit number"
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _number(value: Any, field: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadResponse(f"{field} is not a number ({shown(value)})")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadResponse(f"{field} is not a finite number ({shown(value)})")
    return value


def count(value: Any, field: str, *, cap: int = MAX_TOKENS) -> int | None:
    """A token count: None when absent (null), else an integer within [0, cap].

    Integral floats (`12.0`, which some servers send) are accepted as integers.

    Raises:
        BadResponse: Not a number, fractional, negative, infinite or above `cap`.
    """
    if value is None:
        return None
    number = _number(value, field)
    if isinstance(number, float):
        if not number.is_integer():
            raise BadResponse(f"{field} is not a whole number ({shown(value)})")
        if not 0 <= number <= cap:
            raise BadResponse(f"{field} = {shown(value)} is outside 0..{cap:,}")
        return int(number)
    if not 0 <= number <= cap:
        raise BadResponse(f"{field} = {shown(value)} is outside 0..{cap:,}")
    return number


def duration(
    value: Any, field: str, *, per_ms: float = 1.0, cap_ms: float = MAX_MS
) -> float | None:
    """A duration in milliseconds: None when absent, else finite within [0, cap_ms].

    Args:
        value: The number as the server sent it.
        field: Its name on the wire, for the error message.
        per_ms: Units per millisecond of `value` (`NS_PER_MS` for nanoseconds).
        cap_ms: The largest acceptable duration.

    Raises:
        BadResponse: Not a number, negative, infinite or longer than `cap_ms`.
    """
    if value is None:
        return None
    number = _number(value, field)
    if not 0 <= number <= cap_ms * per_ms:
        raise BadResponse(f"{field} = {shown(value)} is outside 0..{cap_ms * per_ms:,.0f}")
    return float(number) / per_ms


def amount(value: Any, field: str, *, cap: float) -> float | None:
    """A non-negative finite quantity (CPU seconds, USD) no larger than `cap`."""
    if value is None:
        return None
    number = _number(value, field)
    if not 0 <= number <= cap:
        raise BadResponse(f"{field} = {shown(value)} is outside 0..{cap:,.0f}")
    return float(number)


_COUNTS = ("input_tokens", "output_tokens", "cached_input_tokens")
_DURATIONS = ("total_ms", "ttft_ms", "server_load_ms", "server_prompt_ms", "server_gen_ms")


def check_result(result: RouteResult) -> None:
    """Check every numeric field of a result, its stages included, against the bounds above.

    The engine calls this once per result, whichever backend (built-in or plugin) made it.

    Raises:
        BadResponse: The first field out of bounds, named as `RouteResult.<field>`.
    """
    # A plain int or float inside its bounds passes without building the field's name:
    # this runs for every ticket, and the full checks below decide everything else.
    for name in _COUNTS:
        value = getattr(result, name)
        if value is not None and not (type(value) is int and 0 <= value <= MAX_TOKENS):
            count(value, f"result.{name}")
    for name in _DURATIONS:
        value = getattr(result, name)
        if value is not None and not (type(value) is float and 0.0 <= value <= MAX_MS):
            duration(value, f"result.{name}")
    if result.cpu_seconds is not None:
        amount(result.cpu_seconds, "result.cpu_seconds", cap=MAX_CPU_S)
    if result.cost_usd is not None:
        amount(result.cost_usd, "result.cost_usd", cap=MAX_COST_USD)
    for index, stage in enumerate(result.stages):
        where = f"result.stages[{index}]"
        count(stage.input_tokens, f"{where}.input_tokens")
        count(stage.output_tokens, f"{where}.output_tokens")
        duration(stage.total_ms, f"{where}.total_ms")
        amount(stage.cost_usd, f"{where}.cost_usd", cap=MAX_COST_USD)
