"""The import's fast paths (orjson, tickets built from checked fields, insert before the conflict
check) give what the standard parser, pydantic validation and the check-first insert gave."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.core.ingest import parse_bytes
from tui.core.ingest.rows import _loads
from tui.core.models import Ticket
from tui.core.store import ImportRejected, Store


@pytest.mark.parametrize(
    "line",
    [
        '{"id": 123456789012345678901234567890, "text": "big id"}',
        '{"text": "x", "n": 12345678901234567890}',
        '{"text": "x", "n": -12345678901234567890123}',
        '{"text": "x", "deep": {"a": [1, {"b": 123456789012345678901234567890}]}}',
        '{"text": "x", "f": 1e300}',
        "123456789012345678901234567890",
        '{"text": "x", "v": NaN}',
        '{"text": "x", "v": Infinity}',
        '{"text": "x", "v": 1e400}',
        '{"text": "lone \\ud800 surrogate"}',
        '{"text": "x", "text": "last wins"}',
        '{"text": "tab\tin string"}',
        '{"text": "x",}',
        '{"text": "x"} trailing',
        "[1, 2]",
    ],
)
def test_loads_agrees_with_the_standard_parser(line: str) -> None:
    try:
        expected = json.loads(line)
    except json.JSONDecodeError as exc:
        with pytest.raises(json.JSONDecodeError) as raised:
            _loads(line)
        assert (raised.value.msg, raised.value.colno) == (exc.msg, exc.colno)
        return
    got = _loads(line)
    assert got == expected or (got != got and expected != expected)
    assert type(got) is type(expected)
    if isinstance(expected, dict):
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}


records = st.fixed_dictionaries(
    {"text": st.text(min_size=1)},
    optional={
        "id": st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=False)),
        "subject": st.text(max_size=20),
        "customer": st.one_of(st.text(max_size=10), st.integers(), st.none()),
        "channel": st.one_of(st.text(max_size=10), st.none()),
        "label": st.sampled_from(["billing", " billing ", "", "a\u202eb"]),
        "Priority": st.one_of(st.integers(), st.text(max_size=5)),
    },
)


@settings(max_examples=200, deadline=None)
@given(records)
def test_fast_tickets_equal_validated_ones(record: dict[str, object]) -> None:
    parsed = parse_bytes((json.dumps(record) + "\n").encode(), "jsonl")
    for ticket in parsed.tickets:
        validated = Ticket.model_validate(ticket.model_dump())
        assert ticket == validated
        assert ticket.model_dump() == validated.model_dump()
        assert ticket.model_fields_set == validated.model_fields_set


def test_a_bad_row_still_names_its_line() -> None:
    data = (
        b'{"id": "a", "text": "fine"}\n'
        b"\n"
        b'{"id": "b", "text": 5}\n'
        b'{"id": "c\\u0007", "text": "bell"}\n'
        b'{"id": "d", "text": "x", "label": "a\\u202eb"}\n'
    )
    parsed = parse_bytes(data, "jsonl", name="f.jsonl")
    assert [(e.line, e.reason) for e in parsed.errors] == [
        (3, "field 'text' must be a string, not a number"),
        (4, "field 'id': id contains a control or formatting character (U+0007)"),
        (5, "field 'label': label contains a control or formatting character (U+202E)"),
    ]


def test_a_conflict_found_after_the_insert_writes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    first = parse_bytes(b'{"id": "a", "text": "one"}\n', "jsonl")
    store.import_tickets(first.tickets, first.labels)
    second = parse_bytes(
        b'{"id": "n1", "text": "new", "label": "billing"}\n'
        b'{"id": "a", "text": "changed"}\n'
        b'{"id": "n2", "text": "also new"}\n',
        "jsonl",
    )
    with pytest.raises(ImportRejected) as raised:
        store.import_tickets(second.tickets, second.labels, source="s.jsonl", lines=second.lines)
    assert [(e.line, e.reason) for e in raised.value.errors] == [
        (2, "id a already imported with other content")
    ]
    assert store.ticket_count() == 1
    assert store.get_ticket("n1") is None


def test_labels_of_new_and_stored_tickets_are_recorded(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    first = parse_bytes(b'{"id": "a", "text": "one", "label": "billing"}\n', "jsonl")
    assert store.import_tickets(first.tickets, first.labels).labels_recorded == 1
    second = parse_bytes(
        b'{"id": "a", "text": "one", "label": "shipping"}\n'
        b'{"id": "b", "text": "two", "label": "billing"}\n'
        b'{"id": "c", "text": "three"}\n',
        "jsonl",
    )
    result = store.import_tickets(second.tickets, second.labels)
    assert (result.inserted, result.duplicates, result.labels_recorded) == (2, 1, 2)
    rows = store._read("SELECT id, label, label_source FROM tickets ORDER BY id")
    assert [tuple(r) for r in rows] == [
        ("a", "shipping", "import"),
        ("b", "billing", "import"),
        ("c", None, None),
    ]
    events = store._read("SELECT ticket_id, label FROM label_events ORDER BY id")
    assert [tuple(r) for r in events] == [("a", "billing"), ("a", "shipping"), ("b", "billing")]
