"""A widget with no looks that does the inbox's store work in thread workers: windows of rows
(`tui.core.inbox_window`), the selected ticket's detail, the status bar's baseline, agent
labels, and retraining the specialist. Each worker posts what it found; the inbox screen's
handlers draw it, so no worker touches a widget.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from textual import work
from textual.widget import Widget
from textual.worker import get_current_worker

from screens.messages import (
    InboxPageLoaded,
    LabelRecorded,
    SpecialistRetrained,
    StatsLoaded,
    TicketClaimed,
    TicketDetailLoaded,
)
from tui.core.claims import AgentLeases
from tui.core.config import Settings
from tui.core.inbox_window import Direction, extend_window, find_attention, reload_window
from tui.core.learning.training import held_out_stats, retrain
from tui.core.models import InboxRow, LabelSource
from tui.core.store import InboxFilter, Store, StoreError


@dataclass(frozen=True, slots=True)
class PageQuery:
    """What every window worker starts from: the request's number, the filter and the window
    of rows the table shows now (empty, at offset 0, to start from the top)."""

    request: int
    """Numbers the request, so the screen can drop a page a newer request superseded."""
    flt: InboxFilter
    window: tuple[InboxRow, ...]
    offset: int


class InboxData(Widget):
    """The inbox's store reads and label writes. `request` numbers let the screen drop pages
    that a newer request (another filter, a further scroll) has superseded."""

    DEFAULT_CSS = "InboxData { display: none; }"

    def __init__(self, store: Store, settings: Settings, *, agent: str) -> None:
        super().__init__()
        self.store = store
        self.settings = settings
        self.agent = agent
        """Who labels: label events say which agent decided."""
        self.leases = AgentLeases(store, agent, lease_s=settings.team.lease_s)
        """The ticket this desk has open is the agent's (team mode: no one else gets it)."""

    @work(thread=True, exclusive=True, group="lease", exit_on_error=False)
    def lease_ticket(self, ticket_id: str | None) -> None:
        """Lease the ticket the agent opened (None: give back what this desk holds); say so
        when another agent holds it."""
        with self.leases.turn():
            # a newer lease request (another ticket, "next") started: its thread may be
            # waiting on this turn, and what it asks for is what the agent wants now
            if get_current_worker().is_cancelled:
                return
            if ticket_id is None:
                self.leases.release()
                return
            got = self.leases.open(ticket_id)
        if not got:
            holder = self.store.agent_leases().get(ticket_id)
            who = holder or "a routing run"
            self.notify(f"{ticket_id} is being worked on by {who}", severity="warning")

    @work(thread=True, exclusive=True, group="lease", exit_on_error=False)
    def claim_next(self, open_ticket: str | None) -> None:
        """Lease the newest unlabelled ticket nobody holds, and have the inbox move to it;
        with none free, the ticket open (whose lease this request superseded) stays leased."""
        with self.leases.turn():
            if get_current_worker().is_cancelled:
                return
            ticket_id = self.leases.next()
            if ticket_id is None and open_ticket is not None and open_ticket != self.leases.held:
                self.leases.open(open_ticket)
        if ticket_id is None:
            self.notify("No free unlabelled ticket: every one is labelled or held")
            return
        self.post_message(TicketClaimed(ticket_id))

    @work(thread=True, group="lease-renew", exit_on_error=False)
    def renew_lease(self) -> None:
        with contextlib.suppress(StoreError):
            self.leases.renew()

    @work(thread=True, exclusive=True, group="inbox", exit_on_error=False)
    def load_window(self, query: PageQuery, keep: str | None, cursor_index: int) -> None:
        """Reload the rows around `query`'s window (after a filter change or a label)."""
        found = reload_window(self.store, query.flt, query.window, query.offset)
        total = found.total or 0
        self.post_message(
            InboxPageLoaded(
                query.request,
                found.rows,
                found.offset,
                total,
                keep,
                cursor_index,
                follow_cursor=keep is not None,
            )
        )

    @work(thread=True, exclusive=True, group="inbox", exit_on_error=False)
    def fetch_page(
        self, query: PageQuery, total: int, direction: Direction, keep: str | None
    ) -> None:
        """Slide `query`'s window one page in `direction` (the cursor reached an edge)."""
        found = extend_window(self.store, query.flt, query.window, query.offset, direction)
        self.post_message(
            InboxPageLoaded(
                query.request,
                found.rows,
                found.offset,
                total,
                keep,
                follow_cursor=keep is not None,
            )
        )

    @work(thread=True, exclusive=True, group="inbox", exit_on_error=False)
    def scan_for_attention(self, query: PageQuery, total: int) -> None:
        """Walk pages past the window to the next ticket a person should look at."""
        low = self.settings.routing.low_confidence
        found = find_attention(self.store, query.flt, query.window, query.offset, low)
        if found is None:
            self.notify("Nothing needs attention in the next pages")
            return
        self.post_message(
            InboxPageLoaded(query.request, found.rows, found.offset, total, found.focus)
        )

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def load_detail(self, ticket_id: str) -> None:
        ticket = self.store.get_ticket(ticket_id)
        if ticket is None:
            return
        decisions = tuple(self.store.decisions_for(ticket_id))
        history = tuple(self.store.label_history(ticket_id))
        link = self.store.ticket_link(ticket_id)
        self.post_message(TicketDetailLoaded(ticket, decisions, history, link))

    @work(thread=True, exclusive=True, group="stats", exit_on_error=False)
    def load_stats(self) -> None:
        stats = tuple(held_out_stats(self.settings, self.store))
        total = sum(s.cost_usd for s in stats)
        self.post_message(StatsLoaded(stats, total, sum(s.n for s in stats)))

    @work(thread=True, group="labels", exit_on_error=False)
    def record_label(
        self, ticket_id: str, label: str, source: LabelSource, advance: bool = False
    ) -> None:
        try:
            event = self.store.add_label(
                ticket_id, label, agent=self.agent, source=source, desk=self.leases.owner
            )
        except StoreError as exc:
            self.notify(str(exc), severity="error")
            return
        self.post_message(LabelRecorded(event, self.store.inbox_row(ticket_id), advance))

    @work(thread=True, group="labels", exit_on_error=False)
    def undo_label(self) -> None:
        event = self.store.undo_last_label(self.agent)
        if event is None:
            self.notify("Nothing to undo")
            return
        self.post_message(LabelRecorded(event, self.store.inbox_row(event.ticket_id)))

    @work(thread=True, exclusive=True, group="training", exit_on_error=False)
    def retrain_specialist(self) -> None:
        """Retrain as `train --kind auto` would (minutes for the fewshot kind), off the
        event loop; its progress shows as a notification at most every 15 seconds."""
        shown = [0.0]

        def progress(line: str) -> None:
            now = time.monotonic()
            if now - shown[0] >= 15.0:
                shown[0] = now
                self.notify(line, title="Retraining the specialist")

        try:
            detail = retrain(self.settings, self.store, progress)
        except Exception as exc:  # too few labels, one class only: say so, keep working
            self.notify(f"Retraining failed: {exc}", severity="error")
            return
        self.post_message(SpecialistRetrained(detail))
