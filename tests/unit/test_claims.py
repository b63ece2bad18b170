"""Claims on a real store: who may take a ticket, when a claim is void, what a run releases,
and that a call whose decision is a duplicate is still paid for in the totals."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui.core import registry
from tui.core.claims import RunClaims, describe_skipped
from tui.core.config import _build
from tui.core.database_url import PgTarget
from tui.core.models import Decision, Taxonomy, Ticket
from tui.core.store import PendingQuery, Store, StoreError
from tui.services.routing import Router, page_pending

TAXONOMY = Taxonomy.from_names(["billing", "shipping", "returns"])
FAR = "far-away-host:99:aaaa"
NEAR = "far-away-host:100:bbbb"


@pytest.fixture(autouse=True)
def plugin_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILTIN, "hash", "tests.unit.plugin_backends:HashBackend")


@pytest.fixture
def store(db_target: Path | PgTarget) -> Iterator[Store]:
    """On both engines: the conformance suite (tests/conftest.py `db_target`)."""
    with Store(db_target) as opened:
        opened.import_tickets([Ticket(id=f"T{i:03d}", text=f"text {i}") for i in range(12)])
        yield opened


def dead_owner(tag: str) -> str:
    """An owner of this host whose process has exited (as after a `kill -9`)."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return f"{socket.gethostname()}:{int(gone.stdout)}:{tag}"


def ids_of(claimed: object) -> list[str]:
    return [t.id for _, t in claimed.tickets]  # type: ignore[attr-defined]


def decision(tid: str, run: str, cost: float = 0.25) -> Decision:
    return Decision(
        ticket_id=tid,
        run_id=run,
        backend="api",
        backend_type="openai",
        label="billing",
        confidence=0.9,
        total_ms=5.0,
        cost_usd=cost,
    )


def test_a_ticket_is_held_by_one_owner_at_a_time(store: Store) -> None:
    first = store.claim_tickets(FAR, "r1", ["T001", "T000", "T001", "nope"], lease_s=60)
    assert ids_of(first) == ["T000", "T001"] and first.held == {}  # repeats, unknown ids out
    second = store.claim_tickets(NEAR, "r2", ["T000", "T001", "T002"], lease_s=60)
    assert ids_of(second) == ["T002"] and second.held == {FAR: 2}
    again = store.claim_tickets(FAR, "r1", ["T000"], lease_s=60)  # its own: renewed
    assert ids_of(again) == ["T000"]
    assert store.claim_holders() == {FAR: 2, NEAR: 1} and store.claim_holders("r2") == {NEAR: 1}


def test_a_lapsed_lease_or_a_dead_local_process_frees_the_tickets(store: Store) -> None:
    store.claim_tickets(FAR, "r1", ["T000"], lease_s=60)
    assert store.renew_claims(FAR, 0) == 1  # its lease has run out
    assert ids_of(store.claim_tickets(NEAR, "r2", ["T000"], lease_s=60)) == ["T000"]

    dead = dead_owner("cccc")
    store.claim_tickets(dead, "r3", ["T001"], lease_s=3600)
    assert store.claim_holders() == {NEAR: 1}  # the dead owner's claim counts for nothing
    assert ids_of(store.claim_tickets(NEAR, "r2", ["T001"], lease_s=60)) == ["T001"]


def test_release_and_bad_leases(store: Store) -> None:
    store.claim_tickets(FAR, "r1", ["T000", "T001", "T002"], lease_s=60)
    assert store.release_claims(NEAR) == 0  # only the owner's own
    assert store.release_claims(FAR, ["T001"]) == 1
    assert store.release_claims(FAR) == 2
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(StoreError, match="lease"):
            store.claim_tickets(FAR, "r1", ["T000"], lease_s=bad)
        with pytest.raises(StoreError, match="lease"):
            store.renew_claims(FAR, bad)


def test_pending_pages_skip_what_others_hold_and_walk_on(store: Store) -> None:
    store.claim_tickets(FAR, "other", ["T001", "T002", "T005"], lease_s=60)
    page = store.claim_tickets(NEAR, "r", PendingQuery(limit=4), lease_s=60)
    assert ids_of(page) == ["T000", "T003"] and page.held == {FAR: 2}
    rest = store.claim_tickets(NEAR, "r", PendingQuery(after_seq=page.last_seq), lease_s=60)
    assert ids_of(rest) == [f"T{i:03d}" for i in range(4, 12) if i != 5]
    assert rest.held == {FAR: 1}
    end = store.claim_tickets(NEAR, "r", PendingQuery(after_seq=rest.last_seq), lease_s=60)
    assert end.tickets == [] and end.last_seq == rest.last_seq
    assert store.claim_tickets(NEAR, "r", PendingQuery(ids=()), lease_s=60).tickets == []


def test_storing_a_decision_releases_its_claim_and_a_duplicate_still_costs(store: Store) -> None:
    store.claim_tickets(FAR, "r1", ["T000", "T001"], lease_s=60)
    stored = store.record_decisions([decision("T000", "r1")], owner=FAR)
    assert len(stored) == 1
    assert store.query("SELECT ticket_id FROM claims") == [("T001",)]
    # The same ticket decided again in the same run (a lease taken over from a stalled run):
    # not stored, but the call was made, so it is paid for.
    assert store.record_decisions([decision("T000", "r1", cost=0.5)]) == []
    (stats,) = store.backend_stats()
    assert stats.n == 1 and stats.cost_usd == pytest.approx(0.75)
    assert sum(cost for _, _, cost, _ in store.cost_timeline()) == pytest.approx(0.75)
    ledger = store.query("SELECT ticket_id, run_id, cost_usd FROM duplicate_calls")
    assert ledger == [("T000", "r1", 0.5)]


def test_describe_skipped() -> None:
    assert describe_skipped({}) is None
    assert (
        describe_skipped({FAR: 1})
        == "skipped 1 ticket claimed by another run (pid 99 on far-away-host)"
    )
    both = describe_skipped({FAR: 2, NEAR: 3})
    assert both == (
        "skipped 5 tickets claimed by other runs (pid 100 on far-away-host, pid 99 on far-away-host)"
    )


def settings() -> object:
    return _build(
        {
            "routing": {"backend": "slow"},
            "backends": {
                "slow": {"type": "hash", "delay_s": 0.01, "max_concurrency": 2},
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


async def test_a_run_releases_every_claim_however_it_ends(store: Store) -> None:
    router = Router(settings(), TAXONOMY, store)  # type: ignore[arg-type]
    claims = RunClaims(store, "r1", lease_s=60)
    taken = await claims.take([f"T{i:03d}" for i in range(6)])
    summary = await router.run(taken[:3], run_id="r1", claims=claims)  # 3 claimed, never routed
    assert summary.routed == 3
    assert store.claim_holders() == {} and store.query("SELECT * FROM claims") == []

    store.claim_tickets(FAR, "other", ["T011"], lease_s=60)
    claims = RunClaims(store, "r2", lease_s=60)
    task = asyncio.create_task(
        router.run(
            page_pending(store, "r2", claims=claims), run_id="r2", backend="stuck", claims=claims
        )
    )
    while router.in_flight < 2:  # the page is claimed, two tickets hang in the backend
        await asyncio.sleep(0.01)
    assert store.claim_holders()[claims.owner] == 11
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.claim_holders() == {FAR: 1}  # the cancelled run let go of all of its own
    await router.aclose()


async def test_page_pending_reports_what_it_skipped(store: Store) -> None:
    store.claim_tickets(FAR, "other", ["T003", "T004"], lease_s=60)
    router = Router(settings(), TAXONOMY, store)  # type: ignore[arg-type]
    run = store.open_run("slow", "all")
    claims = RunClaims(store, run.id, lease_s=60)
    summary = await router.run(
        page_pending(store, run.id, claims=claims, page=3), run_id=run.id, claims=claims
    )
    await router.aclose()
    assert summary.routed == 10 and dict(summary.skipped) == {FAR: 2}
    assert summary.skipped_line == (
        "skipped 2 tickets claimed by another run (pid 99 on far-away-host)"
    )
    assert store.finish_run(run.id)  # the claims left are another run's
    assert store.query("SELECT status FROM runs") == [("done",)]


async def test_a_routing_run_renews_its_lease(store: Store) -> None:
    router = Router(settings(), TAXONOMY, store)  # type: ignore[arg-type]
    claims = RunClaims(store, "r", lease_s=0.4)  # renewed every 0.1 s while it routes
    task = asyncio.create_task(
        router.run(
            page_pending(store, "r", claims=claims), run_id="r", backend="stuck", claims=claims
        )
    )
    while router.in_flight < 2:
        await asyncio.sleep(0.01)

    def expiry() -> str:
        return str(store.query("SELECT max(expires_at) FROM claims")[0][0])

    first = expiry()
    while expiry() == first:  # a renewal moves every claim's expiry on
        await asyncio.sleep(0.02)
    assert expiry() > first
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await router.aclose()
    assert store.claim_holders() == {}
