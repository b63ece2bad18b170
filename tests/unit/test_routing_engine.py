"""The routing engine's own thread and loop, on a real store with real (plugin) backends: a run
routed there stores every decision (errors too) and tells the caller of each from the
engine's thread; failures reach the caller; cancelling the caller stops the run, which keeps
what it decided; closing stops the thread, and the engine starts again when needed."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.unit.test_runs import plugin_backends, settings, store
from tui.core.models import Decision, Taxonomy
from tui.core.store import Store
from tui.services.routing import Router, RoutingEngine
from tui.services.runs import RunService, Selection, UnknownTickets

__all__ = ["plugin_backends", "store"]  # the run service's fixtures: ten tickets, T007 fails

TAXONOMY = Taxonomy.from_names(["billing", "shipping", "returns"])


def router_for(store: Store) -> Router:
    return Router(settings(), TAXONOMY, store)


async def test_a_run_on_the_engine_stores_every_decision_and_reports_each(store: Store) -> None:
    router = router_for(store)
    engine = RoutingEngine(router)
    service = RunService(store, router, lease_s=60)
    told: list[Decision] = []
    threads: set[int] = set()

    def on_decision(decision: Decision) -> None:
        threads.add(threading.get_ident())
        told.append(decision)

    try:
        plan = service.plan(Selection("unrouted"), run_id="tui-test-1")
        outcome = await engine.call(service.route(plan, on_decision=on_decision))
        assert engine.running
        assert outcome.summary.routed == 10 and outcome.summary.errors == 1
        assert sorted(d.ticket_id for d in told) == [f"T{i:03d}" for i in range(10)]
        assert threads and threading.get_ident() not in threads  # told on the engine's thread
        assert store.decision_count() == 10 and store.count_unrouted() == 0
        failed = store.latest_decision("T007")
        assert failed is not None and failed.error_class is not None
    finally:
        await engine.aclose()
    assert not engine.running


async def test_failures_reach_the_caller(store: Store) -> None:
    router = router_for(store)
    engine = RoutingEngine(router)
    service = RunService(store, router, lease_s=60)

    async def plan_missing() -> None:
        service.plan(Selection.of_ids(["NOPE"]), run_id="tui-test-2")

    try:
        with pytest.raises(UnknownTickets):
            await engine.call(plan_missing())
    finally:
        await engine.aclose()


async def test_cancelling_the_caller_stops_the_run_which_keeps_what_it_decided(
    store: Store,
) -> None:
    router = router_for(store)
    engine = RoutingEngine(router)
    service = RunService(store, router, lease_s=60)
    router.swap("stuck")
    plan = service.plan(Selection("unrouted"), run_id="tui-test-3")
    waiting = asyncio.ensure_future(engine.call(service.route(plan)))
    for _ in range(500):
        if router.in_flight:
            break
        await asyncio.sleep(0.01)
    assert router.in_flight > 0
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    for _ in range(500):  # the run ends on the engine's loop: claims given back
        if router.in_flight == 0 and store.claim_holders() == {}:
            break
        await asyncio.sleep(0.01)
    assert router.in_flight == 0 and store.claim_holders() == {}
    await engine.aclose()
    router.swap("fast")  # a closed engine starts again when it is next needed
    plan = service.plan(Selection("unrouted"), run_id="tui-test-4")
    outcome = await engine.call(service.route(plan))
    assert outcome.summary.routed == 10
    await engine.aclose()
