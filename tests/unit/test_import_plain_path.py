"""The importer's common-record path (`plain_ticket`) decides exactly as the full rules do, and a
large file keeps every check of the import: all or nothing, the bad line named, the conflict
with a stored ticket found."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.cli import run
from tui.core.ingest import parse_bytes, ticket_from_record
from tui.core.ingest.records import plain_ticket
from tui.core.models import utcnow
from tui.core.store import Store

NOW = utcnow()

_strings = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "  ", " billing ", "a\u202eb", "x\ny", "\u2028", "ok", "A" * 101]),
)
_values = st.one_of(_strings, st.none(), st.integers(), st.floats(allow_nan=False), st.booleans())
_fields = ["ID", "Text", "subject", "body", "label", "customer", "channel", "created_at"]
_mostly_strings = st.integers(0, 3).flatmap(lambda k: _values if k == 0 else _strings)
records = st.fixed_dictionaries(
    {
        "id": st.integers(0, 3).flatmap(
            lambda k: _mostly_strings if k == 0 else st.sampled_from(["a", " B7 ", "t-1"])
        ),
        "text": _mostly_strings,
    },
    optional={name: _mostly_strings for name in _fields} | {"priority": _values},
)
"""Records of every shape, most of them near the common one, so both paths are exercised."""


@settings(max_examples=1000, deadline=None)
@given(records)
def test_plain_tickets_are_what_the_full_rules_make(record: dict[str, object]) -> None:
    found = plain_ticket(record, received_at=NOW)
    if found is None:
        return  # declined: the full rules decide (and word any error)
    ticket, label = found
    expected, expected_label = ticket_from_record(record, line=1, received_at=NOW)
    assert ticket.model_dump() == expected.model_dump()
    assert label == expected_label


def test_the_common_record_takes_the_plain_path() -> None:
    record = {"id": " A1 ", "subject": " Hi ", "body": "my card\n", "label": " billing "}
    found = plain_ticket(record, received_at=NOW)
    assert found is not None
    assert (found[0].id, found[0].text, found[0].subject, found[1]) == (
        "A1",
        "Hi\n\nmy card",
        "Hi",
        "billing",
    )


@pytest.mark.parametrize(
    "record",
    [
        {"text": "no id: content id"},
        {"id": "a", "text": 5},
        {"id": "a", "text": "x", "body": 5},
        {"id": "a\u202e", "text": "x"},
        {"id": "a", "text": "x", "label": "a\nb"},
        {"id": "a", "text": "x", "customer": 42},
        {"id": "a", "text": "x", "created_at": "2024-01-01"},
        {"id": "a", "text": "   "},
    ],
)
def test_other_records_are_left_to_the_full_rules(record: dict[str, object]) -> None:
    assert plain_ticket(record, received_at=NOW) is None


def _big_file(path: Path, n: int, bad_line: int | None = None) -> Path:
    with path.open("w") as out:
        for i in range(1, n + 1):
            row: dict[str, object] = {"id": f"T{i}", "subject": "s", "body": f"body {i}"}
            if i % 3 == 0:
                row["label"] = "billing"
            if i == bad_line:
                row["body"] = 7
            out.write(json.dumps(row) + "\n")
    return path


def _import(db: Path, *files: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run(["--db", str(db), "import", *map(str, files)], out=out, err=err)
    return status, err.getvalue()


def test_a_bad_row_in_the_middle_of_a_big_file_imports_nothing(tmp_path: Path) -> None:
    data = _big_file(tmp_path / "big.jsonl", 6000, bad_line=3001)
    db = tmp_path / "t.db"
    status, err = _import(db, data)
    assert status == 2
    assert f"{data}:3001: field 'body' must be a string, not a number" in err
    assert "nothing imported from this file" in err
    with Store(db) as store:
        assert store.ticket_count() == 0
        assert store._read("SELECT count(*) FROM label_events")[0][0] == 0


def test_a_big_file_that_conflicts_with_a_stored_ticket_imports_nothing(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with Store(db) as store:
        first = parse_bytes(b'{"id": "T4500", "text": "stored before"}\n', "jsonl")
        store.import_tickets(first.tickets, first.labels)
    data = _big_file(tmp_path / "big.jsonl", 6000)
    status, err = _import(db, data)
    assert status == 2
    assert f"{data}:4500: id T4500 already imported with other content" in err
    with Store(db) as store:
        assert store.ticket_count() == 1
        assert store.get_ticket("T1") is None


def test_a_big_file_imports_whole_with_its_labels(tmp_path: Path) -> None:
    data = _big_file(tmp_path / "big.jsonl", 6000)
    db = tmp_path / "t.db"
    assert _import(db, data) == (0, "")
    with Store(db) as store:
        assert store.ticket_count() == 6000
        ticket = store.get_ticket("T3")
        assert ticket is not None and ticket.text == "s\n\nbody 3"
        labels = store._read("SELECT count(*) FROM tickets WHERE label = 'billing'")[0][0]
        assert labels == 2000
