"""The inbox table: a window of rows over a list that may hold a million tickets.

Textual's DataTable measures every cell before its first paint, so it only ever holds one
window (a few pages) of `InboxRow`s. When the cursor nears an edge of the window the table
asks for the next or previous page; the screen fetches it by keyset in a thread worker and
hands the new window back through `show_window`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from screens import format as fmt
from tui.core.inbox_window import Direction, needs_attention
from tui.core.models import InboxRow

FIXED_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("id", "ID", 11),
    ("received", "Received", 11),
    ("subject", "Subject", 0),
    ("predicted", "Predicted", 15),
    ("confidence", "Conf", 4),
    ("backend", "Backend", 11),
    ("ms", "ms", 5),
    ("cost", "$ per 1k", 10),
    ("status", "Agent / status", 15),
)
"""(key, header, width); the subject takes what the others leave."""


class TicketTable(DataTable[Text], inherit_bindings=False):
    """A DataTable holding only a window of the inbox; `window_offset` is its first row's
    position. Its own bindings are navigation only, so enter reaches the screen (accept)."""

    BINDINGS = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "scroll_top", "Top", show=False),
        Binding("end", "scroll_bottom", "Bottom", show=False),
    ]

    EDGE_MARGIN = 20
    """Rows from a window edge at which the next page is requested."""

    @dataclass
    class EdgeReached(Message):
        """The cursor came near the end of the window and more rows exist beyond it."""

        table: TicketTable
        direction: Direction

        @property
        def control(self) -> TicketTable:
            return self.table

    @dataclass
    class TicketHighlighted(Message):
        """The cursor moved to another ticket (None when the window is empty)."""

        table: TicketTable
        row: InboxRow | None

        @property
        def control(self) -> TicketTable:
            return self.table

    def __init__(
        self,
        *,
        low_confidence: float = 0.6,
        agent: str | None = None,
        id: str | None = None,  # noqa: A002
    ) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.low_confidence = low_confidence
        self.agent = agent
        """This desk's agent: tickets other agents hold show their name (team mode)."""
        self.window_rows: tuple[InboxRow, ...] = ()
        """The rows held, in display order."""
        self.window_offset = 0
        """Position of the window's first row in the whole (filtered) inbox."""
        self.total_rows = 0
        """Rows in the whole (filtered) inbox."""
        self._index: dict[str, int] = {}
        self._edge_pending: Direction | None = None
        self._subject_width = 0

    @property
    def current(self) -> InboxRow | None:
        """The row under the cursor."""
        if not self.window_rows or not 0 <= self.cursor_row < len(self.window_rows):
            return None
        return self.window_rows[self.cursor_row]

    @property
    def position(self) -> int:
        """Cursor position in the whole inbox (0-based)."""
        return self.window_offset + max(self.cursor_row, 0)

    @property
    def at_end(self) -> bool:
        return self.window_offset + len(self.window_rows) >= self.total_rows

    def on_mount(self) -> None:
        self._build_columns()

    def on_resize(self) -> None:
        if self._subject_width != self._wanted_subject_width():
            self._rebuild(self.current.ticket_id if self.current else None, self.cursor_row)

    def _wanted_subject_width(self) -> int:
        fixed = sum(width for _, _, width in FIXED_COLUMNS)
        padding = 2 * self.cell_padding * len(FIXED_COLUMNS)
        return max(12, self.scrollable_content_region.width - fixed - padding - 1)

    def _build_columns(self) -> None:
        self._subject_width = self._wanted_subject_width()
        for key, header, width in FIXED_COLUMNS:
            self.add_column(header, key=key, width=width or self._subject_width)

    def _styles(self) -> dict[str, str]:
        theme = self.app.theme_variables
        return {
            "error": theme.get("error", ""),
            "warning": theme.get("warning", ""),
            "success": theme.get("success", ""),
            "muted": theme.get("text-muted", ""),
            "accent": theme.get("accent", ""),
        }

    def cells(self, row: InboxRow) -> list[Text]:
        """The row's cells; state (error, low confidence, labelled) shows as theme colours."""
        style = self._styles()
        if row.label is not None and row.label == row.predicted_label:
            how = {"accept": "accepted", "import": "imported"}.get(row.label_source or "", "agreed")
            status = Text(f"✓ {how}", style=style["success"])
        elif row.label is not None:
            status = Text(f"✎ {row.label}", style=style["accent"], overflow="ellipsis")
        elif row.held_by is not None and row.held_by != self.agent:
            status = Text(f"◆ {row.held_by}", style=style["muted"], overflow="ellipsis")
        elif row.error_class is not None:
            status = Text(f"⚠ {row.error_class}", style=style["error"], overflow="ellipsis")
        elif row.predicted_label is None:
            status = Text("· unrouted", style=style["muted"])
        elif row.disagreement:
            status = Text("≠ disagree", style=style["warning"])
        elif row.confidence is not None and row.confidence < self.low_confidence:
            status = Text("? low conf", style=style["warning"])
        else:
            status = Text("")
        low = row.confidence is not None and row.confidence < self.low_confidence
        predicted = row.predicted_label or ("error" if row.error_class else "")
        return [
            Text(row.ticket_id, overflow="ellipsis", no_wrap=True),
            Text(fmt.when(row.received_at), style=style["muted"]),
            Text(row.subject or row.text[:80], overflow="ellipsis", no_wrap=True),
            Text(predicted, style=style["error"] if row.error_class else "", overflow="ellipsis"),
            Text(fmt.confidence(row.confidence), style=style["warning"] if low else ""),
            Text(row.backend or "", overflow="ellipsis", no_wrap=True),
            Text(fmt.ms(row.total_ms) if row.backend else "", justify="right"),
            Text(fmt.usd_per_1k(row.cost_usd) if row.backend else "", justify="right"),
            status,
        ]

    def show_window(
        self,
        rows: Iterable[InboxRow],
        *,
        offset: int,
        total: int,
        keep_ticket: str | None = None,
        cursor_index: int | None = None,
    ) -> None:
        """Replace the window; the cursor stays on `keep_ticket` when it is still there."""
        old_screen_row = self.cursor_row - int(self.scroll_y)
        self.window_rows = tuple(rows)
        self.window_offset = offset
        self.total_rows = total
        self._edge_pending = None
        self._rebuild(keep_ticket, cursor_index, old_screen_row)

    def _rebuild(
        self,
        keep_ticket: str | None,
        cursor_index: int | None,
        screen_row: int | None = None,
        *,
        refit: bool = True,
    ) -> None:
        self.clear(columns=self._subject_width != self._wanted_subject_width())
        if not self.columns:
            self._build_columns()
        self._index = {row.ticket_id: i for i, row in enumerate(self.window_rows)}
        for row in self.window_rows:
            self.add_row(*self.cells(row), key=row.ticket_id)
        target = self._index.get(keep_ticket) if keep_ticket else None
        if target is None:
            target = cursor_index if cursor_index is not None else 0
        target = max(0, min(target, len(self.window_rows) - 1))
        if self.window_rows:
            self.move_cursor(row=target, animate=False, scroll=screen_row is None)
            if screen_row is not None:
                self.scroll_to(y=max(0, target - max(screen_row, 0)), animate=False)
        self.post_message(self.TicketHighlighted(self, self.current))
        if refit:
            self.call_after_refresh(self._refit)

    def _refit(self) -> None:
        """Rebuild once more if the rows just added brought a scrollbar (which takes two
        columns that the subject had): its width was measured before they were there."""
        if self._subject_width != self._wanted_subject_width():
            current = self.current
            self._rebuild(current.ticket_id if current else None, self.cursor_row, refit=False)

    def update_rows(self, rows: Iterable[InboxRow]) -> int:
        """Redraw rows of the window whose state changed; returns how many did."""
        changed = 0
        window = list(self.window_rows)
        for row in rows:
            index = self._index.get(row.ticket_id)
            if index is None or window[index] == row:
                continue
            window[index] = row
            for (key, _, _), cell in zip(FIXED_COLUMNS, self.cells(row), strict=True):
                self.update_cell(row.ticket_id, key, cell)
            changed += 1
        self.window_rows = tuple(window)
        return changed

    def row_for(self, ticket_id: str) -> InboxRow | None:
        index = self._index.get(ticket_id)
        return None if index is None else self.window_rows[index]

    def move_to(self, ticket_id: str) -> bool:
        index = self._index.get(ticket_id)
        if index is None:
            return False
        self.move_cursor(row=index, animate=False)
        return True

    def next_attention_index(self) -> int | None:
        """Index of the next row below the cursor that needs attention, within the window."""
        for index in range(self.cursor_row + 1, len(self.window_rows)):
            if needs_attention(self.window_rows[index], self.low_confidence):
                return index
        return None

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(self.TicketHighlighted(self, self.current))
        self._check_edges()

    def _check_edges(self) -> None:
        if self._edge_pending is not None or not self.window_rows:
            return
        if self.cursor_row >= len(self.window_rows) - self.EDGE_MARGIN and not self.at_end:
            self._edge_pending = "down"
        elif self.cursor_row < self.EDGE_MARGIN and self.window_offset > 0:
            self._edge_pending = "up"
        if self._edge_pending is not None:
            self.post_message(self.EdgeReached(self, self._edge_pending))

    def edge_done(self) -> None:
        """The page request ended without a new window (nothing more to fetch)."""
        self._edge_pending = None
