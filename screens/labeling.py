"""Labeling actions of the inbox: accept, correct, undo, and jump to the next ticket that
needs a person. Kept beside the screen so each module stays short; the store calls run in
thread workers and come back as `LabelRecorded`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work

from screens.label_picker import LabelPickerModal
from screens.messages import InboxPageLoaded, LabelRecorded
from screens.widgets.ticket_table import needs_attention
from tui.core.models import InboxRow, LabelSource
from tui.core.store import InboxFilter, Store, StoreError

if TYPE_CHECKING:
    from screens.inbox import InboxScreen

PAGE = 100
SCAN_PAGES = 50
"""Pages `next` looks through beyond the window before it gives up."""


class LabelingActions:
    """Mixed into InboxScreen: it provides `store`, `table`, `agent` and `router`."""

    def action_accept_label(self: InboxScreen) -> None:
        row = self.table.current
        if row is None:
            return
        if row.predicted_label is None:
            self.notify("Nothing to accept: route the ticket (r) or pick a label (l)")
            return
        self.record_label(row.ticket_id, row.predicted_label, "accept", advance=True)

    def action_correct_label(self: InboxScreen) -> None:
        row = self.table.current
        if row is None:
            return
        taxonomy = self.router.taxonomy
        choices = tuple((label.name, label.description) for label in taxonomy.labels)

        def picked(label: str | None) -> None:
            if label is not None:
                self.record_label(row.ticket_id, label, "correct", advance=True)

        current = row.label or row.predicted_label
        self.app.push_screen(LabelPickerModal(choices, current, row.subject), picked)

    @work(thread=True, group="labels", exit_on_error=False)
    def record_label(
        self: InboxScreen, ticket_id: str, label: str, source: LabelSource, advance: bool = False
    ) -> None:
        try:
            event = self.store.add_label(ticket_id, label, agent=self.agent, source=source)
        except StoreError as exc:
            self.notify(str(exc), severity="error")
            return
        self.post_message(LabelRecorded(event, self.store.inbox_row(ticket_id), advance))

    def action_undo_label(self: InboxScreen) -> None:
        self.undo_label()

    @work(thread=True, group="labels", exit_on_error=False)
    def undo_label(self: InboxScreen) -> None:
        event = self.store.undo_last_label(self.agent)
        if event is None:
            self.notify("Nothing to undo")
            return
        self.post_message(LabelRecorded(event, self.store.inbox_row(event.ticket_id)))

    def on_label_recorded(self: InboxScreen, message: LabelRecorded) -> None:
        event = message.event
        if message.row is not None:
            self.table.update_rows([message.row])
        if event.source == "undo":
            restored = event.label or "unlabelled"
            self.notify(f"Undone: {event.ticket_id} is {restored} again")
            self.table.move_to(event.ticket_id)
        elif message.advance:
            current = self.table.current
            if current is not None and current.ticket_id == event.ticket_id:
                self.table.action_cursor_down()
        current = self.table.current
        if current is not None and current.ticket_id == event.ticket_id:
            self.load_detail(event.ticket_id)

    def action_next_attention(self: InboxScreen) -> None:
        index = self.table.next_attention_index()
        if index is not None:
            self.table.move_cursor(row=index)
        elif self.table.at_end:
            self.notify("Nothing below needs attention")
        else:
            self._request += 1
            table = self.table
            self.scan_for_attention(
                self._request,
                self.inbox_filter,
                table.window_rows,
                table.window_offset,
                table.total_rows,
            )

    @work(thread=True, exclusive=True, group="inbox", exit_on_error=False)
    def scan_for_attention(
        self: InboxScreen,
        request: int,
        flt: InboxFilter,
        window: tuple[InboxRow, ...],
        offset: int,
        total: int,
    ) -> None:
        """Walk pages past the window to the next ticket a person should look at."""
        low = self.settings.routing.low_confidence
        last = window[-1]
        position = offset + len(window)
        for _ in range(SCAN_PAGES):
            page = self.store.inbox_page(flt, after=Store.cursor_of(last), limit=PAGE)
            if not page:
                break
            for index, row in enumerate(page):
                if needs_attention(row, low):
                    start = max(0, index - 5)
                    rows = page[start:]
                    rows += self.store.inbox_page(flt, after=Store.cursor_of(page[-1]), limit=PAGE)
                    loaded = InboxPageLoaded(
                        request, tuple(rows), position + start, total, row.ticket_id
                    )
                    self.post_message(loaded)
                    return
            position += len(page)
            last = page[-1]
        self.notify("Nothing needs attention in the next pages")
