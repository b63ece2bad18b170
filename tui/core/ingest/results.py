"""What parsing one import file yields: the tickets, the per-record errors, and the two errors.

Every failure is an `IngestError` (the file as a whole) or a `RowError` (one record); the
`Collector` adds tickets while enforcing SPEC's one-id-one-ticket rule within a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, field_validator

from tui.core.models import Ticket, utcnow
from tui.core.safe_text import printable
from tui.core.ticket_rows import TicketRows

Format = Literal["jsonl", "csv", "eml", "mbox"]


class IngestError(Exception):
    """The whole file is unusable (unreadable, not UTF-8, unknown format); the message names it.

    The message is escaped and capped here, once for every caller: it is printed, written to
    reports and shown in the TUI, and may carry a file's name or a piece of its content.
    """

    def __init__(self, message: str) -> None:
        super().__init__(printable(message, 500))


class RowError(BaseModel):
    """One record that could not become a ticket."""

    line: int
    """1-based physical line where the record starts (eml: 1; mbox: the message's From line)."""
    reason: str
    """One line; escaped and capped on creation, since reasons quote the file's content."""

    @field_validator("reason")
    @classmethod
    def _one_safe_line(cls, reason: str) -> str:
        return printable(reason)


class ParsedFile(BaseModel):
    """Everything one import file yielded, good and bad, for the store to accept or reject."""

    path: Path
    format: Format
    tickets: TicketRows
    """The file's tickets in order (a list of `Ticket`s is accepted and wrapped): a sequence
    of `Ticket`s to read, whose plain blocks the store can write without building them."""
    labels: dict[str, str]
    """Ticket id -> agent label, for rows that carried a non-empty label."""
    errors: list[RowError]
    skipped_duplicates: int = 0
    """Rows whose id repeated an earlier row with identical content."""
    lines: dict[str, int] = {}
    """Ticket id -> the line its record starts on, so the store can name the line of a
    ticket that conflicts with one imported earlier (from another file)."""


class Collector:
    """Adds tickets to a ParsedFile while enforcing SPEC's one-id-one-ticket rule per file.

    `parsed.lines` is the record of the ids seen so far (id -> the line of its first record),
    so a new ticket costs one look-up and three stores; the tickets themselves are indexed by
    id only when a repeated id needs its first ticket compared, which the usual file never
    does. The JSONL reader adds its common tickets the same way without calling `add`, and
    calls it for an id it has seen.
    """

    def __init__(self, parsed: ParsedFile) -> None:
        self.parsed = parsed
        self.received_at = utcnow()
        """One import time for the whole file: its tickets arrived together."""
        self._by_id: dict[str, Ticket] = {}
        self._indexed = 0
        """How many of `parsed.tickets` `_by_id` holds: it is brought up to date when used."""

    def error(self, line: int, reason: str) -> None:
        self.parsed.errors.append(RowError(line=line, reason=reason))

    def add(self, ticket: Ticket, label: str | None, line: int) -> None:
        parsed = self.parsed
        first_line = parsed.lines.get(ticket.id)
        if first_line is not None:
            first = self._first(ticket.id)
            if _same_content(first, ticket) and parsed.labels.get(ticket.id) == (label or None):
                parsed.skipped_duplicates += 1
            else:
                self.error(line, f"duplicate id {ticket.id} (first on line {first_line})")
            return
        parsed.tickets.append(ticket)
        parsed.lines[ticket.id] = line
        if label:
            parsed.labels[ticket.id] = label

    def _first(self, ticket_id: str) -> Ticket:
        """The ticket a repeated id first came with."""
        tickets = self.parsed.tickets
        by_id = self._by_id
        for ticket in tickets[self._indexed :]:
            by_id.setdefault(ticket.id, ticket)
        self._indexed = len(tickets)
        return by_id[ticket_id]


def _same_content(a: Ticket, b: Ticket) -> bool:
    return a.model_dump(exclude={"received_at"}) == b.model_dump(exclude={"received_at"})
