"""Routing actions of the inbox: the selected ticket, every unrouted one, every failed one.

Runs go through `Router.run` with `backend=None`, so a hot swap applies from the next ticket
dispatched while in-flight ones finish on the old backend. Decisions come back to the UI
in batches at most ten times a second. Every run claims its tickets (`RunClaims`), like a
headless `route`: a ticket another run is routing, in this process or another, is skipped and
said so, never routed twice at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from textual import work

from backends.retry import RetryWait, WaitAnnouncer
from screens.messages import RoutingFailed, RoutingFinished, TicketsRouted
from tui.core.models import Decision, InboxRow, Ticket
from tui.core.store import Cursor, Store
from tui.services.routing import Router, RunClaims, page_pending

if TYPE_CHECKING:
    from screens.inbox import InboxScreen

COALESCE_S = 0.1
"""Decisions are handed to the UI at most this often (10 Hz)."""
MAX_CONCURRENCY = 256
"""Upper bound on tickets in flight in one batch, whatever the backends allow."""


def wait_notifier(notify: Callable[..., None]) -> Callable[[str, RetryWait], None]:
    """A `Router.on_wait` that shows retry waits as notifications: what the run waits for and
    until when (a run rate-limited for an hour once sat at 0 with no word). One per backend
    and reason every few seconds (`WaitAnnouncer`), so 32 workers make one toast."""
    announcer = WaitAnnouncer()

    def show(backend: str, wait: RetryWait) -> None:
        line = announcer.line(backend, wait)
        if line is not None:
            notify(
                line,
                title="Rate limited" if wait.giving_up else "Waiting to retry",
                severity="warning",
                timeout=max(5.0, min(wait.delay_s, 30.0)),
                markup=False,  # the backend name comes from the config: never markup
            )

    return show


def batch_concurrency(router: Router) -> int:
    """Tickets in flight in a batch: the most any configured backend accepts (each backend's
    own semaphore still caps it), so a hot swap mid-run can use the new backend fully."""
    limits = [c.max_concurrency for c in router.settings.backends.values()]
    return max(1, min(MAX_CONCURRENCY, max(limits, default=1)))


class RoutingActions:
    """Mixed into InboxScreen, which provides `store`, `router`, `table` and `tracker`.

    Handlers use Textual's `on_<message>` names: `@on` only registers on message-pump classes.
    """

    def on_tickets_routed(self: InboxScreen, message: TicketsRouted) -> None:
        self.tracker.add(message.decisions)
        table = self.table
        updates = []
        for decision in message.decisions:
            row = table.row_for(decision.ticket_id)
            if row is not None:
                updates.append(row_with_decision(row, decision))
        table.update_rows(updates)
        current = table.current
        if current is not None and any(d.ticket_id == current.ticket_id for d in message.decisions):
            self.load_detail(current.ticket_id)
        self.refresh_status()

    def on_routing_finished(self: InboxScreen, message: RoutingFinished) -> None:
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

    def on_routing_failed(self: InboxScreen, message: RoutingFailed) -> None:
        self.notify(message.error, severity="error")

    def _collector(self: InboxScreen) -> tuple[Callable[[Decision], None], Callable[[], None]]:
        """An on_decision callback that posts decisions in batches at most 10 times a second."""
        buffer: list[Decision] = []
        last = time.monotonic()

        def flush() -> None:
            nonlocal last
            if buffer:
                self.post_message(TicketsRouted(tuple(buffer)))
                buffer.clear()
            last = time.monotonic()

        def collect(decision: Decision) -> None:
            buffer.append(decision)
            if time.monotonic() - last >= COALESCE_S:
                flush()

        return collect, flush

    async def _route(
        self: InboxScreen,
        tickets: AsyncIterator[Ticket] | list[Ticket],
        run_id: str,
        claims: RunClaims,
    ) -> None:
        collect, flush = self._collector()
        if self.router.on_wait is None:
            self.router.on_wait = wait_notifier(self.notify)
        try:
            summary = await self.router.run(
                tickets,
                run_id=run_id,
                backend=None,
                concurrency=batch_concurrency(self.router),
                on_decision=collect,
                claims=claims,
            )
        except Exception as exc:  # the store or the engine failed: report, keep the app up
            flush()
            self.post_message(RoutingFailed(f"Routing stopped: {type(exc).__name__}: {exc}"))
            return
        flush()
        self.post_message(RoutingFinished(summary))

    def action_route_ticket(self: InboxScreen) -> None:
        row = self.table.current
        if row is None:
            self.action_route_unrouted()
            return
        self.route_ticket(row.ticket_id)

    @work(group="routing", exit_on_error=False)
    async def route_ticket(self: InboxScreen, ticket_id: str) -> None:
        run_id = self.new_run_id()
        claims = RunClaims(self.store, run_id)
        try:
            taken = await claims.take([ticket_id])
        except Exception as exc:  # the store failed: report, keep the app up
            self.post_message(RoutingFailed(f"Routing stopped: {type(exc).__name__}: {exc}"))
            return
        if not taken and not claims.skipped:
            self.post_message(RoutingFailed(f"Ticket {ticket_id} is gone"))
            return
        await self._route(taken, run_id, claims)  # an empty run still reports the skip

    def action_route_unrouted(self: InboxScreen, quiet: bool = False) -> None:
        if self.batch_running:
            if not quiet:
                self.notify("Already routing the unrouted tickets")
            return
        self.batch_running = True
        self.route_unrouted()

    @work(group="routing", exit_on_error=False)
    async def route_unrouted(self: InboxScreen) -> None:
        try:
            run_id = self.new_run_id()
            claims = RunClaims(self.store, run_id)
            tickets = page_pending(self.store, run_id, unrouted_only=True, claims=claims)
            await self._route(tickets, run_id, claims)
        finally:
            self.batch_running = False

    def action_retry_errors(self: InboxScreen) -> None:
        self.retry_errors()

    @work(group="routing", exit_on_error=False)
    async def retry_errors(self: InboxScreen) -> None:
        run_id = self.new_run_id()
        claims = RunClaims(self.store, run_id)

        async def failed() -> AsyncIterator[Ticket]:
            after: Cursor | None = None
            while True:
                rows = await asyncio.to_thread(self.store.inbox_page, "errors", after=after)
                if not rows:
                    return
                after = Store.cursor_of(rows[-1])
                for ticket in await claims.take([r.ticket_id for r in rows]):
                    yield ticket

        await self._route(failed(), run_id, claims)


def row_with_decision(row: InboxRow, decision: Decision) -> InboxRow:
    """The row as the store will show it once `decision` is its latest."""
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
