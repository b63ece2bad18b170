"""Facts about the database itself: the `meta` table, a read-only probe of a file, and the
integrity check."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.core.store.connection import StoreBase
from tui.core.store.errors import StoreError


@dataclass(frozen=True, slots=True)
class DatabaseProbe:
    """What a database file holds, read without changing it (see `probe_database`)."""

    tickets: int
    """Tickets stored."""
    demo_tickets: int
    """Tickets the demo generated (source `demo`)."""
    other_rows: int
    """Label events, decisions and runs: anything but the tickets themselves."""
    marked_demo: bool
    """The database carries the demo's mark (`meta` key `demo`)."""


def probe_database(path: Path) -> DatabaseProbe | None:
    """Look into a database file read-only: no migration, no WAL switch, nothing created.
    None when no file is there.

    Raises:
        StoreError: The file is not a SQLite database, or cannot be read.
    """
    if not path.exists() and not path.is_symlink():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{path}: cannot read: {exc}") from None
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return DatabaseProbe(0, 0, 0, marked_demo=False)
        if "tickets" not in tables:
            raise StoreError(f"{path}: not a triagedesk database")
        tickets, demo = conn.execute(
            "SELECT count(*), count(CASE WHEN source = 'demo' THEN 1 END) FROM tickets"
        ).fetchone()
        other = sum(
            int(conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0])
            for name in ("label_events", "decisions", "runs")
            if name in tables
        )
        marked = "meta" in tables and bool(
            conn.execute("SELECT 1 FROM meta WHERE key = 'demo'").fetchone()
        )
        return DatabaseProbe(int(tickets), int(demo), other, marked_demo=marked)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a triagedesk database: {exc}") from None
    finally:
        conn.close()


class MetaMixin(StoreBase):
    """The `meta` key-value table and the integrity check."""

    def set_meta(self, key: str, value: str) -> None:
        """Record a fact about the database itself (e.g. `demo`: it is a demo database)."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows (as tuples) of one read-only statement, on either engine: for scripts,
        checks and the conformance tests. Written as the store writes its SQL (`?`
        placeholders), it is translated on PostgreSQL (`tui.core.store.pg.translate`)."""
        return [tuple(row) for row in self._read(sql, params)]

    def integrity_ok(self) -> bool:
        """SQLite's `integrity_check`; a PostgreSQL server checks its own pages (checksums,
        WAL), so there it is whether the server answers."""
        if self.engine == "postgresql":
            return bool(self._read("SELECT 1")[0][0] == 1)
        return bool(self._read("PRAGMA integrity_check")[0][0] == "ok")
