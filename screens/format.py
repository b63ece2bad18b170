"""Formatting shared by the screens, so a cost reads the same everywhere and user text is
always shown as plain text."""

from __future__ import annotations

from datetime import datetime

from textual.content import Content
from textual.fuzzy import Matcher

from tui.core import money
from tui.core.money import monthly, per_1k, per_1k_amount, price, rate

__all__ = ["monthly", "per_1k", "per_1k_amount", "price", "rate", "usd", "usd_per_1k"]


def usd(value: float | None) -> str:
    """Dollars as people write them (`tui.core.money.usd`): the screens and the command line
    share one formatter, so no screen shows `7.6e-09`."""
    return money.usd(value)


def usd_per_1k(per_ticket: float | None) -> str:
    """What 1,000 tickets at this per-ticket cost come to, for a column headed per 1k: a
    specialist's $0.0000000076 reads $0.0000076, not a row of `< $0.000001`."""
    return money.usd(None if per_ticket is None else per_ticket * 1000)


def ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 10_000:
        return f"{value / 1000:.0f}s"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def confidence(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def when(value: datetime | None) -> str:
    """Month-day and minutes in local-free UTC, short enough for a table column."""
    return "–" if value is None else value.strftime("%m-%d %H:%M")


def tokens(inp: int | None, out: int | None, estimated: bool = False) -> str:
    if inp is None and out is None:
        return "–"
    mark = "~" if estimated else ""
    return f"{mark}{count(inp)} / {count(out)}"


def highlight_plain(matcher: Matcher, candidate: str) -> Content:
    """`Matcher.highlight` for user text: Textual's parses the candidate as markup, so a label
    or backend name such as `a [/]` would crash the picker; this styles plain content."""
    content = Content(candidate)
    score, offsets = matcher.fuzzy_search.match(matcher.query, candidate)
    if not score:
        return content
    for offset in offsets:
        if not candidate[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content
