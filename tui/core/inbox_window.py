"""The inbox as a window over keyset pages, and which of its rows need a person.

The inbox may hold a million tickets, so the screen only ever holds a window of a few pages.
These functions compute that window from the store (reload it in place, grow it at an edge,
jump to the next ticket that needs attention); the screen calls them from thread workers and
only draws what they return. Textual-free, so the paging rules are tested without a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tui.core.models import Decision, InboxRow
from tui.core.store import Cursor, InboxFilter

if TYPE_CHECKING:
    from tui.core.store import Store

PAGE = 100
"""Rows fetched per keyset page."""
WINDOW = 300
"""Most rows the window holds at once."""
SCAN_PAGES = 50
"""Pages the attention scan looks through beyond the window before it gives up."""
SCAN_CONTEXT = 5
"""Rows kept above the ticket the scan found, so the agent sees where it sits."""

Direction = Literal["up", "down"]


@dataclass(frozen=True, slots=True)
class WindowRows:
    """Rows of the inbox and where the first of them sits in the whole (filtered) list."""

    rows: tuple[InboxRow, ...]
    offset: int
    """Position of the first row in the whole list."""
    total: int | None = None
    """Rows in the whole list, when this read counted them."""
    focus: str | None = None
    """The ticket the cursor should go to (the one an attention scan found)."""


def needs_attention(row: InboxRow, low_confidence: float) -> bool:
    """An unlabelled ticket that a person should look at: failed, unrouted, unsure or disputed."""
    if row.label is not None:
        return False
    return (
        row.error_class is not None
        or row.predicted_label is None
        or row.disagreement
        or (row.confidence is not None and row.confidence < low_confidence)
    )


def row_with_decision(row: InboxRow, decision: Decision) -> InboxRow:
    """The row as the store will show it once `decision` is its latest, so a routed ticket is
    redrawn at once instead of after the next reload."""
    return row.model_copy(
        update={
            "predicted_label": decision.label,
            "confidence": decision.confidence,
            "backend": decision.backend,
            "total_ms": decision.total_ms,
            "cost_usd": decision.cost_usd,
            "error_class": decision.error_class,
        }
    )


def reload_window(
    store: Store, flt: InboxFilter, window: tuple[InboxRow, ...], offset: int
) -> WindowRows:
    """The same stretch of the list read again (the top of it for an empty window or offset 0),
    at least two pages, with a fresh count: rows routed, labelled or imported since show."""
    total = store.inbox_count(flt)
    after: Cursor | None = None
    if window and offset > 0:
        first = window[0]  # a cursor just above the first row, so the read includes it
        if flt == "low_confidence":
            after = Cursor(seq=first.seq - 1, confidence=first.confidence)
        else:
            after = Cursor(seq=first.seq + 1)
    else:
        offset = 0
    rows = store.inbox_page(flt, after=after, limit=max(len(window), PAGE * 2))
    return WindowRows(tuple(rows), offset, total)


def extend_window(
    store: Store,
    flt: InboxFilter,
    window: tuple[InboxRow, ...],
    offset: int,
    direction: Direction,
) -> WindowRows:
    """The window with one more page at its `direction` edge, trimmed to `WINDOW` rows at
    the other edge. `window` must not be empty: its edge row is the keyset cursor."""
    if direction == "down":
        page = store.inbox_page(flt, after=store.cursor_of(window[-1]), limit=PAGE)
        rows = (*window, *page)
        dropped = max(0, len(rows) - WINDOW)
        return WindowRows(rows[dropped:], offset + dropped)
    page = store.inbox_page(flt, before=store.cursor_of(window[0]), limit=PAGE)
    return WindowRows((*page, *window)[:WINDOW], max(0, offset - len(page)))


def find_attention(
    store: Store,
    flt: InboxFilter,
    window: tuple[InboxRow, ...],
    offset: int,
    low_confidence: float,
) -> WindowRows | None:
    """A new window around the first ticket below `window` that needs attention, or None when
    `SCAN_PAGES` pages hold none. `window` must not be empty."""
    last = window[-1]
    position = offset + len(window)
    for _ in range(SCAN_PAGES):
        page = store.inbox_page(flt, after=store.cursor_of(last), limit=PAGE)
        if not page:
            break
        for index, row in enumerate(page):
            if needs_attention(row, low_confidence):
                start = max(0, index - SCAN_CONTEXT)
                rows = page[start:]
                rows += store.inbox_page(flt, after=store.cursor_of(page[-1]), limit=PAGE)
                return WindowRows(tuple(rows), position + start, focus=row.ticket_id)
        position += len(page)
        last = page[-1]
    return None


__all__ = [
    "PAGE",
    "SCAN_PAGES",
    "WINDOW",
    "Direction",
    "WindowRows",
    "extend_window",
    "find_attention",
    "needs_attention",
    "reload_window",
    "row_with_decision",
]
