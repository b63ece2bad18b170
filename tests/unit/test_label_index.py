"""The labels index (migration LABEL_INDEX): an older database gains it without losing a row,
and the taxonomy's distinct-labels read seeks it instead of reading the labelled tickets.

Real SQLite files and, through `db_target`/`pg_url`, a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import tui.core.store.migrations as migrations
from tui.core.database_url import PgTarget
from tui.core.models import Decision, Ticket, label_problem
from tui.core.store import MIGRATIONS, SCHEMA_VERSION, Store
from tui.core.store.labels import DISTINCT_LABELS
from tui.core.store.migrations import LABEL_INDEX
from tui.core.store.pg import translate

BEFORE = MIGRATIONS.index(LABEL_INDEX)
"""The schema version a database has before the labels index."""

LABELS = ["billing", "shipping", "Billing", "é-accents", "", "billing"]
"""Cycled over the labelled tickets: mixed case, non-ASCII, and the empty label an older
version could write (unusable: the taxonomy skips it, the check counts it)."""


def fill(store: Store, n: int = 60) -> None:
    tickets = [Ticket(id=f"T{i:03d}", text=f"ticket {i}") for i in range(n)]
    store.import_tickets(tickets)
    store.record_decisions(
        [
            Decision(ticket_id=t.id, run_id="r", backend="b", backend_type="x", label="billing")
            for t in tickets
        ]
    )


def set_labels(conn: sqlite3.Connection | object, n: int = 60) -> None:
    """Labels written straight into the table, as older versions did (the empty one too)."""
    for i in range(0, n, 2):  # every other ticket labelled
        conn.execute(  # type: ignore[attr-defined]
            "UPDATE tickets SET label = ?, label_source = 'cli' WHERE id = ?",
            (LABELS[(i // 2) % len(LABELS)], f"T{i:03d}"),
        )


def expected_labels(n: int = 60) -> list[str]:
    return sorted({LABELS[(i // 2) % len(LABELS)] for i in range(0, n, 2)})


def empty_label_count(n: int = 60) -> int:
    return sum(1 for i in range(0, n, 2) if LABELS[(i // 2) % len(LABELS)] == "")


@pytest.fixture
def older_schema(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """While active, `Store` migrates only up to the version before the labels index."""
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:BEFORE])
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", BEFORE)
    yield
    monkeypatch.undo()


def counts(store: Store) -> tuple[int, int, int]:
    rows = store.query(
        "SELECT (SELECT count(*) FROM tickets), (SELECT count(label) FROM tickets),"
        " (SELECT count(*) FROM decisions)"
    )
    return (int(rows[0][0]), int(rows[0][1]), int(rows[0][2]))


def test_an_older_sqlite_database_gains_the_index_and_keeps_every_row(
    tmp_path: Path, older_schema: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    with Store(path) as old:
        assert old.schema_version == BEFORE
        fill(old)
    conn = sqlite3.connect(path)
    set_labels(conn)
    conn.commit()
    assert conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'ix_tickets_label'"
    ).fetchone() == (0,)
    conn.close()
    monkeypatch.undo()  # this version's migrations again
    with Store(path) as store:
        assert store.opened_at_version == BEFORE and store.schema_version == SCHEMA_VERSION
        assert counts(store) == (60, 30, 60)
        names = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "ix_tickets_label" in names and "ix_tickets_labelled" in names
        assert store.current_labels() == expected_labels()
        assert store.known_labels() == [label for label in expected_labels() if label]
        assert store.unusable_labels() == {"": (str(label_problem("")), empty_label_count())}


def plan(conn: sqlite3.Connection, sql: str, params: tuple[object, ...] = ()) -> list[str]:
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


def test_the_distinct_labels_seek_the_label_index_and_never_scan_tickets(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with Store(path) as store:
        fill(store)
    conn = sqlite3.connect(path)
    for sql, params in (
        (DISTINCT_LABELS, ()),
        ("SELECT count(*) FROM tickets WHERE label = ?", ("",)),
    ):
        steps = [s for s in plan(conn, sql, params) if s.startswith(("SEARCH", "SCAN t"))]
        assert steps, plan(conn, sql, params)
        for step in steps:
            assert step.startswith("SEARCH") and "COVERING INDEX ix_tickets_label" in step, steps
    conn.close()


def test_the_labels_read_the_same_on_both_engines(db_target: Path | PgTarget) -> None:
    """Byte order on both (PostgreSQL's text columns are `COLLATE "C"`), the recursion ends
    on an empty table and on a table with no label."""
    with Store(db_target) as store:
        assert store.current_labels() == []
        fill(store)
        assert store.current_labels() == [] and store.unusable_labels() == {}
        with store._write() as conn:
            set_labels(conn)
        assert store.current_labels() == expected_labels()
        assert store.unusable_labels() == {"": (str(label_problem("")), empty_label_count())}


def test_an_older_postgresql_database_gains_the_index_and_keeps_every_row(
    pg_url: str, older_schema: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = PgTarget(pg_url)
    with Store(target) as old:
        assert old.schema_version == BEFORE
        fill(old)
        with old._write() as conn:
            set_labels(conn)
    monkeypatch.undo()
    with Store(target) as store:
        assert store.opened_at_version == BEFORE and store.schema_version == SCHEMA_VERSION
        assert counts(store) == (60, 30, 60)
        assert store.current_labels() == expected_labels()
    import psycopg

    with psycopg.connect(pg_url) as conn:
        assert conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_tickets_label'"
        ).fetchone() == (
            "CREATE INDEX ix_tickets_label ON public.tickets USING btree (label)"
            " WHERE (label IS NOT NULL)",
        )
        # 60 rows are one page, where a sequential scan is cheapest: ask whether the plan
        # can seek the index at all
        conn.execute("SET enable_seqscan = off")
        text, _ = translate(DISTINCT_LABELS)
        steps = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {text}"))
        assert "ix_tickets_label" in steps and "Seq Scan on tickets" not in steps, steps
