"""A file's tickets in their order, the plain ones kept column by column until read as `Ticket`s.

A large import's tickets go from the parser to the store and no further: building a `Ticket`
(a field dict and a model object) for each of 300,000 plain records cost 0.45 CPU-s, and the
store then took each one apart again into its INSERT's values. So the JSONL block reader hands
a block of checked plain records over as `PlainColumns` (its values column by column, as the
store binds them), and `TicketRows` holds those blocks among the tickets the rules made, in
file order. Whoever reads it as a sequence gets `Ticket`s, built once on first read; the store
asks for `parts()` and writes the columns as they are.

The ingest package makes these and the store reads them; both import this module, which
depends on the models alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, overload

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from tui.core.models import Ticket, checked_ticket


@dataclass(frozen=True, slots=True)
class PlainColumns:
    """One block of plain records (no `created_at`, no metadata) that passed the plain rules,
    as columns of equal length: row i of every column is one ticket, in file order."""

    ids: list[str]
    subjects: list[str]
    texts: list[str]
    customers: list[str | None]
    channels: list[str | None]
    labels: list[str | None]
    """The record's label, stripped, or None for none (the parser's `labels` holds them too)."""
    received_at: datetime

    def __len__(self) -> int:
        return len(self.ids)

    def tickets(self) -> list[Ticket]:
        """The block's `Ticket`s, as the plain rules build them one record at a time."""
        received_at = self.received_at
        return [
            checked_ticket(
                {
                    "id": ticket_id,
                    "text": text,
                    "subject": subject,
                    "customer": customer,
                    "channel": channel,
                    "created_at": None,
                    "received_at": received_at,
                    "meta": {},
                }
            )
            for ticket_id, subject, text, customer, channel in zip(
                self.ids, self.subjects, self.texts, self.customers, self.channels, strict=True
            )
        ]


class TicketRows(Sequence[Ticket]):
    """The tickets of one file in order: `Ticket`s and `PlainColumns` blocks, read as `Ticket`s.

    Reading it as a sequence (index, slice, iteration, comparison) turns every block into its
    tickets once and for all; `append` and `add_columns` may follow a read. `parts()` gives
    the pieces without building anything, for the store's bulk insert.
    """

    __slots__ = ("_parts", "_size")

    def __init__(self, tickets: Iterable[Ticket] = ()) -> None:
        self._parts: list[list[Ticket] | PlainColumns] = [list(tickets)]
        self._size = len(self._parts[0])

    def append(self, ticket: Ticket) -> None:
        last = self._parts[-1]
        if isinstance(last, PlainColumns):
            self._parts.append([ticket])
        else:
            last.append(ticket)
        self._size += 1

    def add_columns(self, block: PlainColumns) -> None:
        """Add a block's tickets after the others, as columns."""
        if len(block):
            self._parts.append(block)
            self._size += len(block)

    def parts(self) -> list[list[Ticket] | PlainColumns]:
        """The pieces in order (read-only): lists of `Ticket`s and `PlainColumns` blocks."""
        return self._parts

    def ids(self) -> Iterator[str]:
        """Every ticket's id in order, without building the blocks' tickets."""
        for part in self._parts:
            if isinstance(part, PlainColumns):
                yield from part.ids
            else:
                for ticket in part:
                    yield ticket.id

    def _tickets(self) -> list[Ticket]:
        """All tickets as one list, which from now on is the only part (blocks built once)."""
        parts = self._parts
        if len(parts) != 1 or isinstance(parts[0], PlainColumns):
            flat: list[Ticket] = []
            for part in parts:
                flat.extend(part.tickets() if isinstance(part, PlainColumns) else part)
            self._parts = [flat]
        only = self._parts[0]
        assert not isinstance(only, PlainColumns)
        return only

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> Ticket: ...

    @overload
    def __getitem__(self, index: slice) -> list[Ticket]: ...

    def __getitem__(self, index: int | slice) -> Ticket | list[Ticket]:
        return self._tickets()[index]

    def __iter__(self) -> Iterator[Ticket]:
        return iter(self._tickets())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TicketRows):
            return self._tickets() == other._tickets()
        if isinstance(other, list):
            return self._tickets() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"TicketRows({len(self)} tickets in {len(self._parts)} parts)"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """As a model field: a `TicketRows` as it is, or a list of tickets validated as
        `list[Ticket]` and wrapped; dumped as that list."""
        from_list = core_schema.no_info_after_validator_function(
            cls, handler.generate_schema(list[Ticket])
        )
        return core_schema.union_schema(
            [core_schema.is_instance_schema(cls), from_list],
            serialization=core_schema.plain_serializer_function_ser_schema(list),
        )
