"""Money as people write it, the one formatter every screen and every text output uses.

A specialist costs about $0.0000000076 a ticket; Python's `:g` and `:.1e` print that as
`7.6e-09`, which nobody reading a cost column parses at a glance (issue 18). Here a cost is
written in plain decimals with two significant digits (`$0.0000076`, `$0.011`), thousands
separated (`$12,000`), and anything smaller than a floor as `< $0.000001` instead of a row of
zeros. The unit that makes a tiny figure meaningful leads: per 1,000 tickets and per month at
the configured daily volume, rather than a per-ticket fraction of a cent. JSON outputs keep
their raw numbers; only what a person reads goes through here.
"""

from __future__ import annotations

import math

DASH = "–"
"""What an unknown amount reads as (no decisions, no price)."""
FLOOR_USD = 0.000001
"""Below a millionth of a dollar the digits mean nothing to a reader: `< $0.000001`."""
DAYS_PER_MONTH = 30
"""The month every projection uses, as the stats' `projected_monthly_usd` does."""


def _decimals(magnitude: float, significant: int) -> int:
    """Digits after the point that show `significant` significant digits of `magnitude`."""
    return max(0, significant - 1 - math.floor(math.log10(magnitude)))


def usd(value: float | None, *, floor: float = FLOOR_USD, significant: int = 2) -> str:
    """Dollars without scientific notation: `$12,000`, `$3.40`, `$0.011`, `$0.0000076`.

    Whole dollars from $100 up, cents from $1, two significant digits below; a non-zero
    amount under `floor` reads `< $floor` (the floor itself written the same way).
    """
    if value is None or not math.isfinite(value):
        return DASH
    if value == 0:
        return "$0"
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    if magnitude < floor:
        return f"< {sign}${floor:.{_decimals(floor, 1)}f}"
    if magnitude >= 100:
        text = f"{magnitude:,.0f}"
    elif magnitude >= 1:
        text = f"{magnitude:,.2f}"
    else:
        text = _fraction(magnitude, significant)
    return f"{sign}${text}"


def _fraction(magnitude: float, significant: int) -> str:
    """An amount under a dollar in plain decimals, trailing zeros dropped past the cents."""
    decimals = _decimals(magnitude, significant)
    rounded = round(magnitude, decimals)
    if rounded >= 1:  # 0.996 rounds up to a dollar: dollars and cents
        return f"{rounded:,.2f}"
    decimals = _decimals(rounded, significant)  # 0.0999 rounds to 0.10, not 0.100
    whole, _, digits = f"{rounded:.{decimals}f}".partition(".")
    return f"{whole}.{digits.rstrip('0').ljust(2, '0')}"


def per_1k(per_ticket: float | None) -> str:
    """What 1,000 tickets cost, the unit a per-ticket fraction of a cent is read in."""
    return DASH if per_ticket is None else f"{usd(per_ticket * 1000)}/1k"


def per_1k_amount(per_1k_usd: float | None) -> str:
    """An amount that already is per 1,000 tickets, with its unit."""
    return DASH if per_1k_usd is None else f"{usd(per_1k_usd)}/1k"


def monthly(value: float | None) -> str:
    """A monthly amount with its unit: `$0.011/mo`, `$12,000/mo`."""
    return DASH if value is None else f"{usd(value)}/mo"


def monthly_at(per_ticket: float | None, daily_volume: int) -> str:
    """What `daily_volume` tickets a day cost in a month at this per-ticket price."""
    if per_ticket is None:
        return DASH
    return monthly(per_ticket * daily_volume * DAYS_PER_MONTH)


def price(value: float | None) -> str:
    """A configured price as written (`$1.10`, `$0.075`, `$0.00001`): a price is typed by a
    person, so it keeps all its digits (to a billionth), never a rounded `7.5e-02`."""
    if value is None or not math.isfinite(value):
        return DASH
    if value == 0 or abs(value) >= 1:
        return usd(value)
    whole, _, digits = f"{abs(value):.9f}".partition(".")
    sign = "-" if value < 0 else ""
    if not digits.strip("0"):
        return f"< {sign}$0.000000001"
    return f"{sign}${whole}.{digits.rstrip('0').ljust(2, '0')}"


def rate(value: float | None, unit: str) -> str:
    """A configured price per unit of resource: `$1.10/GPU-h`, `$0.075/Mtok`."""
    return DASH if value is None else f"{price(value)}/{unit}"
