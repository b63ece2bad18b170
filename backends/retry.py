"""Retries with exponential backoff and full jitter, honouring Retry-After, for every backend.

Waits are announced, never silent: before each sleep the loop tells the listener set with
`listening` (the Router sets one per dispatch; the CLI prints it, the TUI notifies) what it
waits for and until when. A Retry-After longer than `MAX_RETRY_AFTER_S` is not slept at
all: a run whose every request got `429 Retry-After: 3600` once showed a progress bar at 0
for hours. The ticket fails at once as `RateLimited`, saying how long the server asked for
and until when, so a later `route` can pick it up.

Whole-ticket bound: each attempt is bounded by the backend's `timeout_s`; between attempts
the loop waits at most `MAX_RETRY_AFTER_S` (Retry-After) or `MAX_DELAY_S` (backoff). A
ticket makes at most two rounds (the answer and one repair), each of `max_retries + 1`
attempts, so it is held at most
`2 * ((max_retries + 1) * timeout_s + max_retries * MAX_RETRY_AFTER_S)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from backends import limiter
from tui.core.backend import (
    BackendError,
    ConnectionFailed,
    RateLimited,
    ServerError,
    StreamInterrupted,
    Timeout,
)

T = TypeVar("T")

BASE_DELAY_S = 0.5
MAX_DELAY_S = 20.0
MAX_RETRY_AFTER_S = 60.0
"""Longest Retry-After that is waited for; a longer one fails the ticket at once."""


@dataclass(frozen=True, slots=True)
class RetryWait:
    """What the retry loop is about to do after a retryable failure."""

    error: BackendError
    delay_s: float
    """Seconds it waits before the next attempt (what the server asked, when giving up)."""
    retry: int
    """1-based number of the retry the wait leads to."""
    max_retries: int
    giving_up: bool = False
    """True when the server asked for a longer wait than `MAX_RETRY_AFTER_S`: no retry."""
    at: float = 0.0
    """`time.time()` when the wait starts."""

    @property
    def until(self) -> datetime | None:
        """When the wait ends, in UTC; None for a wait too long to be a date."""
        if not math.isfinite(self.delay_s) or self.delay_s > 10 * 365 * 86_400:
            return None
        return datetime.fromtimestamp(self.at, UTC) + timedelta(seconds=self.delay_s)


WaitListener = Callable[[RetryWait], None]
_listener: ContextVar[WaitListener | None] = ContextVar("triagedesk_retry_listener", default=None)


class listening:  # noqa: N801 - used like contextlib's lower-case context managers
    """Announce the waits of every retry loop run inside the block (this task and the tasks
    it starts) to `listener`; usable with `with` and `async with`. A listener that raises is
    ignored: a message must never fail a ticket."""

    def __init__(self, listener: WaitListener | None) -> None:
        self.listener = listener
        self._tokens: list[Token[WaitListener | None]] = []

    def __enter__(self) -> None:
        self._tokens.append(_listener.set(self.listener))

    def __exit__(self, *exc: object) -> None:
        _listener.reset(self._tokens.pop())

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


def _announce(wait: RetryWait) -> None:
    listener = _listener.get()
    if listener is not None:
        with contextlib.suppress(Exception):
            listener(wait)


def backoff_delay(attempt: int, error: BackendError, *, base: float = BASE_DELAY_S) -> float:
    """Seconds to wait before retry number `attempt` (0-based) after `error`."""
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return min(max(error.retry_after, 0.0), MAX_RETRY_AFTER_S)
    return random.uniform(0, min(MAX_DELAY_S, base * (2**attempt)))


def seconds(value: float) -> str:
    """A wait for people: `20 s`, `0.5 s`, `3600 s`."""
    if not math.isfinite(value):
        return "an unbounded time"
    if value >= 10_000_000:
        return f"{value:.3g} s"
    return f"{value:.0f} s" if value >= 10 else f"{value:.2g} s"


def clock(when: datetime | None, *, now: datetime | None = None) -> str:
    """`22:41:07 UTC` for a time within a day, else `2026-01-03 22:41 UTC`."""
    if when is None:
        return "an unknown time"
    ahead = when - (now or datetime.now(UTC))
    pattern = "%H:%M:%S UTC" if ahead < timedelta(days=1) else "%Y-%m-%d %H:%M UTC"
    return when.strftime(pattern)


def too_long(error: RateLimited) -> RateLimited:
    """The error that ends a ticket whose server asked for a wait over `MAX_RETRY_AFTER_S`."""
    assert error.retry_after is not None
    until = RetryWait(error, error.retry_after, 0, 0, at=time.time()).until
    failed = RateLimited(
        f"{error}; the server asks to wait {seconds(error.retry_after)}"
        f" (until {clock(until)}), longer than the {MAX_RETRY_AFTER_S:.0f} s waited for:"
        " not retried, route it again later",
        retry_after=error.retry_after,
    )
    failed.raw_output = error.raw_output
    return failed


def reason(error: BackendError) -> str:
    """What failed, in a few words: `rate limited (HTTP 429)`, `server error (HTTP 503)`."""
    if isinstance(error, RateLimited):
        return "rate limited (HTTP 429)"
    if isinstance(error, ServerError):
        return f"server error (HTTP {error.status})" if error.status else "server error"
    if isinstance(error, Timeout):
        return "no answer within the timeout"
    if isinstance(error, ConnectionFailed):
        return "connection failed"
    if isinstance(error, StreamInterrupted):
        return "stream interrupted"
    return error.error_class


def describe(backend: str, wait: RetryWait) -> str:
    """One line for people, e.g. `gpt-4o-mini: rate limited (HTTP 429), waiting 20 s until
    22:41:07 UTC (retry 2 of 3)`."""
    when = clock(wait.until)
    if wait.giving_up:
        return (
            f"{backend}: {reason(wait.error)}, the server asks to wait {seconds(wait.delay_s)}"
            f" (until {when}); longer than {MAX_RETRY_AFTER_S:.0f} s, so these tickets fail"
            " now as RateLimited: route them again later"
        )
    return (
        f"{backend}: {reason(wait.error)}, waiting {seconds(wait.delay_s)} until {when}"
        f" (retry {wait.retry} of {wait.max_retries})"
    )


class WaitAnnouncer:
    """Turns a flood of waits into a few lines: 32 workers hitting the same 429 print one.

    A wait is worth a line when it lasts at least `min_s` (or gives up), and when no line
    was shown for the same backend and reason in the last `interval_s` seconds, unless it
    ends clearly later than the last one shown.
    """

    def __init__(
        self,
        *,
        interval_s: float = 10.0,
        min_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.min_s = min_s
        self._monotonic = monotonic
        self._shown: dict[tuple[str, str, bool], tuple[float, float]] = {}

    def line(self, backend: str, wait: RetryWait) -> str | None:
        """The line to show for this wait, or None when it would repeat a recent one."""
        if not wait.giving_up and wait.delay_s < self.min_s:
            return None
        key = (backend, reason(wait.error), wait.giving_up)
        now = self._monotonic()
        ends = now + wait.delay_s if math.isfinite(wait.delay_s) else math.inf
        last = self._shown.get(key)
        if last is not None:
            shown_at, shown_ends = last
            if now - shown_at < self.interval_s and ends <= shown_ends + self.interval_s:
                return None
        self._shown[key] = (now, ends)
        return describe(backend, wait)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    max_retries: int,
    base_delay: float = BASE_DELAY_S,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `call`, retrying retryable BackendErrors up to `max_retries` times.

    Each wait is announced to the `listening` listener first. A Retry-After above
    `MAX_RETRY_AFTER_S` ends the loop at once with a `RateLimited` that says until when.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except BackendError as error:
            if not error.retryable:
                raise
            if (
                isinstance(error, RateLimited)
                and error.retry_after is not None
                and error.retry_after > MAX_RETRY_AFTER_S
            ):
                failed = too_long(error)
                _announce(
                    RetryWait(
                        failed,
                        error.retry_after,
                        attempt + 1,
                        max_retries,
                        giving_up=True,
                        at=time.time(),
                    )
                )
                raise failed from None
            if attempt >= max_retries:
                raise
            delay = backoff_delay(attempt, error, base=base_delay)
            _announce(RetryWait(error, delay, attempt + 1, max_retries, at=time.time()))
            async with limiter.yielding(error):  # the wait holds no place under the limit
                await sleep(delay)
            attempt += 1
