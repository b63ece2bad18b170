"""A parsed file's plain blocks (`PlainColumns` in `TicketRows`) are written by the store from
their columns without building `Ticket`s: what lands in every table is what writing the same
tickets as `Ticket`s wrote, and reading the rows as a sequence gives those tickets."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui.core.ingest import jsonl_bytes, parse_bytes
from tui.core.models import utcnow
from tui.core.store import Store
from tui.core.ticket_rows import PlainColumns, TicketRows

_text = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", " ", " hi ", "日本", "0", "a\u2028b", "x\ny"]),
)
_maybe = st.one_of(_text, st.none())
_with_text = st.fixed_dictionaries(
    {"text": _text},
    optional={
        "subject": _text,
        "body": _maybe,
        "label": _maybe,
        "customer": _maybe,
        "channel": _maybe,
    },
)
_without_text = st.fixed_dictionaries(
    {"subject": _text, "body": _text},
    optional={"label": _maybe, "customer": _maybe, "channel": _maybe},
)


def _rows(db: Path) -> list[tuple[object, ...]]:
    raw = sqlite3.connect(db)
    try:
        tickets = raw.execute(
            "SELECT id, subject, text, customer, channel, created_at, meta, label,"
            " label_source, source, typeof(customer), typeof(channel), typeof(label)"
            " FROM tickets ORDER BY seq"
        ).fetchall()
        events = raw.execute(
            "SELECT ticket_id, label, source FROM label_events ORDER BY id"
        ).fetchall()
    finally:
        raw.close()
    return [*tickets, ("events",), *events]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.one_of(_with_text, _without_text), min_size=1, max_size=30),
    st.integers(1, 300),
    st.booleans(),
)
def test_columns_are_stored_as_their_tickets_would_be(
    tmp_path_factory: object, records: list[dict[str, object]], block_bytes: int, one_shape: bool
) -> None:
    if one_shape:  # a block of one shape is what the columns take; mixed ones go record by record
        records = [r for r in records if "text" in r] or records
    lines = [json.dumps({"id": f"T{i}", **r}, ensure_ascii=False) for i, r in enumerate(records)]
    data = "\n".join(lines).encode()
    saved = (jsonl_bytes.CHUNKED_FROM, jsonl_bytes._BLOCK_BYTES, jsonl_bytes._MISSES)
    jsonl_bytes.CHUNKED_FROM, jsonl_bytes._BLOCK_BYTES, jsonl_bytes._MISSES = 0, block_bytes, 10**9
    try:
        parsed = parse_bytes(data, "jsonl")
    finally:
        jsonl_bytes.CHUNKED_FROM, jsonl_bytes._BLOCK_BYTES, jsonl_bytes._MISSES = saved
    assert isinstance(parsed.tickets, TicketRows)
    base = tmp_path_factory.mktemp("cols")  # type: ignore[attr-defined]
    with Store(base / "columns.db") as store:
        store.import_tickets(parsed.tickets, parsed.labels, source="f.jsonl")
    as_tickets = list(parsed.tickets)  # builds every block's tickets
    with Store(base / "tickets.db") as store:
        store.import_tickets(as_tickets, parsed.labels, source="f.jsonl")
    assert _rows(base / "columns.db") == _rows(base / "tickets.db")
    with Store(base / "columns.db") as store:
        assert store.get_tickets([t.id for t in as_tickets]) == as_tickets


def test_a_plain_file_goes_to_the_store_as_columns(tmp_path: Path) -> None:
    """The common file (ids, subjects, bodies, some labels) is held as column blocks, and
    its ids and count are read without building a ticket."""
    lines = [
        json.dumps({"id": f"T{i}", "subject": "Hi", "body": f"card {i}", "label": "billing"})
        for i in range(20_000)
    ]
    parsed = parse_bytes("\n".join(lines).encode(), "jsonl")
    rows = parsed.tickets
    assert isinstance(rows, TicketRows)
    assert all(isinstance(part, PlainColumns) for part in rows.parts() if len(part))
    assert len(rows) == 20_000 and list(rows.ids())[-1] == "T19999"
    assert all(
        isinstance(part, PlainColumns) for part in rows.parts() if len(part)
    )  # still unbuilt
    with Store(tmp_path / "t.db") as store:
        result = store.import_tickets(rows, parsed.labels, source="f.jsonl")
        assert (result.inserted, result.labels_recorded) == (20_000, 20_000)
        ticket = store.get_tickets(["T7"])[0]
    assert (ticket.subject, ticket.text, ticket.meta) == ("Hi", "Hi\n\ncard 7", {})
    assert ticket.received_at <= utcnow()


def test_rows_read_as_a_list_keep_their_order_across_parts() -> None:
    parsed = parse_bytes(
        b'{"id": "A", "text": "x", "priority": 1}\n{"id": "B", "text": "y"}', "jsonl"
    )
    rows = parsed.tickets
    assert [t.id for t in rows] == ["A", "B"] == list(rows.ids())
    assert rows == list(rows) and rows[1].meta == {} and rows[0].meta == {"priority": 1}
