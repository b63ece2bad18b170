"""The run service on a real store with real (plugin) backends: what each selection routes,
resuming, limits, claims, progress, stopping and cancelling, and compare's storing order."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tui.core import registry
from tui.core.config import ConfigError, Settings, _build
from tui.core.database_url import PgTarget
from tui.core.models import Decision, Taxonomy, Ticket
from tui.core.store import Store
from tui.services.compare import compare_backends, store_compared
from tui.services.routing import Router
from tui.services.runs import (
    FOLLOW_ACTIVE_MAX_CONCURRENCY,
    RunService,
    Selection,
    UnknownTickets,
)

TAXONOMY = Taxonomy.from_names(["billing", "shipping", "returns"])
OTHER = "far-away-host:99:aaaa"
"""A claim owner on another host, alive until its lease ends."""


@pytest.fixture(autouse=True)
def plugin_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILTIN, "hash", "tests.unit.plugin_backends:HashBackend")
    monkeypatch.setitem(registry.BUILTIN, "crash", "tests.unit.plugin_backends:CrashingBackend")


def settings() -> Settings:
    return _build(
        {
            "routing": {"backend": "fast"},
            "backends": {
                "fast": {"type": "hash", "max_concurrency": 3},
                "crash": {"type": "crash", "max_concurrency": 2},
                "slow": {"type": "hash", "delay_s": 0.05, "max_concurrency": 1},
                "stuck": {
                    "type": "hash",
                    "delay_s": 3600,
                    "max_concurrency": 2,
                    "adaptive_concurrency": False,  # slow start would send it only one
                },
            },
        },
        None,
    )


@pytest.fixture
def store(db_target: Path | PgTarget) -> Store:
    """On both engines: the conformance suite (tests/conftest.py `db_target`)."""
    opened = Store(db_target)
    tickets = [Ticket(id=f"T{i:03d}", text=f"text {i}") for i in range(10)]
    tickets[7] = Ticket(id="T007", text="text 7 FAIL")  # the hash backend fails this one
    opened.import_tickets(tickets)
    yield opened
    opened.close()


@pytest.fixture
async def service(store: Store) -> Any:
    router = Router(settings(), TAXONOMY, store)
    yield RunService(store, router, lease_s=60)
    await router.aclose()


class Recorder:
    """A `RunProgress` that remembers what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def start(self, total: int | None, description: str) -> None:
        self.calls.append(("start", (total, description)))

    def advance(self, n: int = 1) -> None:
        self.calls.append(("advance", n))

    def stop(self) -> None:
        self.calls.append(("stop", None))


def run_rows(store: Store) -> list[tuple[str, str, str]]:
    return [
        tuple(r) for r in store.query("SELECT id, selection, status FROM runs ORDER BY started_at")
    ]


async def test_unrouted_routes_each_ticket_once_with_progress_and_finishes(
    store: Store, service: RunService
) -> None:
    plan = service.plan(Selection(), backend="fast")
    assert plan.recorded and not plan.resumed and plan.backend == "fast"
    progress, seen = Recorder(), []
    outcome = await service.route(
        plan, on_decision=seen.append, progress=progress, description="routing with fast"
    )
    summary = outcome.summary
    assert (summary.routed, summary.errors) == (10, 1)
    assert dict(summary.error_classes) == {"ServerError": 1}
    assert sorted(d.ticket_id for d in seen) == [f"T{i:03d}" for i in range(10)]
    assert progress.calls[0] == ("start", (10, "routing with fast"))
    assert progress.calls[1:-1] == [("advance", 1)] * 10 and progress.calls[-1] == ("stop", None)
    assert outcome.finished and not outcome.stopped
    assert run_rows(store) == [(plan.run_id, "unrouted", "done")]
    assert store.count_unrouted() == 0 and store.claim_holders() == {}
    again = await service.route(service.plan(Selection(), backend="fast"))
    assert again.summary.routed == 0  # nothing left unrouted


async def test_a_limited_run_stays_open_and_the_next_one_resumes_it(
    store: Store, service: RunService
) -> None:
    first = service.plan(Selection("all", limit=4), backend="fast")
    assert service.pending_count(first) == 4
    outcome = await service.route(first)
    assert outcome.summary.routed == 4 and not outcome.finished
    assert run_rows(store) == [(first.run_id, "all", "running")]

    second = service.plan(Selection("all"), backend="fast")
    assert second.resumed and second.run_id == first.run_id and second.holders == {}
    assert service.pending_count(second) == 6
    outcome = await service.route(second)
    assert outcome.summary.routed == 6 and outcome.finished
    assert store.decisions_in_run(first.run_id) == 10  # each ticket once in the run
    assert run_rows(store) == [(first.run_id, "all", "done")]


async def test_ids_are_checked_before_anything_is_written(
    store: Store, service: RunService
) -> None:
    with pytest.raises(UnknownTickets) as raised:
        service.plan(Selection.of_ids(["T001", "nope", "gone"]), backend="fast")
    assert raised.value.missing == ("nope", "gone") and run_rows(store) == []
    with pytest.raises(ConfigError):
        service.plan(Selection(), backend="not-configured")
    assert run_rows(store) == []

    plan = service.plan(Selection.of_ids(["T003", "T001"]), backend="fast")
    assert plan.selection.key == "ids:T003,T001" and service.pending_count(plan) == 2
    outcome = await service.route(plan)
    assert outcome.summary.routed == 2 and outcome.finished
    assert store.count_unrouted() == 8


async def test_a_bad_lease_setting_is_refused_before_any_write(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAGEDESK_CLAIM_LEASE_S", "soon")
    router = Router(settings(), TAXONOMY, store)
    with pytest.raises(ConfigError, match="TRIAGEDESK_CLAIM_LEASE_S"):
        RunService(store, router).plan(Selection(), backend="fast")
    assert run_rows(store) == []


async def test_errors_routes_only_the_tickets_whose_last_attempt_failed(
    store: Store, service: RunService
) -> None:
    await service.route(service.plan(Selection.of_ids(["T001", "T002", "T007"]), backend="crash"))
    await service.route(service.plan(Selection.of_ids(["T003"]), backend="fast"))
    assert store.inbox_count("errors") == 3
    plan = service.plan(Selection("errors"), backend="fast")
    assert service.pending_count(plan) == 3
    seen: list[Decision] = []
    outcome = await service.route(plan, on_decision=seen.append)
    assert sorted(d.ticket_id for d in seen) == ["T001", "T002", "T007"]
    assert outcome.summary.errors == 1  # T007 fails on the hash backend too
    assert store.inbox_count("errors") == 1


async def test_tickets_another_run_holds_are_skipped_and_said(
    store: Store, service: RunService
) -> None:
    store.claim_tickets(OTHER, "elsewhere", ["T002", "T005"], lease_s=60)
    outcome = await service.route(service.plan(Selection(), backend="fast"))
    summary = outcome.summary
    assert summary.routed == 8 and dict(summary.skipped) == {OTHER: 2}
    assert (
        summary.skipped_line == "skipped 2 tickets claimed by another run (pid 99 on far-away-host)"
    )
    assert store.count_unrouted() == 2


async def test_an_adhoc_run_follows_the_active_backend_and_leaves_no_run_row(
    store: Store, service: RunService
) -> None:
    service.router.swap("crash")
    plan = service.plan(Selection.of_ids(["T004"]), run_id="tui-abc-1")
    assert not plan.recorded and plan.backend is None
    outcome = await service.route(plan)
    assert outcome.summary.error_classes == {"InternalError": 1} and not outcome.finished
    assert run_rows(store) == []
    (decision,) = store.decisions_for("T004")
    assert (decision.run_id, decision.backend) == ("tui-abc-1", "crash")
    with pytest.raises(ValueError, match="one named backend"):
        service.plan(Selection())  # a recorded run needs its backend


async def _until_in_flight(router: Router, n: int) -> None:
    while router.in_flight < n:
        await asyncio.sleep(0.01)


async def test_stop_keeps_what_was_decided_and_leaves_the_rest_to_a_resume(
    store: Store, service: RunService
) -> None:
    await service.route(service.plan(Selection.of_ids(["T000", "T001"]), backend="fast"))
    plan = service.plan(Selection("all"), backend="stuck")
    stop = asyncio.Event()
    routing = asyncio.create_task(service.route(plan, stop=stop))
    await _until_in_flight(service.router, 2)  # two tickets hang in the backend
    assert store.claim_holders()
    stop.set()
    outcome = await asyncio.wait_for(routing, 10)
    assert outcome.stopped and not outcome.finished and outcome.summary.routed == 0
    assert store.claim_holders() == {}  # every claim given back
    assert run_rows(store)[-1] == (plan.run_id, "all", "running")
    assert service.plan(Selection("all"), backend="stuck").resumed


async def test_a_stopped_run_counts_what_it_stored(store: Store, service: RunService) -> None:
    stop = asyncio.Event()
    seen: list[Decision] = []

    def stored(decision: Decision) -> None:
        seen.append(decision)
        if len(seen) == 3:
            stop.set()

    plan = service.plan(Selection(), backend="slow")  # 20 a second, stored every 0.2 s
    outcome = await service.route(plan, on_decision=stored, stop=stop)
    assert outcome.stopped
    assert outcome.summary.routed == len(seen) == store.decisions_in_run(plan.run_id)
    assert 3 <= outcome.summary.routed < 10


async def test_cancelling_the_caller_cancels_the_run_and_releases_its_claims(
    store: Store, service: RunService
) -> None:
    plan = service.plan(Selection(), backend="stuck")
    routing = asyncio.create_task(service.route(plan))
    await _until_in_flight(service.router, 2)
    routing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await routing
    assert store.claim_holders() == {} and service.router.in_flight == 0
    assert run_rows(store) == [(plan.run_id, "unrouted", "running")]


def test_default_concurrency_and_selection_rules(service: RunService) -> None:
    assert service.default_concurrency("crash") == 2
    assert service.default_concurrency(None) == 3  # the most any backend accepts
    assert FOLLOW_ACTIVE_MAX_CONCURRENCY == 1024
    with pytest.raises(ValueError):
        Selection("ids")
    with pytest.raises(ValueError):
        Selection("all", ids=("T001",))
    with pytest.raises(ValueError):
        Selection(limit=0)
    assert [Selection(kind).key for kind in ("unrouted", "all", "errors")] == [
        "unrouted",
        "all",
        "errors",
    ]


async def test_compare_stores_the_active_backends_answer_last(store: Store) -> None:
    two = _build(
        {
            "routing": {"backend": "crash"},
            "backends": {"fast": {"type": "hash"}, "crash": {"type": "crash"}},
        },
        None,
    )
    router = Router(two, TAXONOMY, store)
    ticket = store.get_ticket("T001")
    assert ticket is not None
    answered: list[str] = []
    ids = iter(range(100))
    try:
        decisions = await compare_backends(
            router, ticket, lambda: f"cmp-{next(ids)}", lambda d: answered.append(d.backend)
        )
    finally:
        await router.aclose()
    assert [d.backend for d in decisions] == ["fast", "crash"]  # config order
    assert sorted(answered) == ["crash", "fast"] and store.decision_count() == 0
    store_compared(store, decisions, active="crash")
    row = store.inbox_row("T001")
    assert row is not None and row.error_class == "InternalError"  # crash's, stored last
    again = [d.model_copy(update={"run_id": f"again-{d.backend}"}) for d in decisions]
    store_compared(store, again, active="fast")
    row = store.inbox_row("T001")
    assert row is not None and row.backend == "fast" and row.error_class is None
