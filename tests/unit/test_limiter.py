"""The adaptive concurrency limit: it grows on success, cuts on overload, never leaves
[1, max_concurrency], and the retry loop gives its place back while it sleeps."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from backends import retry
from backends.limiter import AdaptiveLimit, is_overload, limit_key, read_limit, read_snapshot
from tui.core.backend import (
    BadResponse,
    ConnectionFailed,
    RateLimited,
    ServerError,
    StreamInterrupted,
    Timeout,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def settle(limit: AdaptiveLimit, outcomes: list[BaseException | None]) -> None:
    """Run one burst: as many attempts as the limit allows, each ending with its outcome."""
    permits = [await limit.acquire() for _ in outcomes]
    for permit, outcome in zip(permits, outcomes, strict=True):
        limit.release(permit, outcome)


def test_overload_signals() -> None:
    assert is_overload(RateLimited("429"))
    assert is_overload(ServerError("503", status=503))
    assert is_overload(ServerError("529", status=529))
    assert is_overload(Timeout("slow"))
    assert is_overload(StreamInterrupted("empty"))
    assert not is_overload(ServerError("500", status=500))
    assert not is_overload(BadResponse("not json"))
    assert not is_overload(ConnectionFailed("refused"))


def test_empty_stream_is_retryable() -> None:
    assert StreamInterrupted("truncated stream: no content before [DONE]").retryable


async def test_grows_on_success_up_to_the_maximum() -> None:
    limit = AdaptiveLimit(6, monotonic=Clock())
    assert limit.limit == 1
    seen = []
    for _ in range(12):
        await settle(limit, [None] * limit.limit)
        seen.append(limit.limit)
    assert seen[:3] == [2, 4, 6]  # slow start doubles per round
    assert max(seen) == 6 and seen[-1] == 6


async def test_cuts_on_overload_once_per_round() -> None:
    limit = AdaptiveLimit(16, initial=16, monotonic=Clock())
    assert limit.limit == 16
    permits = [await limit.acquire() for _ in range(16)]
    for permit in permits:  # a whole burst of 429s answers one cut, not sixteen
        limit.release(permit, RateLimited("429"))
    assert limit.limit == 8
    assert limit.cuts == 1
    await settle(limit, [RateLimited("429")])
    assert limit.limit == 4
    for _ in range(5):
        await settle(limit, [StreamInterrupted("empty")])
    assert limit.limit == 1  # never below one


async def test_other_failures_teach_nothing() -> None:
    limit = AdaptiveLimit(8, initial=4, monotonic=Clock())
    await settle(limit, [BadResponse("not json"), ConnectionFailed("refused")])
    assert (limit.limit, limit.cuts) == (4, 0)


async def test_probes_past_an_overloaded_level_back_off() -> None:
    """A server that takes one request at a time: the limit settles at 1, and the failed
    probes at 2 grow rarer."""
    limit = AdaptiveLimit(8, monotonic=Clock())
    probes = 0
    for _ in range(600):
        if limit.limit >= 2:
            probes += 1
            await settle(limit, [StreamInterrupted("interrupted"), None])
        else:
            await settle(limit, [None])
    assert limit.limit == 1
    assert probes <= 8  # 8, 16, 32 ... successes between probes


async def test_a_probe_that_holds_lifts_the_ceiling() -> None:
    limit = AdaptiveLimit(8, monotonic=Clock())
    await settle(limit, [None])
    await settle(limit, [RateLimited("429"), None])
    assert limit.limit == 1
    for _ in range(60):
        await settle(limit, [None] * limit.limit)
    assert limit.limit >= 4


async def test_rising_latency_cuts() -> None:
    clock = Clock()
    limit = AdaptiveLimit(32, initial=16, monotonic=clock)
    for _ in range(40):
        permit = await limit.acquire()
        clock.now += 0.01
        limit.release(permit)
    before = limit.limit
    for _ in range(6):
        permit = await limit.acquire()
        clock.now += 0.2
        limit.release(permit)
    assert limit.limit < before
    assert limit.cuts >= 1


async def test_never_more_in_flight_than_the_limit_nor_the_maximum() -> None:
    limit = AdaptiveLimit(5, monotonic=Clock())
    rng = random.Random(3)
    in_flight = peak = 0
    over = []

    async def one() -> None:
        nonlocal in_flight, peak
        async with limit.slot() as held:
            in_flight += 1
            peak = max(peak, in_flight)
            if in_flight > limit.max_limit:
                over.append(in_flight)
            await asyncio.sleep(rng.random() / 1000)
            if rng.random() < 0.1:
                held.error = RateLimited("429")
            in_flight -= 1

    await asyncio.gather(*(one() for _ in range(400)))
    assert not over
    assert peak == 5
    assert 1 <= limit.limit <= 5
    assert limit.in_flight == 0


async def test_fixed_when_not_adaptive() -> None:
    limit = AdaptiveLimit(6, adaptive=False, monotonic=Clock())
    assert limit.limit == 6
    await settle(limit, [RateLimited("429")] * 6)
    assert limit.limit == 6


async def test_a_retry_sleeps_without_its_place() -> None:
    """While one ticket waits out a 429 backoff, another takes the only place."""
    limit = AdaptiveLimit(1, monotonic=Clock())
    order: list[str] = []
    asleep = asyncio.Event()
    wake = asyncio.Event()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RateLimited("429")
        order.append("retried")
        return "ok"

    async def sleep(_delay: float) -> None:
        asleep.set()
        await wake.wait()

    async def first() -> str:
        async with limit.slot():
            return await retry.with_retries(flaky, max_retries=2, sleep=sleep)

    async def second() -> None:
        await asleep.wait()
        async with limit.slot():
            order.append("second")
        wake.set()

    got, _ = await asyncio.gather(first(), second())
    assert got == "ok"
    assert order == ["second", "retried"]
    assert limit.in_flight == 0


async def test_a_cancelled_waiter_gives_nothing_away() -> None:
    limit = AdaptiveLimit(1, adaptive=False, monotonic=Clock())
    held = await limit.acquire()
    waiter = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limit.release(held)
    assert limit.in_flight == 0
    again = await limit.acquire()
    limit.release(again)
    assert limit.in_flight == 0


async def test_a_run_leaves_its_limit_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tui.core import registry
    from tui.core.config import _build
    from tui.core.models import Taxonomy, Ticket
    from tui.core.store import Store
    from tui.services.routing import Router

    monkeypatch.setitem(registry.BUILTIN, "hash", "tests.unit.plugin_backends:HashBackend")
    settings = _build(
        {
            "routing": {"backend": "h"},
            "backends": {"h": {"type": "hash", "delay_s": 0.001, "max_concurrency": 6}},
        },
        None,
    )
    taxonomy = Taxonomy.from_names(["billing", "shipping"])
    store = Store(tmp_path / "l.db")
    tickets = [Ticket(id=f"T{i}", text=f"text {i}") for i in range(60)]
    store.import_tickets(tickets)
    router = Router(settings, taxonomy, store)
    await router.run(tickets[:30], run_id="one", concurrency=6)
    await router.aclose()
    learnt = router.concurrency_limit("h")
    assert learnt is not None and learnt[1] == 6
    stored = read_snapshot(store.get_meta(limit_key("h")))
    assert stored is not None and (stored["limit"], stored["max"]) == learnt

    store.set_meta(limit_key("h"), '{"limit": 2, "max": 6, "cuts": 3}')
    again = Router(settings, taxonomy, store)
    await again.run(tickets[30:32], run_id="two", concurrency=6)
    await again.aclose()
    assert again.concurrency_limit("h") == (2, 6)  # started there, not from one


@pytest.mark.parametrize("stored", [None, "", "[]", '{"limit": 0}', '{"limit": "3"}', "{"])
def test_an_unreadable_stored_limit_is_ignored(stored: str | None) -> None:
    assert read_limit(stored) is None
