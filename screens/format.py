"""Formatting shared by the screens, so a cost reads the same everywhere and user text is
always shown as plain text."""

from __future__ import annotations

from datetime import datetime

from textual.content import Content
from textual.fuzzy import Matcher


def usd(value: float | None) -> str:
    """Dollars at a precision that keeps tiny per-ticket costs readable."""
    if value is None:
        return "–"
    if value == 0:
        return "$0"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    if abs(value) >= 0.001:
        return f"${value:.4f}"
    return f"${value:.1e}"


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
