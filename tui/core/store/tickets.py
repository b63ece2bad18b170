"""Tickets: the atomic import with its conflict check, and the ticket readers."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, islice, repeat
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from tui.core.gc_pause import cyclic_gc_paused
from tui.core.models import MAX_LABEL_CHARS, STORED, Ticket, check_label_name, utcnow
from tui.core.store.connection import Conn, Row, StoreBase
from tui.core.store.decisions import relabel
from tui.core.store.errors import StoreError
from tui.core.store.pg import PgConnection, reconnecting
from tui.core.store.values import from_iso, iso
from tui.core.ticket_rows import PlainColumns, TicketRows

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


_SQLITE_COLUMNS = (
    "INSERT OR IGNORE INTO tickets (id, subject, text, customer, channel, created_at,"
    " received_at, meta, source, label, label_source) VALUES "
)


def _sqlite_values(row: int) -> str:
    """The VALUES tuple of the `row`-th ticket (from 0) of one `_SQLITE_INSERT` statement.

    Parameters 1 and 2 are the run's `received_at` and the import's `source`, bound once per
    statement and named by number in every row; the ticket's own eight follow, from
    `2 + 8 * row + 1`, its label the eighth (named by number, since label_source uses it too).
    """
    first = 8 * row + 3
    p = [f"?{first + i}" for i in range(8)]
    return (
        f"({p[0]}, {p[1]}, {p[2]}, NULLIF({p[3]}, 0), NULLIF({p[4]}, 0), NULLIF({p[5]}, 0),"
        f" ?1, {p[6]}, ?2, NULLIF({p[7]}, 0), CASE WHEN {p[7]} = 0 THEN NULL ELSE 'import' END)"
    )


_ROWS_PER_INSERT = 50
"""Tickets per INSERT statement of an import on SQLite: executemany then steps a statement,
binds its parameters and hands the GIL back and forth once per 50 tickets instead of once per
ticket, a quarter of the insert's CPU time; the statement stays well under SQLite's limit of
32,766 parameters."""
_SQLITE_INSERT = _SQLITE_COLUMNS + ", ".join(map(_sqlite_values, range(_ROWS_PER_INSERT)))
_SQLITE_INSERT_ONE = _SQLITE_COLUMNS + _sqlite_values(0)
"""The import's INSERTs on SQLite, for the parameters of `_sqlite_params`: an absent value
comes as the integer 0 and NULLIF makes it NULL. A None parameter is the one value sqlite3
does not bind directly (it looks for an adapter first: a tuple built, a dict and two attribute
look-ups), three of them in the common row, 18 % of the insert; a 0 binds as fast as a string.
Every column written so is text or NULL, and in SQL no text equals the integer 0 (not even
'0'). The `received_at` and `source` shared by the statement's tickets are bound once for
all of them (each bind copies its string): 8 parameters a ticket instead of 10."""

_TICKET_VALUES = itemgetter("id", "subject", "text", "customer", "channel", "created_at", "meta")
"""A ticket's own stored values, read from its field dict in one call (a `Ticket`'s fields
live in its `__dict__`): a fifth of the parameters' time went to attribute look-ups."""


def _sqlite_insert(
    conn: Conn, tickets: Sequence[Ticket], labels: Mapping[str, str], source: str
) -> None:
    """Insert the tickets in their order: each run of tickets whose `received_at` is written
    alike (a file's tickets share one) `_ROWS_PER_INSERT` a statement, the run's rest one each."""
    for stamp, chunks in _merged_runs(_value_runs(tickets, labels)):
        rest: list[Any] = []
        conn.executemany(_SQLITE_INSERT, _statements(chunks, stamp, source, rest))
        conn.executemany(
            _SQLITE_INSERT_ONE, ([stamp, source, *rest[i : i + 8]] for i in range(0, len(rest), 8))
        )


_Run = tuple[str, Iterable[list[Any]]]
"""A run of tickets written with one `received_at`: that string, and their values in chunks,
eight a ticket in `_sqlite_values`' order, made as the insert takes them."""


def _value_runs(tickets: Sequence[Ticket], labels: Mapping[str, str]) -> Iterator[_Run]:
    """The tickets' runs, in order. A parsed file's plain blocks (`TicketRows`) go from their
    columns straight to the values, with no `Ticket` built; other tickets one by one."""
    if not isinstance(tickets, TicketRows):
        yield from _ticket_runs(tickets, labels)
        return
    for part in tickets.parts():
        if isinstance(part, PlainColumns):
            yield part.received_at.isoformat(), _column_values(part, labels)
        else:
            yield from _ticket_runs(part, labels)


def _merged_runs(runs: Iterator[_Run]) -> Iterator[_Run]:
    """Adjacent runs of one stamp as one, so that a file's blocks share full statements."""
    current: _Run | None = None
    for run in runs:
        if current is not None and current[0] == run[0]:
            current = (current[0], chain(current[1], run[1]))
            continue
        if current is not None:
            yield current
        current = run
    if current is not None:
        yield current


def _statements(
    chunks: Iterable[list[Any]], stamp: str, source: str, rest: list[Any]
) -> Iterator[list[Any]]:
    """The parameters of `_SQLITE_INSERT`s, `_ROWS_PER_INSERT` tickets' values each after the
    shared `stamp` and `source`, sliced from the chunks of values; the values of the tickets
    left over (fewer than a statement's) are put in `rest` once the last chunk is read."""
    take = 8 * _ROWS_PER_INSERT
    left: list[Any] = []
    for chunk in chunks:
        values = left + chunk if left else chunk
        whole = len(values) - len(values) % take
        for start in range(0, whole, take):
            params: list[Any] = [stamp, source]
            params += values[start : start + take]
            yield params
        left = values[whole:]
    rest += left


def _column_values(block: PlainColumns, labels: Mapping[str, str]) -> list[list[Any]]:
    """A plain block's values as one chunk: no `created_at` (0), no metadata ("{}"), the label
    the caller gives for the id (its `labels` may keep fewer than the file had)."""
    rows = zip(
        block.ids,
        block.subjects,
        block.texts,
        [0 if customer is None else customer for customer in block.customers],
        [0 if channel is None else channel for channel in block.channels],
        repeat(0),
        repeat("{}"),
        map(labels.get, block.ids, repeat(0)),
        strict=False,  # the two repeats are endless; the columns are of one length
    )
    return [list(chain.from_iterable(rows))]


def _ticket_runs(tickets: Sequence[Ticket], labels: Mapping[str, str]) -> Iterator[_Run]:
    for stamp, run in _stamp_runs(tickets):
        yield stamp, _ticket_values(run, labels)


def _stamp_runs(tickets: Sequence[Ticket]) -> Iterator[tuple[str, Sequence[Ticket]]]:
    """The tickets in runs that share one written `received_at`, each with that string.

    A file's tickets hold one datetime object, so the usual run is the whole list and costs
    one identity test a ticket; another object is compared by its string, as it is stored.
    """
    stamps = list(map(_received_at, tickets))
    start = 0
    while start < len(stamps):
        first = stamps[start]
        stamp = first.isoformat()
        end = start + 1
        for other in islice(stamps, end, None):
            if other is not first and other.isoformat() != stamp:
                break
            end += 1
        yield stamp, tickets[start:end]
        start = end


_received_at = attrgetter("received_at")


def _labels_clean(labels: Collection[Any]) -> bool:
    """Whether every label certainly passes `check_label_name` unchanged, tested a column at a
    time: strings, each its own stripped self, non-empty, within the limit, and all printable
    (then none holds a forbidden character). False sends them to the one-by-one check, which
    words the reason; a printable-only test may send it labels that pass there too."""
    if not labels:
        return True
    values = list(labels)
    return (
        set(map(type, values)) == {str}
        and list(map(str.strip, values)) == values
        and min(map(len, values)) > 0
        and max(map(len, values)) <= MAX_LABEL_CHARS
        and "".join(values).isprintable()
    )


def _ticket_ids(tickets: Sequence[Ticket]) -> Iterable[str]:
    """The tickets' ids in order; a parsed file's without building its plain blocks' tickets."""
    return tickets.ids() if isinstance(tickets, TicketRows) else map(_ticket_id, tickets)


_ticket_id = attrgetter("id")


def _ticket_values(tickets: Sequence[Ticket], labels: Mapping[str, str]) -> Iterator[list[Any]]:
    """The values of `Ticket`s, read from each one's field dict, in chunks of a few thousand
    tickets (a million tickets' values at once would be 70 MB more)."""
    get_label = labels.get
    values = _TICKET_VALUES
    dumps = json.dumps
    for start in range(0, len(tickets), _TICKETS_PER_CHUNK):
        chunk: list[Any] = []
        extend = chunk.extend
        for t in tickets[start : start + _TICKETS_PER_CHUNK]:
            ticket_id, subject, text, customer, channel, created, meta = values(t.__dict__)
            label = get_label(ticket_id)
            extend(
                (
                    ticket_id,
                    subject,
                    text,
                    0 if customer is None else customer,
                    0 if channel is None else channel,
                    0 if created is None else created.isoformat(),
                    dumps(meta, ensure_ascii=False, default=str) if meta else "{}",
                    0 if label is None else label,
                )
            )
        yield chunk


_TICKETS_PER_CHUNK = 5000


def _pg_rows(
    tickets: Sequence[Ticket], labels: Mapping[str, str], source: str
) -> list[tuple[Any, ...]]:
    """The `_TICKET_COLUMNS` values of each ticket, for PostgreSQL's COPY."""
    stamps: dict[datetime, str | None] = {}
    return [
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


def _check_tickets_exist(conn: Conn, ids: list[str]) -> None:
    """Refuse label events for tickets that are not stored, as SQLite's foreign key would
    (the import writes without it: `TicketsMixin._import_checked`).

    Raises:
        sqlite3.IntegrityError: Some id names no ticket; the caller's transaction rolls back.
    """
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found = conn.execute(
            f"SELECT count(*) FROM tickets WHERE id IN ({marks})", chunk
        ).fetchone()[0]
        if found != len(set(chunk)):
            raise sqlite3.IntegrityError("FOREIGN KEY constraint failed")


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
        for tid, lab in () if _labels_clean(labels.values()) else labels.items():
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
        the rows of a large file are hundreds of thousands of tuples that all stay alive.

        SQLite's foreign keys are not enforced in this transaction: the tickets reference
        nothing, the label events copied from the inserted rows reference those rows, and
        `_record_labels` checks the ticket of any other event itself."""
        with self._foreign_keys_unchecked(), self._write() as conn:
            # Insert first, inside the transaction, and compare only the ids that were already
            # there: a new file (the usual case) then costs no look-up at all, and a conflict
            # still writes nothing, since raising rolls the whole transaction back.
            newest = int(conn.execute("SELECT coalesce(max(seq), 0) FROM tickets").fetchone()[0])
            before = conn.total_changes
            if isinstance(conn, PgConnection):  # PostgreSQL: COPY, not a statement a row
                rows = _pg_rows(tickets, labels, source)
                conn.copy_insert_ignore("tickets", _TICKET_COLUMNS, rows)
            else:
                _sqlite_insert(conn, tickets, labels, source)
            inserted = conn.total_changes - before
            wanted: list[str] = []
            if newest == 0:
                pass  # the table was empty: nothing stored to compare with or to relabel
            elif inserted < len(tickets):
                wanted = [*_ticket_ids(tickets), *labels]
            elif labels:  # labels may name stored tickets the list does not repeat
                file_ids = set(_ticket_ids(tickets))
                wanted = [tid for tid in labels if tid not in file_ids]
            stored = self._stored_content(conn, list(dict.fromkeys(wanted)), newest)
            if stored:
                for t in tickets:
                    found = stored.get(t.id)
                    if found is not None and found[0] != _content(t):
                        problems.append((t.id, f"id {t.id} already imported with other content"))
            if problems:
                from tui.core.ingest import RowError

                errors = [RowError(line=lines.get(tid, 0), reason=why) for tid, why in problems]
                errors.sort(key=lambda e: e.line)
                raise ImportRejected(source, errors)
            recorded = self._record_labels(conn, labels, stored, newest) if labels else 0
        if inserted >= ANALYZE_AFTER and self.engine == "postgresql":
            self.analyze()
        return ImportResult(inserted, len(tickets) - inserted, recorded)

    @staticmethod
    def _record_labels(
        conn: Conn,
        labels: dict[str, str],
        stored: dict[str, tuple[tuple[Any, ...], str | None]],
        newest: int,
    ) -> int:
        """The label events of an import, and the relabelling of the stored tickets whose
        label it changes; returns how many labels it recorded.

        The tickets this import inserted (`seq > newest`) got their label with the INSERT.
        When those are all the file's labels but the stored tickets' unchanged ones (a new
        file, the usual case), their events are copied from the rows in one statement, in
        the file's order. Otherwise every event goes through Python in the file's order:
        a stored ticket's changed label, and one for an id neither stored nor inserted now
        (which the foreign key refuses, rolling the import back).
        """
        now = iso(utcnow())
        new_labelled = conn.execute(
            "SELECT count(*) FROM tickets WHERE seq > ? AND label IS NOT NULL", (newest,)
        ).fetchone()[0]
        unchanged = 0
        for tid, lab in labels.items() if stored else ():
            found = stored.get(tid)
            unchanged += found is not None and found[1] == lab
        if new_labelled + unchanged == len(labels):
            conn.execute(
                "INSERT INTO label_events (ticket_id, label, agent, source, created_at)"
                " SELECT id, label, 'import', 'import', ? FROM tickets"
                " WHERE seq > ? AND label IS NOT NULL ORDER BY seq",
                (now, newest),
            )
            return int(new_labelled)
        changed = [
            (tid, lab) for tid, lab in labels.items() if tid not in stored or stored[tid][1] != lab
        ]
        if not isinstance(conn, PgConnection):  # PostgreSQL enforces the foreign key itself
            _check_tickets_exist(conn, [tid for tid, _ in changed if tid not in stored])
        for tid, lab in changed:
            if tid in stored:  # new tickets have no decisions to re-score
                relabel(conn, tid, stored[tid][1], lab)
        conn.executemany(
            "INSERT INTO label_events (ticket_id, label, agent, source, created_at)"
            " VALUES (?, ?, 'import', 'import', ?)",
            [(tid, lab, now) for tid, lab in changed],
        )
        # New tickets got their label with the INSERT; only stored ones change here.
        conn.executemany(
            "UPDATE tickets SET label = ?, label_source = 'import' WHERE id = ?",
            [(lab, tid) for tid, lab in changed if tid in stored],
        )
        return len(changed)

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
