"""A concurrency limit per backend, learnt from its answers as TCP learns a congestion window.

A fixed `max_concurrency` is wrong both ways: too high for a server that degrades under load
(llama-cpp-python's own server interrupts the stream in progress whenever another request
arrives, so 8 at once give 1 answer and 7 empty streams), needlessly low for one that scales.
`AdaptiveLimit` starts small and doubles per round of successes (slow start), then grows by one
per round (additive increase); an overload signal (429, 502/503/504/529, a timeout, an
interrupted stream) halves it (multiplicative decrease) and latency rising well above its
long-run level trims it by a tenth, each at most once per round, like TCP's one cut per window
and Netflix's concurrency-limits. After a cut, growing past the level that overloaded is a
probe, tried after a number of successes that doubles each time that probe fails again, so a
server whose real limit is 1 pays for a failed probe once in hundreds of tickets, not every
other one. The limit never leaves [1, max_concurrency].

Attempts, not tickets, hold the permits: the retry loop gives its permit back while it sleeps
(`yielding`), so a ticket retried after an overload waits for room under the lowered limit
instead of hitting the server again at the old concurrency.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType

from tui.core.backend import (
    BackendError,
    RateLimited,
    ServerError,
    StreamInterrupted,
    Timeout,
)

OVERLOAD_STATUSES = frozenset({502, 503, 504, 529})
"""HTTP statuses that say "too much at once" (529: Anthropic's overloaded)."""
LATENCY_TOLERANCE = 2.0
"""Recent latency this many times its long-run level counts as overload."""
FIRST_PROBE_WAIT = 32
"""Successes after a cut before the first probe back at the level that overloaded."""
MAX_PROBE_WAIT = 512
LATENCY_CUT = 0.9
"""What a latency rise leaves of the limit (an explicit overload halves it)."""
"""Most successes between two probes past a level that overloaded before."""


def limit_key(backend: str) -> str:
    """The store's `meta` key under which a backend's learnt limit is kept."""
    return f"concurrency_limit.{backend}"


def read_snapshot(value: str | None) -> dict[str, int] | None:
    """A stored `AdaptiveLimit.snapshot`; None when absent or unreadable (it is a hint)."""
    if value is None:
        return None
    try:
        found = json.loads(value)
    except ValueError:
        return None
    if not isinstance(found, dict):
        return None
    snapshot = {k: v for k, v in found.items() if k in ("limit", "max", "cuts")}
    if not all(type(v) is int and v >= 0 for v in snapshot.values()):
        return None
    return snapshot if snapshot.get("limit", 0) >= 1 else None


def read_limit(value: str | None) -> int | None:
    """The learnt limit from its stored snapshot; None when absent or unreadable."""
    snapshot = read_snapshot(value)
    return None if snapshot is None else snapshot["limit"]


def is_overload(error: BaseException) -> bool:
    """Whether a failed attempt says the backend had too much to do at once."""
    if isinstance(error, RateLimited | Timeout | StreamInterrupted):
        return True
    return isinstance(error, ServerError) and error.status in OVERLOAD_STATUSES


@dataclass(frozen=True, slots=True)
class Permit:
    """One attempt's place under the limit; `epoch` tells a cut it already paid for."""

    epoch: int
    started: float


class AdaptiveLimit:
    """AIMD concurrency limit for one backend; waiters are served first come, first served."""

    def __init__(
        self,
        max_limit: int,
        *,
        initial: int = 1,
        adaptive: bool = True,
        learnt: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Args:
        max_limit: The backend's `max_concurrency`, never exceeded.
        initial: Where slow start begins.
        adaptive: False keeps the limit at `max_limit`.
        learnt: The limit an earlier run ended with: start there, past slow start, and treat
            one more as a probe (a server that took one at a time yesterday still does).
        monotonic: The clock latencies are measured with.
        """
        self.max_limit = max(1, max_limit)
        self.adaptive = adaptive
        self._limit = float(self.max_limit if not adaptive else min(max(1, initial), max_limit))
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._monotonic = monotonic
        self._epoch = 0
        self._slow_start = True
        self._ceiling: float | None = None
        """The limit at the last cut: growing past it is a probe."""
        self._probe_wait = 1
        self._since_cut = 0
        self._long_latency: float | None = None
        self._short_latency: float | None = None
        self.cuts = 0
        """Times the limit was cut (for `stats` and tests)."""
        if adaptive and learnt is not None:
            self._limit = float(min(max(1, learnt), self.max_limit))
            self._slow_start = False
            if self._limit < self.max_limit:
                self._ceiling = self._limit + 1
                self._probe_wait = FIRST_PROBE_WAIT

    @property
    def limit(self) -> int:
        """Attempts allowed in flight now."""
        return int(self._limit)

    def snapshot(self) -> dict[str, int]:
        """What a run leaves for the next one and for `stats` (`limit_key`)."""
        return {"limit": self.limit, "max": self.max_limit, "cuts": self.cuts}

    async def acquire(self) -> Permit:
        """Wait for room under the limit and take it."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return Permit(self._epoch, self._monotonic())
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # granted as it was cancelled: hand it on
                self._wake()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        return Permit(self._epoch, self._monotonic())

    def release(
        self, permit: Permit, error: BaseException | None = None, *, learn: bool = True
    ) -> None:
        """Give the permit back, learning from how its attempt ended (None: it succeeded)."""
        self.in_flight -= 1
        if self.adaptive and learn:
            if error is None:
                self._succeeded(permit)
            elif is_overload(error):
                self._overloaded(permit)
        self._wake()

    def slot(self) -> Slot:
        """`async with` a permit held for the block; the retry loop inside may lend it out
        (`yielding`).

        The block reports how it ended through `Holder.error`, since the router turns
        failures into results rather than letting them propagate.
        """
        return Slot(self)

    def _succeeded(self, permit: Permit) -> None:
        self._latency(self._monotonic() - permit.started, permit)
        if self.in_flight + 1 < self.limit // 2:
            return  # the limit is not what holds the work back: don't grow it
        self._since_cut += 1
        grown = min(self._limit + (1 if self._slow_start else 1 / self._limit), self.max_limit)
        ceiling = self._ceiling
        if ceiling is not None and self._limit >= ceiling and self._since_cut >= self._limit:
            self._ceiling, self._probe_wait = None, FIRST_PROBE_WAIT  # a round past it: it holds
        elif ceiling is not None and int(grown) >= int(ceiling) > int(self._limit):
            if self._since_cut < self._probe_wait:
                return
            self._since_cut = 0  # probe: one more at once than the level below the cut
            grown = float(int(ceiling))
        self._limit = grown

    def _overloaded(self, permit: Permit) -> None:
        if permit.epoch != self._epoch:
            return  # sent before the last cut, which already answered this burst
        probing = self._ceiling is not None and self._limit >= self._ceiling
        self._ceiling = float(int(self._limit))
        self._epoch += 1
        self._slow_start = False
        self._since_cut = 0
        self._probe_wait = (
            min(self._probe_wait * 2, MAX_PROBE_WAIT) if probing else FIRST_PROBE_WAIT
        )
        self._limit = max(1.0, float(int(self._limit / 2)))
        self.cuts += 1

    def _latency(self, seconds: float, permit: Permit) -> None:
        """Track latency; a sustained rise well above its long-run level is an overload."""
        if self._long_latency is None or self._short_latency is None:
            self._long_latency = self._short_latency = seconds
            return
        self._short_latency += 0.3 * (seconds - self._short_latency)
        self._long_latency += 0.02 * (seconds - self._long_latency)
        if self._limit > 1 and self._short_latency > LATENCY_TOLERANCE * self._long_latency:
            self._short_latency = self._long_latency
            self._slowed(permit)

    def _slowed(self, permit: Permit) -> None:
        """A gentle cut for latency alone: a stall of this process (a loaded machine, a long
        write) looks the same from here as a slow server, so it trims, it does not halve."""
        if permit.epoch != self._epoch:
            return
        self._epoch += 1
        self._slow_start = False
        self._limit = max(1.0, self._limit * LATENCY_CUT)
        self.cuts += 1

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)


class Holder:
    """The permit a dispatch holds, which the retry loop may give back while it sleeps."""

    def __init__(self, limit: AdaptiveLimit, permit: Permit) -> None:
        self.limit = limit
        self.permit: Permit | None = permit
        self.error: BaseException | None = None
        """How the dispatch failed, set by its caller; None when it succeeded."""


_current: ContextVar[Holder | None] = ContextVar("triagedesk_limit_holder", default=None)


class Slot:
    """`AdaptiveLimit.slot`: a class rather than a generator-based context manager, since
    every ticket enters one."""

    __slots__ = ("_holder", "_limit", "_token")

    def __init__(self, limit: AdaptiveLimit) -> None:
        self._limit = limit
        self._holder: Holder | None = None
        self._token: Token[Holder | None] | None = None

    async def __aenter__(self) -> Holder:
        holder = self._holder = Holder(self._limit, await self._limit.acquire())
        self._token = _current.set(holder)
        return holder

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        holder, token = self._holder, self._token
        assert holder is not None and token is not None
        _current.reset(token)
        if holder.permit is not None:
            # a cancelled or crashed dispatch says nothing about the backend
            self._limit.release(holder.permit, holder.error, learn=exc_type is None)
            holder.permit = None


@contextlib.asynccontextmanager
async def yielding(error: BackendError) -> AsyncIterator[None]:
    """Around a retry's sleep: give the permit back (learning from `error`), take one again.

    Outside `AdaptiveLimit.slot` (a backend used directly, in tests or benchmarks) it does
    nothing.
    """
    holder = _current.get()
    if holder is None or holder.permit is None:
        yield
        return
    holder.limit.release(holder.permit, error)
    holder.permit = None
    yield
    holder.permit = await holder.limit.acquire()
