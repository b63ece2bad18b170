"""Shadow mode: every live ticket the active backend decides is also offered to each
`[routing] shadow` backend, which answers in the background beside it.

The agent never sees a shadow's answer: it is stored as a shadow answer (`shadow_decisions`),
never as the ticket's decision. Shadows must never slow the active backend, so each has a
bounded queue and its own workers: a ticket offered while the queue is full is skipped for
that shadow and counted, never waited for. A shadow's fault (an error, a hang up to its
timeout, a backend that cannot even be built) becomes a stored shadow error; nothing of it
reaches the routing run. `aclose` cancels every worker and writes what was answered, so no
task outlives the run or the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tui.core.backend import Backend, BackendError, RouteResult
from tui.core.config import Settings
from tui.core.models import Decision, Taxonomy, Ticket
from tui.core.store import ShadowAnswer

if TYPE_CHECKING:
    from tui.core.store import Store

SHADOW_QUEUE = 128
"""Tickets waiting per shadow at most; one more is skipped for that shadow, and counted."""
SHADOW_MAX_WORKERS = 32
"""Most calls in flight per shadow, whatever its `max_concurrency` allows."""
SHADOW_BATCH = 64
"""Tickets per call for shadows that route whole batches (the specialist)."""
SHADOW_FLUSH_S = 0.5
"""Longest a shadow answer waits in memory before it is written."""
SHADOW_DRAIN_S = 10.0
"""How long a headless `route` lets its shadows finish their queues once the run is done;
what is still queued then is skipped (and counted)."""


class ShadowHost(Protocol):
    """What the pool uses of its `Router` (named here, not imported: the router owns it)."""

    settings: Settings
    taxonomy: Taxonomy
    store: Store | None

    def backend(self, name: str) -> Backend: ...
    def backend_or_none(self, name: str) -> Backend | None: ...
    def decision(
        self,
        ticket: Ticket,
        backend_name: str,
        run_id: str,
        outcome: RouteResult | BaseException,
        wall_ms: float,
    ) -> Decision: ...


@dataclass(frozen=True, slots=True)
class _Job:
    ticket: Ticket
    decision: Decision
    """The live decision: its backend is the active one, its id what the answer shadows."""


@dataclass(slots=True)
class ShadowTally:
    """What one shadow did in this session (the stored totals are the store's)."""

    answered: int = 0
    errors: int = 0
    skipped: int = 0


class _Lane:
    """One shadow backend: its queue and its workers (started at the first offer)."""

    def __init__(self, name: str, workers: int) -> None:
        self.name = name
        self.size = workers
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max(SHADOW_QUEUE, 2 * workers))
        self.tasks: list[asyncio.Task[None]] = []
        self.tally = ShadowTally()


class ShadowPool:
    """The shadows of one router. Textual-free; every method runs on the event loop."""

    def __init__(self, router: ShadowHost, names: Sequence[str]) -> None:
        self.router = router
        self._lanes: dict[str, _Lane] = {}
        self._pending: list[ShadowAnswer] = []
        self._skipped: Counter[tuple[str, str]] = Counter()
        self._writer: asyncio.Task[None] | None = None
        self.last_write_error: str | None = None
        """Why the last write of shadow answers failed (they are dropped, routing goes on)."""
        self._set(names)

    @property
    def names(self) -> tuple[str, ...]:
        """The shadow backends, in config order."""
        return tuple(self._lanes)

    @property
    def running(self) -> int:
        """Shadow tasks alive now (workers and the writer): 0 once closed."""
        tasks = [t for lane in self._lanes.values() for t in lane.tasks]
        tasks += [self._writer] if self._writer is not None else []
        return sum(1 for task in tasks if not task.done())

    def tallies(self) -> dict[str, ShadowTally]:
        """Per shadow, what it answered, failed and skipped since this pool started."""
        return {name: lane.tally for name, lane in self._lanes.items()}

    def _set(self, names: Sequence[str]) -> None:
        for name in names:
            if name not in self._lanes:
                limit = self.router.settings.backend(name).max_concurrency
                self._lanes[name] = _Lane(name, max(1, min(limit, SHADOW_MAX_WORKERS)))

    async def set_names(self, names: Sequence[str]) -> None:
        """Shadow these backends from now on (after a promotion): lanes no longer named stop
        (their queued tickets are skipped and counted), new ones start at their first offer."""
        for name in [n for n in self._lanes if n not in names]:
            lane = self._lanes.pop(name)
            await self._stop_lane(lane)
        self._set(names)
        self._lanes = {name: self._lanes[name] for name in names}

    def offer(self, ticket: Ticket, decision: Decision) -> None:
        """Hand a ticket the active backend has just decided (and stored) to every shadow.
        Never waits: a full queue skips the ticket for that shadow. A shadow that is itself
        deciding (the TUI swapped it in) is not asked again."""
        if decision.id is None:
            return
        for lane in self._lanes.values():
            if lane.name == decision.backend:
                continue
            if not lane.tasks:
                lane.tasks = [asyncio.create_task(self._work(lane)) for _ in range(lane.size)]
            try:
                lane.queue.put_nowait(_Job(ticket, decision))
            except asyncio.QueueFull:
                self._skip(lane, _Job(ticket, decision))
        if self._writer is None and self._lanes:
            self._writer = asyncio.create_task(self._write_loop())

    async def drain(self, timeout_s: float = SHADOW_DRAIN_S) -> bool:
        """Wait until every shadow has answered what it has queued, at most `timeout_s`;
        True when they all finished."""
        joins = [lane.queue.join() for lane in self._lanes.values() if lane.tasks]
        if not joins:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*joins), timeout_s)
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Stop every shadow now: queued tickets are skipped (counted), calls in flight are
        cancelled, what was answered is written. Safe to call twice."""
        for lane in list(self._lanes.values()):
            await self._stop_lane(lane)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        await self._flush()

    async def _stop_lane(self, lane: _Lane) -> None:
        for task in lane.tasks:
            task.cancel()
        await asyncio.gather(*lane.tasks, return_exceptions=True)
        lane.tasks = []
        while not lane.queue.empty():
            job = lane.queue.get_nowait()
            lane.queue.task_done()
            self._skip(lane, job)

    def _skip(self, lane: _Lane, job: _Job) -> None:
        lane.tally.skipped += 1
        self._skipped[(lane.name, job.decision.backend)] += 1

    async def _work(self, lane: _Lane) -> None:
        router = self.router
        while True:
            group = [await lane.queue.get()]
            try:
                batching = hasattr(router.backend_or_none(lane.name), "route_batch")
                while batching and len(group) < SHADOW_BATCH and not lane.queue.empty():
                    group.append(lane.queue.get_nowait())
                outcomes = await self._call(lane.name, [job.ticket for job in group])
                for job, (outcome, wall) in zip(group, outcomes, strict=True):
                    answer = router.decision(
                        job.ticket, lane.name, job.decision.run_id, outcome, wall
                    )
                    assert job.decision.id is not None
                    self._pending.append(
                        ShadowAnswer(answer, job.decision.backend, job.decision.id)
                    )
                    lane.tally.answered += 1
                    lane.tally.errors += 0 if answer.ok else 1
            except asyncio.CancelledError:  # stopped mid-call: these count as skipped
                for job in group:
                    self._skip(lane, job)
                raise
            except Exception:  # a bug in pricing or checking: this group only, never the run
                lane.tally.errors += len(group)
            finally:
                for _ in group:
                    lane.queue.task_done()

    async def _call(
        self, name: str, tickets: Sequence[Ticket]
    ) -> list[tuple[RouteResult | BaseException, float]]:
        """Route on the shadow without the router's limits or in-flight count (those are the
        active backend's); never raises but for cancellation."""
        try:
            backend = self.router.backend(name)
        except Exception as exc:  # a shadow that cannot be built: an error answer each
            return [(BackendError(str(exc)), 0.0) for _ in tickets]
        taxonomy = self.router.taxonomy
        started = time.perf_counter()
        try:
            batch_route = getattr(backend, "route_batch", None)
            if batch_route is not None and len(tickets) > 1:
                outcomes: list[RouteResult | BaseException] = await batch_route(tickets, taxonomy)
                wall = (time.perf_counter() - started) * 1000 / len(tickets)
                return [(o, wall) for o in outcomes]
            result: RouteResult | BaseException = await backend.route(tickets[0], taxonomy)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            result = exc
        wall = (time.perf_counter() - started) * 1000
        return [(result, wall) for _ in tickets]

    async def _write_loop(self) -> None:
        while True:
            await asyncio.sleep(SHADOW_FLUSH_S)
            await self._flush()

    async def _flush(self) -> None:
        """Write the answers and skip counts gathered so far; a failed write drops them (and
        says why in `last_write_error`) rather than touch the routing."""
        store = self.router.store
        if store is None or not (self._pending or self._skipped):
            return
        answers, self._pending = self._pending, []
        skipped, self._skipped = dict(self._skipped), Counter()
        try:
            await asyncio.to_thread(store.record_shadow_answers, answers, skipped)
        except Exception as exc:
            self.last_write_error = f"{type(exc).__name__}: {exc}"
