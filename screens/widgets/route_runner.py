"""A widget with no looks that routes for the inbox: the selected ticket, every unrouted one,
every failed one, each as one run of `tui.services.runs.RunService`.

Runs follow the active backend (`backend=None`), so a hot swap applies from the next ticket
dispatched while in-flight ones finish on the old backend. Every run claims its tickets like a
headless `route`: a ticket another run is routing, in this process or another, is skipped and
said so, never routed twice at once. Decisions come back as `TicketsRouted` at most ten times
a second; the end of a run as `RoutingFinished` or `RoutingFailed`.

The runs themselves go to the desk's engine: a worker process (`RoutingWorker`, the
default) or the routing engine's own thread and loop (`RoutingEngine`); the worker here only
awaits them, so replies arriving by the hundred never hold the UI's loop. The callbacks
(decisions, retry waits) may run on the engine's thread and therefore only post.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable

from textual import work
from textual.notifications import SeverityLevel
from textual.widget import Widget

from backends.retry import RetryWait, WaitAnnouncer
from screens.messages import RoutingFailed, RoutingFinished, TicketsRouted
from tui.core.models import Decision
from tui.core.store import Store
from tui.services.routing import Router, RoutingEngine
from tui.services.routing.worker import RoutingWorker
from tui.services.runs import RunService, Selection, UnknownTickets

COALESCE_S = 0.1
"""Decisions are handed to the UI at most this often (10 Hz)."""

Notify = Callable[..., None]
"""`App.notify` or `Widget.notify`: a message and keyword options."""


def wait_notifier(notify: Notify) -> Callable[[str, RetryWait], None]:
    """A `Router.on_wait` that shows retry waits as notifications: what the run waits for and
    until when (a run rate-limited for an hour once sat at 0 with no word). One per backend
    and reason every few seconds (`WaitAnnouncer`), so 32 workers make one toast."""
    announcer = WaitAnnouncer()

    def show(backend: str, wait: RetryWait) -> None:
        line = announcer.line(backend, wait)
        if line is not None:
            severity: SeverityLevel = "warning"
            notify(
                line,
                title="Rate limited" if wait.giving_up else "Waiting to retry",
                severity=severity,
                timeout=max(5.0, min(wait.delay_s, 30.0)),
                markup=False,  # the backend name comes from the config: never markup
            )

    return show


class RouteRunner(Widget):
    """Starts routing runs in async workers and posts what they decided."""

    DEFAULT_CSS = "RouteRunner { display: none; }"

    def __init__(
        self,
        store: Store,
        router: Router,
        engine: RoutingEngine | RoutingWorker,
        *,
        run_prefix: str,
    ) -> None:
        super().__init__()
        self.router = router
        self.engine = engine
        self.service = RunService(store, router)
        self.run_prefix = run_prefix
        """Every run started here has an id with this prefix (the live feed skips them)."""
        self.batch_running = False
        """A run over every unrouted ticket is under way (one at a time)."""

    def new_run_id(self) -> str:
        return f"{self.run_prefix}{uuid.uuid4().hex[:8]}"

    def route_ticket(self, ticket_id: str) -> None:
        self._run(Selection.of_ids([ticket_id]))

    def route_unrouted(self) -> bool:
        """Start routing every unrouted ticket; False when such a run is already going."""
        if self.batch_running:
            return False
        self.batch_running = True
        self._run(Selection("unrouted"), batch=True)
        return True

    def retry_errors(self) -> None:
        self._run(Selection("errors"))

    def _collector(self) -> tuple[Callable[[Decision], None], Callable[[], None]]:
        """An on_decision callback that posts decisions in batches at most 10 times a second,
        and the flush that posts what is left (called from the engine's thread and, at the
        end of a run, from the UI's: a lock keeps every decision in exactly one batch)."""
        buffer: list[Decision] = []
        last = time.monotonic()
        lock = threading.Lock()

        def flush() -> None:
            nonlocal last
            with lock:
                batch = tuple(buffer)
                buffer.clear()
                last = time.monotonic()
            if batch:
                self.post_message(TicketsRouted(batch))

        def collect(decision: Decision) -> None:
            with lock:
                buffer.append(decision)
                due = time.monotonic() - last >= COALESCE_S
            if due:
                flush()

        return collect, flush

    @work(group="routing", exit_on_error=False)
    async def _run(self, selection: Selection, batch: bool = False) -> None:
        try:
            await self._route(selection)
        finally:
            if batch:
                self.batch_running = False

    async def _route(self, selection: Selection) -> None:
        if self.router.on_wait is None:
            self.router.on_wait = wait_notifier(self.notify)
        collect, flush = self._collector()
        try:
            plan = await asyncio.to_thread(self.service.plan, selection, run_id=self.new_run_id())
            outcome = await self.engine.route(self.service, plan, on_decision=collect)
        except UnknownTickets as exc:
            self.post_message(RoutingFailed(f"Ticket {exc.missing[0]} is gone"))
            return
        except Exception as exc:  # the store or the engine failed: report, keep the app up
            flush()
            self.post_message(RoutingFailed(f"Routing stopped: {type(exc).__name__}: {exc}"))
            return
        flush()  # an empty run still reports what it skipped
        self.post_message(RoutingFinished(outcome.summary))
