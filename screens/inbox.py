"""The inbox: the screen a support agent keeps open all day.

A windowed ticket table over the store, the selected ticket in detail, and a live status
bar. Every store call and every backend call runs in a worker; handlers only update widgets.
"""

from __future__ import annotations

import asyncio
import getpass
import uuid
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer

from screens.backend_picker import BackendPickerModal
from screens.commands import FILTER_TITLES, INBOX_COMMANDS, bindings
from screens.compare import CompareModal
from screens.filter_picker import FilterPickerModal
from screens.labeling import LabelingActions
from screens.messages import (
    BackendSwapped,
    InboxPageLoaded,
    SpecialistRetrained,
    StatsLoaded,
    StoreChanged,
    TicketDetailLoaded,
    TicketsImported,
)
from screens.routing_actions import RoutingActions
from screens.status_tracker import StatusTracker
from screens.widgets.live_feed import LiveFeed
from screens.widgets.status_bar import AutoRouteToggle, StatusBar
from screens.widgets.ticket_detail import TicketDetail
from screens.widgets.ticket_table import TicketTable, needs_attention
from tui.core.config import Settings
from tui.core.learning.training import retrain
from tui.core.models import InboxRow
from tui.core.store import Cursor, InboxFilter, Store
from tui.services.routing import Router

PAGE = 100
"""Rows fetched per keyset page."""
WINDOW = 300
"""Most rows the table holds at once."""


def agent_name() -> str:
    """Who labels: the login name, so label events say which agent decided."""
    try:
        return getpass.getuser()
    except Exception:
        return "agent"


class InboxScreen(LabelingActions, RoutingActions, Screen[None]):
    """Ticket table, detail pane and status bar; owns routing, labeling and live refresh."""

    BINDINGS = bindings(INBOX_COMMANDS)

    inbox_filter: reactive[InboxFilter] = reactive("all", init=False)
    """Which tickets the table lists."""

    def __init__(
        self, store: Store, router: Router, settings: Settings, *, watch: Path | None = None
    ) -> None:
        super().__init__()
        self.store = store
        self.router = router
        self.settings = settings
        self.watch_dir = watch
        self.agent = agent_name()
        self.run_prefix = f"tui-{uuid.uuid4().hex[:8]}-"
        """Every run this session starts has an id with this prefix."""
        self.tracker = StatusTracker(settings.routing.daily_volume)
        self._request = 0
        self.batch_running = False

    @property
    def backend_names(self) -> tuple[str, ...]:
        return tuple(self.settings.backends)

    @property
    def table(self) -> TicketTable:
        return self.query_one(TicketTable)

    def compose(self) -> ComposeResult:
        yield TicketTable(low_confidence=self.settings.routing.low_confidence, id="tickets")
        yield TicketDetail(self.settings.routing.reference_backend, id="detail")
        yield StatusBar(id="status")
        yield Footer(compact=True)
        feed = LiveFeed(self.store, watch=self.watch_dir)
        feed.own_run_prefix = self.run_prefix
        yield feed

    def on_mount(self) -> None:
        self.table.border_title = "Inbox"
        self.query_one(TicketDetail).clear()
        self.load_window(reset=True)
        self.load_stats()
        self.set_interval(0.5, self.refresh_status)
        self.watch(self.app, "auto_route", self._auto_route_changed)
        self.watch(self.app, "active_backend", lambda _name: self.refresh_status())

    def new_run_id(self) -> str:
        return f"{self.run_prefix}{uuid.uuid4().hex[:8]}"

    def refresh_status(self) -> None:
        bar = self.query_one(StatusBar)
        bar.figures = self.tracker.figures(self.router.active, self.router.in_flight)

    def _auto_route_changed(self, on: bool) -> None:
        self.query_one(StatusBar).auto_route = on
        if on:
            self.action_route_unrouted(quiet=True)

    # Loading ------------------------------------------------------------------------------

    def watch_inbox_filter(self, flt: InboxFilter) -> None:
        self.load_window(reset=True)

    def load_window(self, *, reset: bool = False) -> None:
        """Reload the rows around the cursor (or the top of the list) from the store."""
        self._request += 1
        table = self.table
        current = table.current
        self._load_window(
            self._request,
            self.inbox_filter,
            () if reset else table.window_rows,
            0 if reset else table.window_offset,
            None if reset or current is None else current.ticket_id,
            0 if reset else table.cursor_row,
        )

    @work(thread=True, exclusive=True, group="inbox", exit_on_error=False)
    def _load_window(
        self,
        request: int,
        flt: InboxFilter,
        window: tuple[InboxRow, ...],
        offset: int,
        keep: str | None,
        cursor_index: int,
    ) -> None:
        total = self.store.inbox_count(flt)
        after: Cursor | None = None
        if window and offset > 0:
            first = window[0]
            if flt == "low_confidence":
                after = Cursor(seq=first.seq - 1, confidence=first.confidence)
            else:
                after = Cursor(seq=first.seq + 1)
        else:
            offset = 0
        rows = self.store.inbox_page(flt, after=after, limit=max(len(window), PAGE * 2))
        self.post_message(InboxPageLoaded(request, tuple(rows), offset, total, keep, cursor_index))

    @on(TicketTable.EdgeReached)
    def fetch_page(self, event: TicketTable.EdgeReached) -> None:
        self._request += 1
        table = self.table
        current = table.current
        self._fetch_page(
            self._request,
            self.inbox_filter,
            table.window_rows,
            table.window_offset,
            table.total_rows,
            event.direction,
            current.ticket_id if current else None,
        )

    @work(thread=True, exclusive=True, group="inbox", exit_on_error=False)
    def _fetch_page(
        self,
        request: int,
        flt: InboxFilter,
        window: tuple[InboxRow, ...],
        offset: int,
        total: int,
        direction: str,
        keep: str | None,
    ) -> None:
        if direction == "down":
            page = self.store.inbox_page(flt, after=Store.cursor_of(window[-1]), limit=PAGE)
            rows = (*window, *page)
            dropped = max(0, len(rows) - WINDOW)
            rows, offset = rows[dropped:], offset + dropped
        else:
            page = self.store.inbox_page(flt, before=Store.cursor_of(window[0]), limit=PAGE)
            rows = (*page, *window)[:WINDOW]
            offset = max(0, offset - len(page))
        self.post_message(InboxPageLoaded(request, tuple(rows), offset, total, keep))

    @on(InboxPageLoaded)
    def show_page(self, message: InboxPageLoaded) -> None:
        if message.request != self._request:
            self.table.edge_done()
            return
        self.table.show_window(
            message.rows,
            offset=message.offset,
            total=message.total,
            keep_ticket=message.keep_ticket,
            cursor_index=message.cursor_index,
        )
        self._update_title()

    def _update_title(self) -> None:
        table = self.table
        where = f"{table.position + 1:,} of {table.total_rows:,}" if table.total_rows else "empty"
        table.border_title = f"Inbox · {FILTER_TITLES[self.inbox_filter]}"
        table.border_subtitle = where

    @on(TicketTable.TicketHighlighted)
    def ticket_highlighted(self, event: TicketTable.TicketHighlighted) -> None:
        self._update_title()
        if event.row is None:
            self.query_one(TicketDetail).clear()
        else:
            self.load_detail(event.row.ticket_id)

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def load_detail(self, ticket_id: str) -> None:
        ticket = self.store.get_ticket(ticket_id)
        if ticket is None:
            return
        decisions = tuple(self.store.decisions_for(ticket_id))
        history = tuple(self.store.label_history(ticket_id))
        self.post_message(TicketDetailLoaded(ticket, decisions, history))

    @on(TicketDetailLoaded)
    def show_detail(self, message: TicketDetailLoaded) -> None:
        current = self.table.current
        if current is not None and current.ticket_id == message.ticket.id:
            self.query_one(TicketDetail).show(message.ticket, message.decisions, message.history)

    @work(thread=True, exclusive=True, group="stats", exit_on_error=False)
    def load_stats(self) -> None:
        stats = tuple(self.store.backend_stats(daily_volume=self.settings.routing.daily_volume))
        total = sum(s.cost_usd for s in stats)
        self.post_message(StatsLoaded(stats, total, sum(s.n for s in stats)))

    @on(StatsLoaded)
    def stats_loaded(self, message: StatsLoaded) -> None:
        self.tracker.load_baseline(message.stats, message.total_cost)
        self.refresh_status()

    # Live updates -------------------------------------------------------------------------

    @on(StoreChanged)
    def store_changed(self, message: StoreChanged) -> None:
        self.tracker.add(message.decisions)
        self.load_window()
        if message.new_tickets > 0 and self.app_auto_route:
            self.action_route_unrouted(quiet=True)

    @property
    def app_auto_route(self) -> bool:
        return bool(getattr(self.app, "auto_route", False))

    @on(TicketsImported)
    def tickets_imported(self, message: TicketsImported) -> None:
        if message.error:
            self.notify(f"{message.path}: {message.error}", severity="error", markup=False)
        else:
            self.notify(f"{message.path}: imported {message.inserted} tickets", markup=False)

    @on(AutoRouteToggle.Toggled)
    async def auto_route_clicked(self) -> None:
        await self.action_toggle_auto_route()

    @on(BackendSwapped)
    def backend_swapped(self) -> None:
        self.refresh_status()

    @on(SpecialistRetrained)
    def specialist_retrained(self, message: SpecialistRetrained) -> None:
        self.notify(message.detail, title="Specialist retrained")

    # Other screens -----------------------------------------------------------------------

    def action_pick_backend(self) -> None:
        def picked(name: str | None) -> None:
            if name is not None:
                self.action_use_backend(name)

        self.app.push_screen(BackendPickerModal(self.settings, self.router, self.store), picked)

    def action_compare(self) -> None:
        row = self.table.current
        if row is not None:
            self.open_compare(row.ticket_id)

    @work(group="store", exit_on_error=False)
    async def open_compare(self, ticket_id: str) -> None:
        ticket = await asyncio.to_thread(self.store.get_ticket, ticket_id)
        if ticket is None:
            return
        modal = CompareModal(ticket, self.router, self.store, self.new_run_id)
        if await self.app.push_screen_wait(modal):
            self.load_window()
            self.load_stats()

    def action_pick_filter(self) -> None:
        def picked(flt: InboxFilter | None) -> None:
            if flt is not None:
                self.action_set_filter(flt)

        self.app.push_screen(FilterPickerModal(self.store, self.inbox_filter), picked)

    def action_show_stats(self) -> None:
        from screens.stats import StatsScreen  # plotting libraries load when first needed

        self.app.push_screen(StatsScreen(self.store, self.settings))

    async def action_toggle_auto_route(self) -> None:
        await self.app.run_action("app.toggle_auto_route")

    def action_retrain_specialist(self) -> None:
        self.notify("Retraining the specialist on the agents' labels…")
        self.retrain_specialist()

    @work(thread=True, exclusive=True, group="training", exit_on_error=False)
    def retrain_specialist(self) -> None:
        try:
            detail = retrain(self.settings, self.store)
        except Exception as exc:  # too few labels, one class only: say so, keep working
            self.notify(f"Retraining failed: {exc}", severity="error")
            return
        self.post_message(SpecialistRetrained(detail))

    def action_use_backend(self, name: str) -> None:
        swap = getattr(self.app, "swap_backend", None)
        if swap is not None:
            swap(name)

    def action_set_filter(self, flt: InboxFilter) -> None:
        if flt == self.inbox_filter:
            self.load_window(reset=True)
        self.inbox_filter = flt


__all__ = ["InboxScreen", "needs_attention"]
