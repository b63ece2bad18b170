"""Choose which tickets the inbox lists, with how many each filter holds right now."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from screens import format as fmt
from screens.commands import FILTER_TITLES
from screens.messages import FiltersCounted
from tui.core.store import INBOX_FILTERS, InboxFilter, Store


class FilterPickerModal(ModalScreen[InboxFilter | None]):
    """A list of the inbox filters; counts arrive from a thread worker."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="filter-picker.cancel")]

    def __init__(self, store: Store, current: InboxFilter) -> None:
        super().__init__()
        self.store = store
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="filter-dialog"):
            yield Label("Show", id="filter-title")
            yield OptionList(*(self._option(flt, None) for flt in INBOX_FILTERS), id="filters")

    def _option(self, flt: InboxFilter, n: int | None) -> Option:
        mark = "●" if flt == self.current else " "
        text = Content.assemble(f"{mark} {FILTER_TITLES[flt]:<22}", (fmt.count(n), "$text-muted"))
        return Option(text, id=flt)

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = INBOX_FILTERS.index(self.current)
        options.focus()
        self.count_filters()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def count_filters(self) -> None:
        counts = {flt: self.store.inbox_count(flt) for flt in INBOX_FILTERS}
        self.post_message(FiltersCounted(counts))

    @on(FiltersCounted)
    def show_counts(self, message: FiltersCounted) -> None:
        options = self.query_one(OptionList)
        for flt, n in message.counts.items():
            options.replace_option_prompt(flt, self._option(flt, n).prompt)

    @on(OptionList.OptionSelected, "#filters")
    def pick(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(INBOX_FILTERS[event.option_index])  # the options are in this order

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
