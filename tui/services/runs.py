"""Route a selection of tickets: the one routing service of the command line and the screens.

A run is planned, then routed. Planning checks what can be checked before anything is written
(the backend, the ticket ids, the claim lease) and opens the run: a recorded run (the CLI's
`route`) resumes the unfinished run of the same backend and selection, an ad-hoc run (the
TUI's, with the caller's run id) has no row to resume. Routing claims and pages the selected
tickets, hands them to `Router.run` and marks a recorded run done once its selection is
exhausted. Both callers share the claims (a ticket another run holds is skipped and counted),
the per-decision callback, the progress protocol, stopping and cancellation, and shadow mode:
each stored decision's ticket is offered to the router's `[routing] shadow` backends, which
answer in the background without holding the run back.

Textual-free and print-free: what to show, and how, is the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from tui.core.claims import RunClaims, claim_lease_s
from tui.core.models import Decision, Ticket
from tui.core.store import Cursor
from tui.services.routing import Router, RunSummary, page_pending

if TYPE_CHECKING:
    from tui.core.store import Store

SelectionKind = Literal["ids", "unrouted", "all", "errors"]
FOLLOW_ACTIVE_MAX_CONCURRENCY = 1024
"""Most tickets in flight in a run that follows the active backend (the TUI's), whatever the
backends allow: each backend's own `max_concurrency` still caps its calls. 1,024 so that a
backend configured for 1,000 gets them (issue 17 measures the inbox with 1,000 in flight)."""


class RunProgress(Protocol):
    """Told how far a run is: the CLI's progress bar fits it as it is."""

    def start(self, total: int | None, description: str) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def stop(self) -> None: ...


class UnknownTickets(ValueError):
    """A selection by id names tickets the store does not hold; nothing was written."""

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(f"no ticket with id {missing[0]!r}")
        self.missing = tuple(missing)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which tickets a run routes.

    `unrouted`: tickets without any decision; `all`: every ticket without a decision in this
    run; `ids`: those tickets (without a decision in this run); `errors`: tickets whose latest
    decision failed. `limit` caps how many this session routes.
    """

    kind: SelectionKind = "unrouted"
    ids: tuple[str, ...] = ()
    limit: int | None = None

    def __post_init__(self) -> None:
        if (self.kind == "ids") != bool(self.ids):
            raise ValueError("ticket ids go with, and only with, a selection of kind 'ids'")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit {self.limit}: must be at least 1")

    @classmethod
    def of_ids(cls, ids: Sequence[str], *, limit: int | None = None) -> Selection:
        return cls("ids", tuple(ids), limit)

    @property
    def key(self) -> str:
        """The selection as the runs table names it: a run resumes the unfinished run of the
        same backend and key (`ids:T1,T2`, `unrouted`, `all`, `errors`)."""
        return "ids:" + ",".join(self.ids) if self.kind == "ids" else self.kind


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """A run ready to route."""

    run_id: str
    selection: Selection
    backend: str | None
    """The backend of every ticket; None follows `Router.active` at each dispatch (hot swap)."""
    recorded: bool
    """The run has a row in the runs table: resumable, and marked done once complete."""
    resumed: bool = False
    """It continues an unfinished run of the same backend and selection."""
    holders: dict[str, int] = field(default_factory=dict)
    """Claim owner -> tickets of this run it holds now: another process routing it too."""
    lease_s: float | None = None
    """The claim lease, checked when planning so a bad setting is refused before any write."""


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What routing a planned run did."""

    summary: RunSummary
    stopped: bool = False
    """`stop` was set: routing ended early; what was decided is stored, the rest left."""
    finished: bool = False
    """The recorded run was marked done (not while other runs hold some of its tickets)."""


class RunService:
    """Plans and routes runs over one store and one router (the caller closes the router)."""

    def __init__(self, store: Store, router: Router, *, lease_s: float | None = None) -> None:
        self.store = store
        self.router = router
        self.lease_s = lease_s
        """The claim lease; None reads `TRIAGEDESK_CLAIM_LEASE_S` (else the default)."""

    def plan(
        self, selection: Selection, *, backend: str | None = None, run_id: str | None = None
    ) -> PlannedRun:
        """Check the request and open its run: a recorded one when `run_id` is None (it needs
        a `backend`), else an ad-hoc run of that id. Blocking: call it in a worker thread.

        Raises:
            ConfigError: `backend` is not configured, or the claim lease setting is bad.
            UnknownTickets: `selection` names ids the store does not hold.
            ValueError: a recorded run without a backend.
        """
        if backend is not None:
            self.router.settings.backend(backend)
        elif run_id is None:
            raise ValueError("a recorded run routes one named backend")
        if selection.kind == "ids":
            missing = [i for i in selection.ids if self.store.get_ticket(i) is None]
            if missing:
                raise UnknownTickets(missing)
        lease_s = claim_lease_s() if self.lease_s is None else self.lease_s
        if run_id is not None:
            return PlannedRun(run_id, selection, backend, recorded=False, lease_s=lease_s)
        assert backend is not None
        run = self.store.open_run(backend, selection.key)
        holders = self.store.claim_holders(run.id) if run.resumed else {}
        return PlannedRun(
            run.id, selection, backend, True, run.resumed, dict(holders), lease_s=lease_s
        )

    def pending_count(self, plan: PlannedRun) -> int:
        """How many tickets the run has still to route (capped by its limit), for a progress
        bar. Blocking; counting the whole inbox costs a scan, so only ask when showing it."""
        selection, store = plan.selection, self.store
        if selection.kind == "ids":
            ids = selection.ids
            total = len(store.pending_in_run(plan.run_id, ids=ids, limit=len(ids)))
        elif selection.kind == "all":
            total = store.ticket_count() - store.decisions_in_run(plan.run_id)
        elif selection.kind == "errors":
            total = store.inbox_count("errors")
        else:
            total = store.count_unrouted()
        return total if selection.limit is None else min(total, selection.limit)

    def default_concurrency(self, backend: str | None) -> int:
        """A named backend's `max_concurrency`; for a run that follows the active backend, the
        most any configured backend accepts, so a hot swap mid-run can use the new one fully."""
        settings = self.router.settings
        if backend is not None:
            return settings.backend(backend).max_concurrency
        limits = [c.max_concurrency for c in settings.backends.values()]
        return max(1, min(FOLLOW_ACTIVE_MAX_CONCURRENCY, max(limits, default=1)))

    async def route(
        self,
        plan: PlannedRun,
        *,
        concurrency: int | None = None,
        on_decision: Callable[[Decision], None] | None = None,
        progress: RunProgress | None = None,
        description: str = "routing",
        stop: asyncio.Event | None = None,
    ) -> RunOutcome:
        """Claim, page and route the run's tickets; returns once the selection is exhausted,
        the limit reached, or `stop` set.

        Args:
            plan: From `plan`.
            concurrency: Tickets in flight; None is `default_concurrency`.
            on_decision: Told each decision once it is stored.
            progress: Started with `pending_count`, advanced per decision, stopped at the end.
            description: The progress bar's text.
            stop: Set it to end the run early: tickets in flight are abandoned (their claims
                released, a resumed run routes them), what was decided is stored and counted.

        Cancelling the task that awaits this does the same as `stop` and raises
        `CancelledError`. Either way a recorded run is left unfinished, to be resumed.
        """
        claims = RunClaims(self.store, plan.run_id, lease_s=plan.lease_s)
        tally = RunSummary(plan.run_id)
        started = time.perf_counter()
        shadows = self.router.shadows
        tickets = self._tickets(plan, claims)
        routing_now: dict[str, Ticket] = {}
        if shadows.names:  # each stored decision's ticket goes to the shadows (shadow mode)
            tickets = _remembered(tickets, routing_now)

        def stored(decision: Decision) -> None:
            tally.count(decision)
            ticket = routing_now.pop(decision.ticket_id, None)
            if ticket is not None:
                shadows.offer(ticket, decision)
            if progress is not None:
                progress.advance()
            if on_decision is not None:
                on_decision(decision)

        if progress is not None:
            progress.start(await asyncio.to_thread(self.pending_count, plan), description)
        try:
            routing = asyncio.ensure_future(
                self.router.run(
                    tickets,
                    run_id=plan.run_id,
                    backend=plan.backend,
                    concurrency=concurrency or self.default_concurrency(plan.backend),
                    on_decision=stored,
                    claims=claims,
                )
            )
            summary = await self._until_stopped(routing, stop)
        finally:
            if progress is not None:
                progress.stop()
        if summary is None:  # stopped: the router's own summary went with its task
            tally.skipped.update(claims.skipped)
            tally.elapsed_s = time.perf_counter() - started
            return RunOutcome(tally, stopped=True)
        limit = plan.selection.limit
        finished = False
        if plan.recorded and (limit is None or summary.routed < limit):
            finished = await asyncio.to_thread(self.store.finish_run, plan.run_id)
        return RunOutcome(summary, finished=finished)

    @staticmethod
    async def _until_stopped(
        routing: asyncio.Future[RunSummary], stop: asyncio.Event | None
    ) -> RunSummary | None:
        """The router's summary, or None when `stop` was set first (the routing cancelled,
        which stores what was decided and releases the claims before it ends)."""
        stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
        try:
            waiting: set[asyncio.Future[Any]] = {routing}
            if stopping is not None:
                waiting.add(stopping)
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if routing.done():
                return routing.result()
            routing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await routing
            return None
        finally:
            if stopping is not None:
                stopping.cancel()
            if not routing.done():  # our own task was cancelled: take the routing with it
                routing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await routing

    def _tickets(self, plan: PlannedRun, claims: RunClaims) -> AsyncIterator[Ticket]:
        """The selection's tickets, each claimed before it is handed out."""
        selection = plan.selection
        if selection.kind == "errors":
            return self._failed_tickets(claims, selection.limit)
        return page_pending(
            self.store,
            plan.run_id,
            ids=selection.ids if selection.kind == "ids" else None,
            unrouted_only=selection.kind == "unrouted",
            limit=selection.limit,
            claims=claims,
        )

    async def _failed_tickets(self, claims: RunClaims, limit: int | None) -> AsyncIterator[Ticket]:
        """Tickets whose latest decision failed, paged down the inbox's errors list."""
        after: Cursor | None = None
        given = 0
        while limit is None or given < limit:
            rows = await asyncio.to_thread(self.store.inbox_page, "errors", after=after)
            if not rows:
                return
            after = self.store.cursor_of(rows[-1])
            wanted = [r.ticket_id for r in rows]
            for ticket in await claims.take(wanted if limit is None else wanted[: limit - given]):
                given += 1
                yield ticket


async def _remembered(
    tickets: AsyncIterator[Ticket], seen: dict[str, Ticket]
) -> AsyncIterator[Ticket]:
    """The tickets, each kept in `seen` by id until its decision is stored: the shadows are
    handed the ticket beside the decision (a decision carries only the ticket's id)."""
    async for ticket in tickets:
        seen[ticket.id] = ticket
        yield ticket


__all__ = [
    "FOLLOW_ACTIVE_MAX_CONCURRENCY",
    "PlannedRun",
    "RunOutcome",
    "RunProgress",
    "RunService",
    "Selection",
    "SelectionKind",
    "UnknownTickets",
]
