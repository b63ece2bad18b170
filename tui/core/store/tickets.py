"""Tickets: the atomic import with its conflict check, and the ticket readers."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tui.core.gc_pause import cyclic_gc_paused
from tui.core.models import STORED, Ticket, check_label_name, utcnow
from tui.core.store.connection import Conn, Row, StoreBase
from tui.core.store.decisions import relabel
from tui.core.store.errors import StoreError
from tui.core.store.pg import PgConnection, reconnecting
from tui.core.store.values import from_iso, iso

if TYPE_CHECKING:
    from tui.core.ingest import RowError


class ImportRejected(StoreError):
    """An import was refused whole: some tickets conflict with ones already stored (same id,
    other content) or carry an unusable label. Nothing was written.

    `errors` has one `RowError` per offending ticket, with the line its record starts on when
    the caller passed `lines` (0 otherwise), so every importer (CLI, watch folder, `eval
    --store`) lists them exactly like the parser's own row errors: `file:line: reason`.
    """

    def __init__(self, source: str, errors: list[RowError]) -> None:
        self.source = source
        self.errors = errors
        first = errors[0]
        where = f"{source}:{first.line}" if first.line else (source or "import")
        more = f" ({len(errors)} bad rows)" if len(errors) > 1 else ""
        super().__init__(f"{where}: {first.reason}{more}; nothing imported from this file")


CONTENT_COLUMNS = ("subject", "text", "customer", "channel", "created_at")
"""What makes two tickets with one id the same ticket when a later file repeats the id. The
routed content and its sender, not `meta`: metadata columns (status, assignee) change from one
CRM export to the next, while a changed text under an old id means the file is not what was
imported before, and keeping the old text while taking the new label would mislabel it."""


ANALYZE_AFTER = 10_000
"""Tickets one import adds past which PostgreSQL's planner statistics are refreshed at once
(autovacuum would take its time; until then the inbox's index plans are not chosen)."""

_TICKET_COLUMNS = (
    "id",
    "subject",
    "text",
    "customer",
    "channel",
    "created_at",
    "received_at",
    "meta",
    "source",
    "label",
    "label_source",
)


@dataclass(frozen=True, slots=True)
class ImportResult:
    inserted: int
    duplicates: int
    labels_recorded: int


def _content(ticket: Ticket) -> tuple[Any, ...]:
    """A ticket's `CONTENT_COLUMNS` values; dates compare as instants, not as strings."""
    return (ticket.subject, ticket.text, ticket.customer, ticket.channel, ticket.created_at)


def ticket_from_row(row: Row) -> Ticket:
    """A `tickets` row as a Ticket: shared by the readers here, runs and claims."""
    # STORED: an id an older version accepted (a newline in it) must still load.
    return Ticket.model_validate(
        {
            "id": row["id"],
            "text": row["text"],
            "subject": row["subject"],
            "customer": row["customer"],
            "channel": row["channel"],
            "created_at": from_iso(row["created_at"]),
            "received_at": from_iso(row["received_at"]) or utcnow(),
            "meta": json.loads(row["meta"] or "{}"),
        },
        context=STORED,
    )


class TicketsMixin(StoreBase):
    """Importing tickets and reading them back."""

    @reconnecting
    def import_tickets(
        self,
        tickets: Sequence[Ticket],
        labels: dict[str, str] | None = None,
        *,
        source: str = "",
        lines: Mapping[str, int] | None = None,
    ) -> ImportResult:
        """Insert tickets and their labels, atomically: all of them or, on a problem, none.

        An id already present with the same content (`CONTENT_COLUMNS`) is skipped, and its
        label, when the file gives a different one, is recorded as an `import` label event: a
        re-export whose label column was corrected upstream relabels, visibly in the history.
        An id already present with other content is a conflict, as a repeated id with other
        content is within one file: the whole import is refused with `ImportRejected`.

        Args:
            tickets: The file's tickets.
            labels: Ticket id -> agent label; each must pass `check_label_name`.
            source: The file's name, for the tickets' `source` column and error lines.
            lines: Ticket id -> the line its record starts on, for the error lines.

        Raises:
            ImportRejected: Conflicting ids or unusable labels; nothing was written.
        """
        labels = labels or {}
        lines = lines or {}
        problems: list[tuple[str, str]] = []
        for tid, lab in labels.items():
            try:
                if check_label_name(lab) != lab:
                    raise ValueError("label has surrounding whitespace")
            except ValueError as exc:
                problems.append((tid, f"field 'label': {exc}"))
        with cyclic_gc_paused():
            return self._import_checked(tickets, labels, lines, source, problems)

    def _import_checked(
        self,
        tickets: Sequence[Ticket],
        labels: dict[str, str],
        lines: Mapping[str, int],
        source: str,
        problems: list[tuple[str, str]],
    ) -> ImportResult:
        """`import_tickets` once the labels are checked, with the cycle collector paused:
        the rows of a large file are hundreds of thousands of tuples that all stay alive."""
        stamps: dict[datetime, str | None] = {}
        rows = [
            (
                t.id,
                t.subject,
                t.text,
                t.customer,
                t.channel,
                iso(t.created_at),
                stamps.get(t.received_at) or stamps.setdefault(t.received_at, iso(t.received_at)),
                json.dumps(t.meta, ensure_ascii=False, default=str) if t.meta else "{}",
                source,
                labels.get(t.id),
                "import" if t.id in labels else None,
            )
            for t in tickets
        ]
        with self._write() as conn:
            # Insert first, inside the transaction, and compare only the ids that were already
            # there: a new file (the usual case) then costs no look-up at all, and a conflict
            # still writes nothing, since raising rolls the whole transaction back.
            newest = int(conn.execute("SELECT coalesce(max(seq), 0) FROM tickets").fetchone()[0])
            before = conn.total_changes
            if isinstance(conn, PgConnection):  # PostgreSQL: COPY, not a statement a row
                conn.copy_insert_ignore("tickets", _TICKET_COLUMNS, rows)
            else:
                conn.executemany(
                    "INSERT OR IGNORE INTO tickets (id, subject, text, customer, channel,"
                    " created_at, received_at, meta, source, label, label_source)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            inserted = conn.total_changes - before
            file_ids = {t.id for t in tickets}
            # Labels may name stored tickets the list does not repeat: look those up too.
            wanted = [tid for tid in labels if tid not in file_ids]
            if inserted < len(rows):
                wanted.extend(t.id for t in tickets)
            stored = self._stored_content(conn, list(dict.fromkeys(wanted)), newest)
            for t in tickets:
                found = stored.get(t.id)
                if found is not None and found[0] != _content(t):
                    problems.append((t.id, f"id {t.id} already imported with other content"))
            if problems:
                from tui.core.ingest import RowError

                errors = [RowError(line=lines.get(tid, 0), reason=why) for tid, why in problems]
                errors.sort(key=lambda e: e.line)
                raise ImportRejected(source, errors)
            existing = {tid: found[1] for tid, found in stored.items()}
            recorded = 0
            if labels:
                now = iso(utcnow())
                changed = [(tid, lab) for tid, lab in labels.items() if existing.get(tid) != lab]
                for tid, lab in changed:
                    if tid in existing:  # new tickets have no decisions to re-score
                        relabel(conn, tid, existing[tid], lab)
                conn.executemany(
                    "INSERT INTO label_events (ticket_id, label, agent, source, created_at)"
                    " VALUES (?, ?, 'import', 'import', ?)",
                    [(tid, lab, now) for tid, lab in changed],
                )
                # New tickets got their label with the INSERT; only stored ones change here.
                conn.executemany(
                    "UPDATE tickets SET label = ?, label_source = 'import' WHERE id = ?",
                    [(lab, tid) for tid, lab in changed if tid in existing or tid not in file_ids],
                )
                recorded = len(changed)
        if inserted >= ANALYZE_AFTER and self.engine == "postgresql":
            self.analyze()
        return ImportResult(inserted, len(rows) - inserted, recorded)

    @staticmethod
    def _stored_content(
        conn: Conn, ids: list[str], newest: int
    ) -> dict[str, tuple[tuple[Any, ...], str | None]]:
        """Ticket id -> (its `CONTENT_COLUMNS` values, its current label) for the ids stored
        before this import (`seq <= newest`)."""
        found: dict[str, tuple[tuple[Any, ...], str | None]] = {}
        columns = ", ".join(CONTENT_COLUMNS)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for tid, label, subject, text, customer, channel, created in conn.execute(
                f"SELECT id, label, {columns} FROM tickets WHERE id IN ({marks}) AND seq <= ?",
                [*chunk, newest],
            ):
                found[tid] = ((subject, text, customer, channel, from_iso(created)), label)
        return found

    def get_ticket(self, ticket_id: str) -> Ticket | None:
        rows = self._read("SELECT * FROM tickets WHERE id = ?", (ticket_id,))
        return ticket_from_row(rows[0]) if rows else None

    def get_tickets(self, ids: Sequence[str]) -> list[Ticket]:
        out: list[Ticket] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._read(f"SELECT * FROM tickets WHERE id IN ({marks}) ORDER BY seq", chunk)
            out.extend(ticket_from_row(r) for r in rows)
        return out

    def ticket_count(self) -> int:
        return int(self._read("SELECT count(*) FROM tickets")[0][0])

    def max_seq(self) -> int:
        return int(self._read("SELECT coalesce(max(seq), 0) FROM tickets")[0][0])

    def unrouted_tickets(self, *, after_seq: int = 0, limit: int = 500) -> list[tuple[int, Ticket]]:
        rows = self._read(
            "SELECT * FROM tickets WHERE decision_id IS NULL AND seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [(r["seq"], ticket_from_row(r)) for r in rows]

    def count_unrouted(self) -> int:
        return int(self._read("SELECT count(*) FROM tickets WHERE decision_id IS NULL")[0][0])
