"""Moving house: copying a SQLite database into PostgreSQL (`triagedesk db copy --to URL`).

Every table is copied row for row, keys included (a decision keeps its id, so each ticket's
`decision_id` and each push's `decision_id` still point at it), in foreign-key order, in
chunks of `CHUNK` rows each committed on its own. A copy that stops (Ctrl-C, a lost
connection) is resumed by running it again: tables keyed by a number continue after the
highest key already copied, the others are sent again and rows already there are ignored.
At the end every table's row count is compared with the source's; any difference is an
error naming the table. `claims` and `agent_leases` are not copied: they are leases of
processes on the old database, void on the new one.

The destination must be empty or a copy of this same source (the `meta` key `copied_from`
says which): copying into a database that already holds other tickets would merge two
queues silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tui.core.store.errors import StoreError

if TYPE_CHECKING:
    from tui.core.store import Store

CHUNK = 5000
TABLES: tuple[tuple[str, str | None], ...] = (
    ("tickets", "seq"),
    ("runs", None),
    ("decisions", "id"),
    ("label_events", "id"),
    ("latest_decisions", None),
    ("backend_totals", None),
    ("label_agreement", None),
    ("latency_histogram", None),
    ("cost_by_hour", None),
    ("duplicate_calls", "id"),
    ("meta", None),
    ("shadow_decisions", "id"),
    ("shadow_skips", None),
    ("promotions", "id"),
    ("trained_models", None),
    ("trained_texts", None),
    ("trained_examples", None),
    ("helpdesk_cursors", None),
    ("helpdesk_tickets", None),
    ("helpdesk_pushes", "id"),
)
"""Every table but `claims` and `agent_leases`, parents before children, with its integer key
(None: none)."""
COPY_MARK = "copied_from"


@dataclass(frozen=True, slots=True)
class CopyResult:
    counts: dict[str, int]
    """Rows per table, equal in source and destination."""
    sent: int
    """Rows sent this time (fewer than the total when a copy was resumed)."""


def copy_database(
    source: Store, dest: Store, *, on_table: Callable[[str, int], None] | None = None
) -> CopyResult:
    """Copy `source` (SQLite) into `dest` (any engine, migrated to this version), resumably.

    Raises:
        StoreError: `dest` holds another database's tickets, or a count differs at the end.
    """
    if source.engine != "sqlite":
        raise StoreError(f"{source.path}: the source of a copy is a SQLite database file")
    identity = f"{source.path}"
    mark = dest.get_meta(COPY_MARK)
    if mark is None and dest.ticket_count():
        raise StoreError(
            f"{dest.path}: already holds {dest.ticket_count()} tickets of another database;"
            " copy into an empty database"
        )
    if mark is not None and mark != identity:
        raise StoreError(f"{dest.path}: is a copy of {mark}, not of {identity}")
    dest.set_meta(COPY_MARK, identity)
    sent = 0
    for table, key in TABLES:
        columns = [r[1] for r in source.conn.execute(f"PRAGMA table_info({table})")]
        names = ", ".join(columns)
        marks = ", ".join("?" * len(columns))
        insert = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})"
        after = 0
        if key is not None:
            after = int(dest.query(f"SELECT coalesce(max({key}), 0) FROM {table}")[0][0])
        where = f" WHERE {key} > ? ORDER BY {key}" if key is not None else ""
        params: tuple[Any, ...] = (after,) if key is not None else ()
        with source._lock:
            cursor = source.conn.execute(f"SELECT {names} FROM {table}{where}", params)
            while True:
                rows = cursor.fetchmany(CHUNK)
                if not rows:
                    break
                with dest._write() as conn:
                    conn.executemany(insert, rows)
                sent += len(rows)
                if on_table is not None:
                    on_table(table, len(rows))
    if dest.engine == "postgresql":
        with dest._write() as conn:
            for table, key in TABLES:
                if key is not None:
                    conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{key}'),"
                        f" (SELECT coalesce(max({key}), 0) + 1 FROM {table}), false)"
                    )
    dest.analyze()
    counts: dict[str, int] = {}
    for table, _ in TABLES:
        have = int(source.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        got = int(dest.query(f"SELECT count(*) FROM {table}")[0][0])
        if table == "meta":
            have += 0 if source.get_meta(COPY_MARK) else 1  # the copy's own mark
        if have != got:
            raise StoreError(
                f"{dest.path}: table {table} has {got} rows, the source {have};"
                " run the copy again to resume"
            )
        counts[table] = got
    return CopyResult(counts, sent)


__all__ = ["CopyResult", "copy_database"]
