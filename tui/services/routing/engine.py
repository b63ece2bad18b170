"""The routing engine's own thread and event loop, so routing never holds the UI's loop.

With a hundred tickets or more in flight, replies come back in bursts (a batch sent at once is
answered at once): each is parsed, priced and handed on, and while the UI's loop did that a
key press waited behind the whole burst (p95 845 ms with 128 in flight). Here every coroutine
that touches the router's backends runs on one loop of its own, in a daemon thread; the
caller awaits the result from its own loop, and cancelling the caller cancels the work.

One loop for all of it matters: a backend's HTTP session and the router's concurrency
semaphores belong to the loop that first used them, so runs, compare, health checks and the
shadows all go through `call`. Callbacks a coroutine is given (`on_decision`, `on_wait`) run
on the engine's thread: they may only hand data on thread-safely (Textual's `post_message`
and `notify`). Textual-free, like the rest of `tui.services`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from tui.core.models import Decision
from tui.services.routing.router import Router

T = TypeVar("T")
PlanT = TypeVar("PlanT", contravariant=True)
OutcomeT = TypeVar("OutcomeT", covariant=True)


class RoutesPlans(Protocol[PlanT, OutcomeT]):
    """What `route` needs of `tui.services.runs.RunService` (named by shape: that module
    imports this package, so naming it here would be an import cycle)."""

    def route(
        self, plan: PlanT, *, on_decision: Callable[[Decision], None] | None = None
    ) -> Coroutine[Any, Any, OutcomeT]: ...


CLOSE_TIMEOUT_S = 10.0
"""How long `aclose` waits for cancelled runs to store what they decided."""
SWITCH_INTERVAL_S = 0.0005
"""The interpreter's thread switch interval while the engine runs (Python's default is 5 ms).
A thread that waits for I/O gives the GIL up, and with the engine busy it waited a whole
interval to get it back: the UI's loop did that at every turn (a convoy), which cost more
than the thread saved. At 0.5 ms the UI gets the GIL back almost at once."""


class RoutingEngine:
    """Runs the router's coroutines on a loop in a thread of its own (started when first
    needed, so a session that never routes starts no thread)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """The thread has been started and not closed."""
        return self._loop is not None

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(
                    target=serve, name="triagedesk-routing", daemon=True
                )
                sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the engine's loop and return (or raise) what it did.

        Cancelling the task that awaits this cancels `coro` there; its cleanup (a run stores
        what it decided and releases its claims) goes on on the engine's loop.
        """
        future = asyncio.run_coroutine_threadsafe(coro, self._started())
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise

    async def warm(self) -> None:
        """Nothing to prepare: the thread starts with the first call, in no time."""

    async def route(
        self,
        service: RoutesPlans[PlanT, OutcomeT],
        plan: PlanT,
        *,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> OutcomeT:
        """Route a planned run on the engine's loop (`RoutingWorker.route` does it in a
        process): `on_decision` is called on the engine's thread, so it may only hand data
        on thread-safely."""
        return await self.call(service.route(plan, on_decision=on_decision))

    @property
    def in_flight(self) -> int:
        """Tickets in flight now (the router counts them)."""
        return self.router.in_flight

    def concurrency_limit(self, name: str) -> tuple[int, int] | None:
        """(calls allowed now, `max_concurrency`) of a backend the router has called."""
        return self.router.concurrency_limit(name)

    async def aclose(self) -> None:
        """Cancel what still runs, let it store what it decided, close the router's backends
        and stop the thread. The router can be used again afterwards (a new thread starts)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            await self.router.aclose()
            return
        future = asyncio.run_coroutine_threadsafe(_shut_down(self.router), loop)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.wrap_future(future), CLOSE_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, CLOSE_TIMEOUT_S)
        if not thread.is_alive():
            loop.close()


async def _shut_down(router: Router) -> None:
    """On the engine's loop: cancel every other task, wait for them, close the backends."""
    me = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not me]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    await router.aclose()


__all__ = ["CLOSE_TIMEOUT_S", "SWITCH_INTERVAL_S", "RoutesPlans", "RoutingEngine"]
