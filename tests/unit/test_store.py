"""Store round trips on real SQLite files: schema, migrations, inbox paging, labels, stats."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from tui.core.database_url import PgTarget
from tui.core.models import Decision, Ticket
from tui.core.store import MIGRATIONS, SCHEMA_VERSION, Cursor, Store, StoreError


def tickets(n: int, prefix: str = "T") -> list[Ticket]:
    return [
        Ticket(id=f"{prefix}{i:04d}", text=f"ticket number {i}", subject=f"s{i}") for i in range(n)
    ]


def decision(
    tid: str,
    label: str | None = "billing",
    *,
    run: str = "r1",
    backend: str = "spec",
    confidence: float | None = 0.9,
    error: str | None = None,
    ms: float = 10.0,
    cost: float | None = 0.001,
) -> Decision:
    return Decision(
        ticket_id=tid,
        run_id=run,
        backend=backend,
        backend_type="specialist",
        label=None if error else label,
        confidence=None if error else confidence,
        error_class=error,
        error_message="boom" if error else None,
        total_ms=ms,
        cost_usd=cost,
    )


@pytest.fixture
def store(db_target: Path | PgTarget) -> Iterator[Store]:
    """On both engines: the conformance suite (tests/conftest.py `db_target`)."""
    with Store(db_target) as opened:
        yield opened


def test_schema_is_versioned_and_plain(store: Store, tmp_path: Path) -> None:
    assert store.schema_version == SCHEMA_VERSION
    if store.engine == "postgresql":
        import psycopg

        with psycopg.connect(str(store.path)) as conn:
            names = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                )
            }
        assert {"tickets", "decisions", "label_events", "runs", "claims"} <= names
        return
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"
    assert store.query("PRAGMA foreign_keys")[0][0] == 1
    names = set(sqlite_utils.Database(tmp_path / "t.db").table_names())
    assert {"tickets", "decisions", "label_events", "runs"} <= names
    assert store.db["tickets"].count == 0  # the store's own connection through sqlite-utils


def test_migrates_a_version_1_database_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO tickets (id, text, received_at) VALUES ('old-1', 'hello', '2026-01-01T00:00:00+00:00')"
    )
    conn.execute(
        "INSERT INTO label_events (ticket_id, label, agent, source, created_at) VALUES ('old-1', 'billing', 'a', 'cli', '2026-01-01T00:00:00+00:00')"
    )
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.get_ticket("old-1").text == "hello"  # type: ignore[union-attr]
        assert store.label_history("old-1")[0].label == "billing"
        store.add_label("old-1", "shipping", agent="a")
        assert store.undo_last_label("a") is not None


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="junk.db"):
        Store(path)


def test_import_is_idempotent_and_records_labels(store: Store) -> None:
    first = store.import_tickets(tickets(5), {"T0001": "billing"})
    assert (first.inserted, first.duplicates, first.labels_recorded) == (5, 0, 1)
    again = store.import_tickets(tickets(6), {"T0001": "billing"})
    assert (again.inserted, again.duplicates, again.labels_recorded) == (1, 5, 0)
    assert store.ticket_count() == 6
    assert store.label_history("T0001")[0].source == "import"


def test_ticket_round_trip(store: Store) -> None:
    t = Ticket(
        id="x", text="body", subject="subj", customer="a@b.c", channel="email", meta={"k": [1, 2]}
    )
    store.import_tickets([t])
    back = store.get_ticket("x")
    assert back == t


def test_decisions_update_ticket_state_and_are_unique_per_run(store: Store) -> None:
    store.import_tickets(tickets(3))
    stored = store.record_decisions([decision("T0000"), decision("T0000", "shipping")])
    assert len(stored) == 1 and stored[0].id is not None
    row = store.inbox_row("T0000")
    assert row is not None and row.predicted_label == "billing" and row.backend == "spec"
    store.record_decisions([decision("T0001", error="Timeout")])
    assert store.inbox_row("T0001").error_class == "Timeout"  # type: ignore[union-attr]
    assert [r.ticket_id for r in store.inbox_page("errors")] == ["T0001"]
    assert store.count_unrouted() == 1
    full = store.decisions_for("T0000")[0]
    assert full.total_ms == 10.0 and full.cost_usd == 0.001


def test_disagreement_between_backends(store: Store) -> None:
    store.import_tickets(tickets(2))
    store.record_decisions(
        [
            decision("T0000", "billing", backend="a"),
            decision("T0000", "shipping", backend="b", run="r2"),
        ]
    )
    store.record_decisions(
        [
            decision("T0001", "billing", backend="a"),
            decision("T0001", "billing", backend="b", run="r2"),
        ]
    )
    assert [r.ticket_id for r in store.inbox_page("disagreement")] == ["T0000"]


def test_keyset_paging_walks_every_row_once(store: Store) -> None:
    store.import_tickets(tickets(250))
    seen: list[str] = []
    after: Cursor | None = None
    while True:
        page = store.inbox_page("all", after=after, limit=60)
        if not page:
            break
        seen += [r.ticket_id for r in page]
        after = store.cursor_of(page[-1])
    assert len(seen) == 250 == len(set(seen))
    assert seen[0] == "T0249"  # newest first
    back = store.inbox_page(
        "all", before=store.cursor_of(store.inbox_page("all", limit=100)[-1]), limit=10
    )
    assert [r.ticket_id for r in back] == [f"T{i:04d}" for i in range(160, 150, -1)]


def test_low_confidence_lists_least_sure_unlabelled_first(store: Store) -> None:
    store.import_tickets(tickets(4))
    store.record_decisions(
        [decision(f"T000{i}", confidence=c) for i, c in enumerate([0.9, 0.2, 0.5, 0.1])]
    )
    store.add_label("T0003", "billing")
    order = [r.ticket_id for r in store.inbox_page("low_confidence")]
    assert order == ["T0001", "T0002", "T0000"]
    nxt = store.inbox_page(
        "low_confidence", after=store.cursor_of(store.inbox_page("low_confidence", limit=1)[0])
    )
    assert [r.ticket_id for r in nxt] == ["T0002", "T0000"]


def test_labels_are_append_only_and_undo_restores(store: Store) -> None:
    store.import_tickets(tickets(2), {"T0000": "billing"})
    store.add_label("T0000", "shipping", agent="ann", source="correct")
    store.add_label("T0001", "returns", agent="ann", source="accept")
    assert store.inbox_row("T0000").label == "shipping"  # type: ignore[union-attr]
    undo = store.undo_last_label("ann")
    assert undo is not None and undo.ticket_id == "T0001" and undo.label is None
    assert store.inbox_row("T0001").label is None  # type: ignore[union-attr]
    undo = store.undo_last_label("ann")
    assert undo is not None and undo.label == "billing"
    assert store.inbox_row("T0000").label == "billing"  # type: ignore[union-attr]
    assert store.undo_last_label("ann") is None
    assert store.label_event_count() == 5
    with pytest.raises(StoreError, match="no ticket"):
        store.add_label("nope", "billing")


def test_backend_stats_against_agent_labels(store: Store) -> None:
    store.import_tickets(tickets(4), {"T0000": "billing", "T0001": "billing", "T0002": "shipping"})
    store.record_decisions(
        [
            decision("T0000", "billing", ms=10, cost=0.002),
            decision("T0001", "shipping", ms=20, cost=0.002),
            decision("T0002", "shipping", ms=30, cost=0.002),
            decision("T0003", error="Timeout", ms=99, cost=None),
        ]
    )
    (s,) = store.backend_stats(daily_volume=1000)
    assert (s.n, s.errors, s.labelled) == (4, 1, 3)
    assert s.accuracy == pytest.approx(2 / 3)
    assert s.macro_f1 == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert s.latency_ms["p50"] == pytest.approx(20.0, rel=0.01)
    assert s.latency_ms["p95"] == pytest.approx(30.0, rel=0.01)
    assert s.cost_usd == pytest.approx(0.006)
    assert s.cost_per_1k_usd == pytest.approx(2.0)
    assert s.projected_monthly_usd == pytest.approx(0.002 * 1000 * 30)


def test_runs_resume_and_pending(store: Store) -> None:
    store.import_tickets(tickets(5))
    run = store.open_run("spec", "all")
    assert not run.resumed
    store.record_decisions([decision("T0000", run=run.id), decision("T0001", run=run.id)])
    again = store.open_run("spec", "all")
    assert again.resumed and again.id == run.id
    assert [t.id for _, t in store.pending_in_run(run.id)] == ["T0002", "T0003", "T0004"]
    store.finish_run(run.id)
    assert not store.open_run("spec", "all").resumed


def _recount(store: Store) -> dict[str, tuple[int, int, float, dict[tuple[str, str], int]]]:
    """Statistics recomputed from the raw tables, the slow obvious way."""
    out: dict[str, tuple[int, int, float, dict[tuple[str, str], int]]] = {}
    conn = store.conn
    for backend, n, errors, cost in conn.execute(
        "SELECT backend, count(*), count(error_class), coalesce(sum(cost_usd), 0) FROM decisions GROUP BY backend"
    ):
        pairs: dict[tuple[str, str], int] = {}
        for predicted, truth in conn.execute(
            "SELECT d.label, t.label FROM decisions d JOIN tickets t ON t.id = d.ticket_id"
            " WHERE d.backend = ? AND t.label IS NOT NULL AND d.label IS NOT NULL AND d.id ="
            " (SELECT max(id) FROM decisions WHERE ticket_id = d.ticket_id AND backend = d.backend)",
            (backend,),
        ):
            pairs[(predicted, truth)] = pairs.get((predicted, truth), 0) + 1
        out[backend] = (n, errors, round(cost, 9), pairs)
    return out


def _aggregated(store: Store) -> dict[str, tuple[int, int, float, dict[tuple[str, str], int]]]:
    out = {}
    for backend, n, errors, cost in store.conn.execute(
        "SELECT backend, n, errors, cost_usd FROM backend_totals"
    ):
        pairs = {
            (p, t): c
            for p, t, c in store.conn.execute(
                "SELECT predicted, truth, n FROM label_agreement WHERE backend = ? AND n > 0",
                (backend,),
            )
        }
        out[backend] = (n, errors, round(cost, 9), pairs)
    return out


def test_aggregates_match_a_full_recount_after_random_work(tmp_path: Path) -> None:
    import random

    rng = random.Random(5)
    store = Store(tmp_path / "agg.db")
    ids = [t.id for t in tickets(60)]
    store.import_tickets(tickets(60), {i: rng.choice(["billing", "shipping"]) for i in ids[:10]})
    labels = ["billing", "shipping", "returns"]
    for step in range(400):
        op = rng.random()
        tid = rng.choice(ids)
        if op < 0.5:
            failed = rng.random() < 0.15
            store.record_decisions(
                [
                    decision(
                        tid,
                        None if failed else rng.choice(labels),
                        run=f"r{step}",
                        backend=rng.choice(["a", "b", "c"]),
                        error="Timeout" if failed else None,
                        cost=rng.random() / 1000,
                        ms=rng.uniform(1, 500),
                    )
                ]
            )
        elif op < 0.8:
            store.add_label(
                tid, rng.choice(labels), agent=rng.choice(["ann", "bob"]), source="correct"
            )
        elif op < 0.9:
            store.undo_last_label(rng.choice(["ann", "bob"]))
        else:
            store.import_tickets([], {tid: rng.choice(labels)})
    assert _aggregated(store) == _recount(store)
    for row in store.inbox_page("all", limit=100):
        latest = {
            b: lab
            for b, lab in store.conn.execute(
                "SELECT backend, label FROM latest_decisions WHERE ticket_id = ?", (row.ticket_id,)
            )
        }
        assert row.disagreement == (len({v for v in latest.values() if v}) > 1)


def test_migration_to_v3_backfills_the_aggregates(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    MIGRATIONS[0](conn)
    MIGRATIONS[1](conn)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO tickets (id, text, received_at, label) VALUES ('a', 'x', '2026-01-01T00:00:00+00:00', 'billing')"
    )
    for i, (backend, label, ms) in enumerate(
        [("s", "billing", 10.0), ("s", "shipping", 20.0), ("g", "billing", 900.0)]
    ):
        conn.execute(
            "INSERT INTO decisions (ticket_id, run_id, backend, backend_type, label, total_ms, cost_usd, created_at)"
            " VALUES ('a', ?, ?, 'x', ?, ?, 0.5, '2026-01-01T10:00:00+00:00')",
            (f"r{i}", backend, label, ms),
        )
    conn.commit()
    conn.close()
    with Store(path) as store:
        stats = {s.backend: s for s in store.backend_stats()}
        assert stats["s"].n == 2 and stats["s"].accuracy == 0.0  # latest answer was shipping
        assert stats["g"].accuracy == 1.0
        assert stats["g"].latency_ms["p50"] == pytest.approx(900.0, rel=0.01)
        assert store.cost_timeline() == [
            ("2026-01-01T10", "g", 0.5, 1),
            ("2026-01-01T10", "s", 1.0, 2),
        ]


def test_migration_to_v4_adds_claims_and_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path)
    for migration in MIGRATIONS[:3]:
        migration(conn)
    conn.execute("PRAGMA user_version = 3")
    conn.execute(
        "INSERT INTO tickets (id, text, received_at) VALUES ('a', 'x', '2026-01-01T00:00:00+00:00')"
    )
    conn.execute(
        "INSERT INTO runs (id, backend, selection, status, started_at)"
        " VALUES ('r0', 's', 'all', 'running', '2026-01-01T00:00:00+00:00')"
    )
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION >= 4
        assert store.get_ticket("a").text == "x"  # type: ignore[union-attr]
        assert store.open_run("s", "all").id == "r0"  # the unfinished run still resumes
        assert store.claim_holders() == {} and store.get_meta("demo") is None
        claimed = store.claim_tickets("h:1:x", "r0", ["a"], lease_s=60)
        assert [t.id for _, t in claimed.tickets] == ["a"]
        assert not store.finish_run("r0")  # a claim in the run keeps it running
        store.record_decisions([decision("a", run="r0")], owner="h:1:x")
        assert store.finish_run("r0")
