"""The run's writer thread and the batched SQLite write: the same rows as one decision at a
time, every decision stored before a run returns, a failed write raised by the run."""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_routing import TAXONOMY, make, plugin_backends, settings
from tui.core.models import Decision, StageResult, Ticket
from tui.core.store import Store, StoreError, decision_batch
from tui.services.routing import Router, page_pending
from tui.services.routing import writer as writer_module
from tui.services.routing.writer import DecisionWriter

__all__ = ["plugin_backends"]  # the autouse fixture that registers the test backends

TABLES = {
    "decisions": "id",
    "latest_decisions": "ticket_id, backend",
    "tickets": "seq",
    "backend_totals": "backend",
    "label_agreement": "backend, predicted, truth",
    "latency_histogram": "backend, bucket",
    "cost_by_hour": "hour, backend",
    "duplicate_calls": "id",
    "claims": "ticket_id",
}


def seeded(path: Path, n: int) -> Store:
    store = Store(path)
    store.import_tickets([Ticket(id=f"T{i:03d}", text=f"ticket {i}") for i in range(n)])
    for i in range(0, n, 3):  # a third carry an agent label: the agreement counts move
        store.add_label(f"T{i:03d}", random.Random(i).choice(TAXONOMY.names), agent="ann")
    return store


def random_batches(n_tickets: int, seed: int) -> list[list[Decision]]:
    """Batches over three backends and two runs, with a ticket repeated inside a batch and
    across batches (duplicates of a run), errors, missing labels and stages."""
    rng = random.Random(seed)
    batches: list[list[Decision]] = []
    for _ in range(12):
        batch = []
        for _ in range(rng.choice([1, 5, 64, 90])):
            failed = rng.random() < 0.15
            batch.append(
                Decision(
                    ticket_id=f"T{rng.randrange(n_tickets):03d}",
                    run_id=rng.choice(["run-a", "run-b"]),
                    backend=rng.choice(["a", "b", "c"]),
                    backend_type="hash",
                    model="m",
                    label=None if failed else rng.choice(TAXONOMY.names),
                    confidence=None if failed else rng.random(),
                    total_ms=rng.choice([None, rng.uniform(0, 5000)]),
                    input_tokens=rng.choice([None, rng.randrange(1, 900)]),
                    output_tokens=rng.randrange(0, 40),
                    cost_usd=rng.choice([None, rng.random() / 1000]),
                    counterfactual_cost_usd=rng.random() / 1000,
                    error_class="ServerError" if failed else None,
                    error_message="boom" if failed else None,
                    stages=(
                        StageResult(backend="x", backend_type="hash", model="y", label="billing"),
                    )
                    if rng.random() < 0.1
                    else (),
                )
            )
        batches.append(batch)
    return batches


def table_rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    return {
        name: [tuple(r) for r in store.conn.execute(f"SELECT * FROM {name} ORDER BY {order}")]
        for name, order in TABLES.items()
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_batched_write_stores_what_one_at_a_time_stores(tmp_path: Path, seed: int) -> None:
    seeded(tmp_path / "batched.db", 40).close()
    shutil.copy(tmp_path / "batched.db", tmp_path / "rows.db")  # the same start, byte for byte
    batched, rows = Store(tmp_path / "batched.db"), Store(tmp_path / "rows.db")
    rows.__dict__["_batches_ok"] = False  # the PostgreSQL path, one decision at a time
    assert batched._batches_supported()
    for store in (batched, rows):
        store.claim_tickets("me", "run-a", [f"T{i:03d}" for i in range(40)], 60.0)
    for batch in random_batches(40, seed):
        got = batched.record_decisions(batch, owner="me")
        want = rows.record_decisions(batch, owner="me")
        assert [(d.id, d.ticket_id, d.run_id) for d in got] == [
            (d.id, d.ticket_id, d.run_id) for d in want
        ]
    assert table_rows(batched) == table_rows(rows)
    assert batched.conn.execute("SELECT count(*) FROM duplicate_calls").fetchone()[0] > 0
    assert batched.integrity_ok()


def test_a_batch_with_an_unknown_ticket_stores_nothing(tmp_path: Path) -> None:
    store = seeded(tmp_path / "t.db", 5)
    good = Decision(ticket_id="T001", run_id="r", backend="a", backend_type="hash", label="x")
    with pytest.raises(sqlite3.IntegrityError):
        store.record_decisions([good, good.model_copy(update={"ticket_id": "nope"})])
    assert store.decision_count() == 0 and store.count_unrouted() == 5


@pytest.mark.parametrize(
    "template, width, scanned",
    [
        (decision_batch._TICKETS, 6, "tickets"),
        (decision_batch._LATEST, 4, "latest_decisions"),
    ],
)
def test_the_batched_statements_look_rows_up_by_index(
    tmp_path: Path, template: str, width: int, scanned: str
) -> None:
    store = seeded(tmp_path / "t.db", 3)
    sql = decision_batch._statement(template, width, 16)
    plan = " | ".join(
        str(r[3]) for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql, [None] * width * 16)
    )
    assert f"SCAN {scanned}" not in plan, plan
    for sql in (decision_batch._TAKEN, decision_batch._STATE):
        plan = " | ".join(
            str(r[3]) for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql, ["[]"])
        )
        assert "SCAN d" not in plan and "SCAN t" not in plan.replace("SCAN p", ""), plan


async def test_the_writer_takes_a_deep_queue_in_one_write_and_keeps_the_order() -> None:
    gate = threading.Event()
    writes: list[list[str]] = []
    told: list[str] = []

    def record(batch: list[Decision]) -> list[Decision]:
        gate.wait(60)  # held: the batches handed over meanwhile queue up behind this one
        writes.append([d.ticket_id for d in batch])
        return batch

    writer = DecisionWriter(record, lambda stored: told.extend(d.ticket_id for d in stored))
    ids = [f"T{i:03d}" for i in range(50)]
    for start in range(0, 50, 10):
        writer.submit(
            [
                Decision(ticket_id=t, run_id="r", backend="a", backend_type="x", label="x")
                for t in ids[start : start + 10]
            ]
        )
    gate.set()
    await writer.finish()
    assert told == ids  # told once stored, in the order handed over
    assert sum(writes, []) == ids
    assert len(writes) < 5  # the four batches queued behind the first went in together


async def test_the_writer_holds_the_loop_back_only_past_its_backlog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(writer_module, "MAX_BACKLOG", 20)
    gate = threading.Event()

    def record(batch: list[Decision]) -> list[Decision]:
        gate.wait(60)
        return batch

    writer = DecisionWriter(record, lambda stored: None)
    one = [Decision(ticket_id="T", run_id="r", backend="a", backend_type="x", label="x")] * 15
    writer.submit(one)
    await writer.room()  # 15 behind: no wait
    writer.submit(one)
    waiting = asyncio.ensure_future(writer.room())  # 30 behind: waits for the writer
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done()
    gate.set()
    await waiting
    await writer.finish()


class HeldStore(Store):
    """A store whose writes wait for `gate`: the run must wait with them, not return first."""

    gate = threading.Event()

    def record_decisions(self, decisions: Any, *, owner: str | None = None) -> list[Decision]:
        self.gate.wait(60)
        return super().record_decisions(decisions, owner=owner)


async def test_every_decision_is_stored_when_the_run_returns(tmp_path: Path) -> None:
    make(tmp_path, 700).close()
    store = HeldStore(tmp_path / "r.db")
    HeldStore.gate = threading.Event()
    threading.Timer(0.3, HeldStore.gate.set).start()  # long after the routing itself is done
    told: list[Decision] = []
    router = Router(settings(), TAXONOMY, store)
    run = store.open_run("a", "unrouted")
    summary = await router.run(
        page_pending(store, run.id, unrouted_only=True),
        run_id=run.id,
        concurrency=8,
        on_decision=told.append,
    )
    assert summary.routed == 700
    assert store.decisions_in_run(run.id) == 700 == len(told)
    assert all(d.id is not None for d in told)  # told with the ids they were stored under
    assert len({d.id for d in told}) == 700
    assert not any(t.name == "decision-writer" for t in threading.enumerate())


async def test_a_failed_write_stops_the_run_and_keeps_what_was_stored(tmp_path: Path) -> None:
    """SQLite's page limit fails a write as a full disk does: the run raises the store's one
    line, and the decisions stored before stay."""
    store = make(tmp_path, 3000)
    pages = int(store.conn.execute("PRAGMA page_count").fetchone()[0])
    store.conn.execute(f"PRAGMA max_page_count = {pages + 100}")  # ~1,270 decisions
    router = Router(settings(), TAXONOMY, store)
    run = store.open_run("a", "unrouted")
    with pytest.raises(StoreError) as caught:
        await router.run(
            page_pending(store, run.id, unrouted_only=True), run_id=run.id, concurrency=8
        )
    assert "disk full" in str(caught.value)
    stored = store.decisions_in_run(run.id)
    assert 0 < stored < 3000
    assert store.integrity_ok()
    assert store.count_unrouted() == 3000 - stored  # each stored decision moved its ticket


async def test_a_run_through_the_writer_on_either_engine(db_target: object) -> None:
    """PostgreSQL keeps the one-at-a-time write under the same writer thread."""
    store = Store(db_target)  # type: ignore[arg-type]
    try:
        store.import_tickets([Ticket(id=f"T{i:03d}", text=f"text {i}") for i in range(300)])
        store.add_label("T007", "billing", agent="ann")
        router = Router(settings(), TAXONOMY, store)
        run = store.open_run("a", "unrouted")
        told: list[Decision] = []
        await router.run(
            page_pending(store, run.id, unrouted_only=True),
            run_id=run.id,
            concurrency=8,
            on_decision=told.append,
        )
        assert store.decisions_in_run(run.id) == 300 == len({d.id for d in told})
        assert store.count_unrouted() == 0
        assert (store.latest_decision("T007") or told[0]).ticket_id == "T007"
    finally:
        store.close()
