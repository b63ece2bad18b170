"""The inbox: the screen a support agent keeps open all day, with all of its actions.

A windowed ticket table over the store, the selected ticket in detail, and a live status
bar. The screen holds every action and draws every result; the store work runs in the thread
workers of `InboxData` and routing in the async workers of `RouteRunner` (two widgets with no
looks), which post messages back. The arithmetic lives below: `tui.core.inbox_window` pages
the table, `tui.services.runs` routes, `tui.services.status_figures` counts.

The modals (labels, backends, compare, filters, statistics) are imported inside the actions
that open them: none is on the first frame, and importing them up front also loaded what
only they use (compare, shadow comparison, promotion) before it; with the fine-tune panel's
job, 18 modules (`tests/unit/test_import_hygiene.py` keeps them out).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer

from screens.commands import FILTER_TITLES, INBOX_COMMANDS, bindings
from screens.messages import (
    BackendSwapped,
    InboxPageLoaded,
    LabelRecorded,
    RoutingFailed,
    RoutingFinished,
    SpecialistRetrained,
    StatsLoaded,
    StoreChanged,
    TicketClaimed,
    TicketDetailLoaded,
    TicketsImported,
    TicketsRouted,
)
from screens.widgets.finetune_panel import FinetunePanel
from screens.widgets.inbox_data import InboxData, PageQuery
from screens.widgets.live_feed import LiveFeed
from screens.widgets.route_runner import RouteRunner
from screens.widgets.status_bar import AutoRouteToggle, StatusBar
from screens.widgets.ticket_detail import TicketDetail
from screens.widgets.ticket_table import TicketTable
from tui.core.claims import agent_name as core_agent_name
from tui.core.config import Settings
from tui.core.inbox_window import row_with_decision
from tui.core.models import Decision
from tui.core.store import InboxFilter
from tui.services.desk import Desk
from tui.services.status_figures import StatusTracker

COMPARE_RUN = "compare-"
"""Run ids of compare's answers start with this."""


def agent_name(settings: Settings | None = None) -> str:
    """Who labels: `[team] agent`, else the login name, so label events (and leases) say
    which agent decided (`tui.core.claims.agent_name`)."""
    return core_agent_name(settings)


class InboxScreen(Screen[None]):
    """Ticket table, detail pane and status bar; routing, labeling and live refresh."""

    BINDINGS = bindings(INBOX_COMMANDS)

    inbox_filter: reactive[InboxFilter] = reactive("all", init=False)
    """Which tickets the table lists."""

    def __init__(self, desk: Desk, *, watch: Path | None = None) -> None:
        super().__init__()
        self.desk = desk
        self.watch_dir = watch
        self.agent = agent_name(desk.settings)
        self.run_prefix = f"tui-{uuid.uuid4().hex[:8]}-"
        """Every run this session starts has an id with this prefix."""
        self.tracker = StatusTracker(desk.settings.routing.daily_volume)
        self.data = InboxData(desk.store, desk.settings, agent=self.agent)
        self.runner = RouteRunner(desk.store, desk.router, desk.engine, run_prefix=self.run_prefix)
        self.finetune = FinetunePanel(desk, widget_id="finetune")
        self._request = 0
        """Identity of the latest page request: pages of older ones are dropped."""
        self._pending_rows: dict[str, Decision] = {}
        """Decisions to draw at the next `_flush_rows` (ticket -> its latest)."""
        self._open_ticket: str | None = None
        """The unlabelled ticket under the cursor that the desk last asked to lease."""
        self._stats_asked = False
        """The status bar's baseline is read once the first window is on screen: it loads
        the specialist's model code (numpy), which would otherwise compete with the first
        frame for the interpreter."""

    @property
    def backend_names(self) -> tuple[str, ...]:
        return tuple(self.desk.settings.backends)

    @property
    def batch_running(self) -> bool:
        """Every unrouted ticket is being routed (one such run at a time)."""
        return self.runner.batch_running

    @property
    def table(self) -> TicketTable:
        return self.query_one(TicketTable)

    def compose(self) -> ComposeResult:
        yield TicketTable(
            low_confidence=self.desk.settings.routing.low_confidence, agent=self.agent, id="tickets"
        )
        yield TicketDetail(self.desk.settings.routing.reference_backend, id="detail")
        yield self.finetune
        yield StatusBar(id="status")
        yield Footer(compact=True)
        yield LiveFeed(self.desk.store, watch=self.watch_dir, own_run_prefix=self.run_prefix)
        yield self.data
        yield self.runner

    def on_mount(self) -> None:
        self.table.border_title = "Inbox"
        self.query_one(TicketDetail).clear()
        self.load_window(reset=True)
        self.set_interval(0.5, self.refresh_status)
        self.set_interval(self.data.leases.lease_s / 4, self.data.renew_lease)
        self.watch(self.app, "auto_route", self._auto_route_changed)
        self.watch(self.app, "active_backend", lambda _name: self.refresh_status())

    def new_run_id(self) -> str:
        return self.runner.new_run_id()

    def new_compare_run_id(self) -> str:
        """A run id for compare's answers, outside this session's routing prefix: the runner
        draws its own decisions as they come, compare's reach the inbox through the live
        feed like any other writer's (their rows and the detail redraw at its next poll)."""
        return f"{COMPARE_RUN}{uuid.uuid4().hex[:12]}"

    def refresh_status(self) -> None:
        bar = self.query_one(StatusBar)
        active, engine = self.desk.router.active, self.desk.engine  # a worker counts its own
        limit = engine.concurrency_limit(active)
        bar.figures = self.tracker.figures(active, engine.in_flight, limit)

    def _auto_route_changed(self, on: bool) -> None:
        self.query_one(StatusBar).auto_route = on
        if on:
            self.action_route_unrouted(quiet=True)

    # Loading ------------------------------------------------------------------------------

    def watch_inbox_filter(self, flt: InboxFilter) -> None:
        self.load_window(reset=True)

    def _new_query(self, *, reset: bool = False) -> PageQuery:
        """Number a new request, starting from the table's window (the top of the list on
        `reset`)."""
        self._request += 1
        if reset:
            return PageQuery(self._request, self.inbox_filter, (), 0)
        table = self.table
        return PageQuery(self._request, self.inbox_filter, table.window_rows, table.window_offset)

    def load_window(self, *, reset: bool = False) -> None:
        """Reload the rows around the cursor (or the top of the list) from the store."""
        current = self.table.current
        keep = None if reset or current is None else current.ticket_id
        self.data.load_window(
            self._new_query(reset=reset), keep, 0 if reset else self.table.cursor_row
        )

    @on(TicketTable.EdgeReached)
    def fetch_page(self, event: TicketTable.EdgeReached) -> None:
        current = self.table.current
        keep = current.ticket_id if current else None
        self.data.fetch_page(self._new_query(), self.table.total_rows, event.direction, keep)

    @on(InboxPageLoaded)
    def show_page(self, message: InboxPageLoaded) -> None:
        if message.request != self._request:
            self.table.edge_done()
            return
        keep, current = message.keep_ticket, self.table.current
        if message.follow_cursor and current is not None:
            keep = current.ticket_id
        self.table.show_window(
            message.rows,
            offset=message.offset,
            total=message.total,
            keep_ticket=keep,
            cursor_index=message.cursor_index,
        )
        self._update_title()
        if not self._stats_asked:
            self._stats_asked = True
            self.call_after_refresh(self.data.load_stats)
            self.call_after_refresh(self._warm_routing)

    def _warm_routing(self) -> None:
        """Start the routing worker process once the first window is on screen, so the
        first `r` does not wait seconds for it (a thread engine has nothing to start)."""
        self.run_worker(self.desk.engine.warm(), group="routing-warm", exit_on_error=False)

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
            self.data.load_detail(event.row.ticket_id)
        # the open unlabelled ticket is this agent's; moving on (or to a labelled one) skips it.
        # A redraw highlights the same row again: no new lease, for it may land between "next"
        # claiming a ticket and the cursor moving there, and would give that ticket back.
        open_ticket = event.row.ticket_id if event.row and event.row.label is None else None
        if open_ticket != self._open_ticket:
            self._open_ticket = open_ticket
            self.data.lease_ticket(open_ticket)

    @on(TicketDetailLoaded)
    def show_detail(self, message: TicketDetailLoaded) -> None:
        current = self.table.current
        if current is not None and current.ticket_id == message.ticket.id:
            self.query_one(TicketDetail).show(
                message.ticket, message.decisions, message.history, message.link
            )

    @on(StatsLoaded)
    def stats_loaded(self, message: StatsLoaded) -> None:
        self.tracker.load_baseline(message.stats, message.total_cost)
        self.refresh_status()

    # Live updates -------------------------------------------------------------------------

    @on(StoreChanged)
    def store_changed(self, message: StoreChanged) -> None:
        """Another process changed the store. Its decisions redraw their rows in place (as
        our own do); the window is read again only when rows may come or go: new tickets,
        labels, or a filter that a decision can move a ticket into or out of."""
        # compare's answers are drawn, but they are no routing: the status bar leaves them out
        routed = tuple(d for d in message.decisions if not d.run_id.startswith(COMPARE_RUN))
        self.tracker.add(routed)
        self._show_decisions(message.decisions)
        if message.new_tickets or message.labels_changed or self.inbox_filter != "all":
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

    # Routing ------------------------------------------------------------------------------

    def action_route_ticket(self) -> None:
        row = self.table.current
        if row is None:
            self.action_route_unrouted()
            return
        self.runner.route_ticket(row.ticket_id)

    def action_route_unrouted(self, quiet: bool = False) -> None:
        if not self.runner.route_unrouted() and not quiet:
            self.notify("Already routing the unrouted tickets")

    def action_retry_errors(self) -> None:
        self.runner.retry_errors()

    @on(TicketsRouted)
    def tickets_routed(self, message: TicketsRouted) -> None:
        self.tracker.add(message.decisions)
        self._show_decisions(message.decisions)

    def _show_decisions(self, decisions: tuple[Decision, ...]) -> None:
        """Redraw the rows of the window these decisions changed (the latest decision of a
        ticket wins), and the detail pane when the ticket under the cursor is among them.
        The status bar follows at its own pace (`refresh_status`, twice a second).

        Coalesced: decisions wait in `_pending_rows` until the messages already queued are
        handled, so a burst (several runs' batches, the live feed's poll) is one redraw of
        the table, and a key queued behind it is not kept waiting for one redraw each."""
        if not decisions:
            return
        flush_due = not self._pending_rows
        for decision in decisions:
            self._pending_rows[decision.ticket_id] = decision
        if flush_due:
            self.call_later(self._flush_rows)

    def _flush_rows(self) -> None:
        latest, self._pending_rows = self._pending_rows, {}
        if not latest or not self.is_mounted:
            return
        table = self.table
        updates = []
        for ticket_id, decision in latest.items():
            row = table.row_for(ticket_id)
            if row is not None:
                updates.append(row_with_decision(row, decision))
        table.update_rows(updates)
        current = table.current
        if current is not None and current.ticket_id in latest:
            self.data.load_detail(current.ticket_id)

    @on(RoutingFinished)
    def routing_finished(self, message: RoutingFinished) -> None:
        summary = message.summary
        skipped = summary.skipped_line
        if skipped:
            self.notify(skipped[0].upper() + skipped[1:], severity="warning")
        if summary.routed > 1 or summary.errors:
            failed = f", {summary.errors} failed" if summary.errors else ""
            tickets = "ticket" if summary.routed == 1 else "tickets"
            self.notify(
                f"Routed {summary.routed} {tickets} in {summary.elapsed_s:.1f} s{failed}",
                severity="warning" if summary.errors else "information",
            )
        self.load_window()
        self.refresh_status()

    @on(RoutingFailed)
    def routing_failed(self, message: RoutingFailed) -> None:
        self.notify(message.error, severity="error")

    # Labeling -----------------------------------------------------------------------------

    def action_accept_label(self) -> None:
        row = self.table.current
        if row is None:
            return
        if row.predicted_label is None:
            self.notify("Nothing to accept: route the ticket (r) or pick a label (l)")
            return
        self.data.record_label(row.ticket_id, row.predicted_label, "accept", advance=True)

    def action_correct_label(self) -> None:
        row = self.table.current
        if row is None:
            return
        choices = tuple(
            (label.name, label.description) for label in self.desk.router.taxonomy.labels
        )

        def picked(label: str | None) -> None:
            if label is not None:
                self.data.record_label(row.ticket_id, label, "correct", advance=True)

        from screens.label_picker import LabelPickerModal  # loads when first opened

        current = row.label or row.predicted_label
        self.app.push_screen(LabelPickerModal(choices, current, row.subject), picked)

    def action_undo_label(self) -> None:
        self.data.undo_label()

    @on(LabelRecorded)
    def label_recorded(self, message: LabelRecorded) -> None:
        event = message.event
        table = self.table
        if message.row is not None:
            table.update_rows([message.row])
        if event.source == "undo":
            restored = event.label or "unlabelled"
            self.notify(f"Undone: {event.ticket_id} is {restored} again")
            table.move_to(event.ticket_id)
        elif message.advance:
            current = table.current
            if current is not None and current.ticket_id == event.ticket_id:
                table.action_cursor_down()
        current = table.current
        if current is not None and current.ticket_id == event.ticket_id:
            self.data.load_detail(event.ticket_id)

    def action_claim_next(self) -> None:
        self.data.claim_next(self._open_ticket)

    @on(TicketClaimed)
    def ticket_claimed(self, message: TicketClaimed) -> None:
        if not self.table.move_to(message.ticket_id):
            self.notify(f"Claimed {message.ticket_id} (filter or scroll to it)")

    async def on_unmount(self) -> None:
        """Quitting gives back the ticket this desk holds (a crash: the lease runs out)."""
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.data.leases.release)

    def action_next_attention(self) -> None:
        table = self.table
        index = table.next_attention_index()
        if index is not None:
            table.move_cursor(row=index)
        elif table.at_end:
            self.notify("Nothing below needs attention")
        else:
            self.data.scan_for_attention(self._new_query(), table.total_rows)

    # Other screens -----------------------------------------------------------------------

    def action_pick_backend(self) -> None:
        def picked(name: str | None) -> None:
            if name is not None:
                self.action_use_backend(name)

        from screens.backend_picker import BackendPickerModal  # loads when first opened

        self.app.push_screen(BackendPickerModal(self.desk), picked)

    def action_compare(self) -> None:
        row = self.table.current
        if row is not None:
            self.open_compare(row.ticket_id)

    @work(group="store", exit_on_error=False)
    async def open_compare(self, ticket_id: str) -> None:
        ticket = await asyncio.to_thread(self.desk.store.get_ticket, ticket_id)
        if ticket is None:
            return
        from screens.compare import CompareModal  # loads when first opened

        modal = CompareModal(ticket, self.desk, self.new_compare_run_id)
        if await self.app.push_screen_wait(modal):
            self.load_window()
            self.data.load_stats()

    def action_pick_filter(self) -> None:
        def picked(flt: InboxFilter | None) -> None:
            if flt is not None:
                self.action_set_filter(flt)

        from screens.filter_picker import FilterPickerModal  # loads when first opened

        self.app.push_screen(FilterPickerModal(self.desk.store, self.inbox_filter), picked)

    def action_show_stats(self) -> None:
        from screens.stats import StatsScreen  # plotting libraries load when first needed

        self.app.push_screen(StatsScreen(self.desk))

    async def action_toggle_auto_route(self) -> None:
        await self.app.run_action("app.toggle_auto_route")

    def action_retrain_specialist(self) -> None:
        self.notify("Retraining the specialist on the agents' labels…")
        self.data.retrain_specialist()

    def action_finetune(self) -> None:
        self.finetune.open()

    def action_cancel_finetune(self) -> None:
        if not self.finetune.cancel():
            self.notify("No fine-tune is running")

    def action_use_backend(self, name: str) -> None:
        swap = getattr(self.app, "swap_backend", None)
        if swap is not None:
            swap(name)

    def action_set_filter(self, flt: InboxFilter) -> None:
        if flt == self.inbox_filter:
            self.load_window(reset=True)
        self.inbox_filter = flt
