"""The JSONL file read from its bytes (`tui.core.ingest.jsonl_bytes`) gives what decoding it and
reading it line by line by the full rules gives, and the store's bulk insert (50 tickets a
statement, absent values bound as 0, label events copied in SQL) writes what the row-by-row
insert wrote; a large file keeps every check: the bad line named, nothing of it stored."""

from __future__ import annotations

import gc
import io
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.cli import run
from tui.core.gc_pause import cyclic_gc_paused
from tui.core.ingest import IngestError, ParsedFile, jsonl_bytes, parse_bytes
from tui.core.ingest.results import Collector
from tui.core.ingest.rows import decode_text, parse_jsonl
from tui.core.models import Ticket
from tui.core.store import Store


def _by_the_full_rules(data: bytes, max_field_chars: int = 1_000_000) -> ParsedFile:
    """The file as the importer read it before: decoded whole, split, each line by the rules."""
    parsed = ParsedFile(path=Path("f.jsonl"), format="jsonl", tickets=[], labels={}, errors=[])
    parse_jsonl(decode_text(data, Path("f.jsonl")), Collector(parsed), max_field_chars)
    return parsed


@contextmanager
def _blocks(block_bytes: int, misses: int = 10**9) -> Iterator[None]:
    """The reader's block path on any file: from 0 bytes, `block_bytes` a block, trying
    blocks `misses` times."""
    saved = (jsonl_bytes.CHUNKED_FROM, jsonl_bytes._BLOCK_BYTES, jsonl_bytes._MISSES)
    jsonl_bytes.CHUNKED_FROM, jsonl_bytes._BLOCK_BYTES, jsonl_bytes._MISSES = (
        0,
        block_bytes,
        misses,
    )
    try:
        yield
    finally:
        jsonl_bytes.CHUNKED_FROM, jsonl_bytes._BLOCK_BYTES, jsonl_bytes._MISSES = saved


def _same(got: ParsedFile, expected: ParsedFile) -> None:
    dump = [t.model_dump(exclude={"received_at"}) for t in got.tickets]
    assert dump == [t.model_dump(exclude={"received_at"}) for t in expected.tickets]
    assert [(e.line, e.reason) for e in got.errors] == [(e.line, e.reason) for e in expected.errors]
    assert got.labels == expected.labels
    assert got.lines == expected.lines
    assert got.skipped_duplicates == expected.skipped_duplicates


_text = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", " ", "héllo", "日本", "a\u2028b", "x\ny", "\u202e", "0"]),
)
_value = st.one_of(_text, st.none(), st.integers(-5, 5), st.booleans())
_record = st.fixed_dictionaries(
    {"id": st.one_of(st.sampled_from(["a", "b", " c ", "d"]), _value)},
    optional={
        "text": _text,
        "subject": _text,
        "body": _text,
        "label": st.one_of(st.sampled_from(["billing", " shipping ", "", "a\u202eb"]), _value),
        "customer": _value,
        "Channel": _value,
        "priority": _value,
        "created_at": st.sampled_from(["2024-01-02", "", "soon"]),
    },
)
_line = st.one_of(
    _record.map(lambda r: json.dumps(r, ensure_ascii=False)),
    _record.map(json.dumps),  # \u escapes instead of UTF-8
    st.sampled_from(
        [
            "",
            "   ",
            "\t",
            "\u00a0",
            '  {"id": "lead", "text": "leading spaces"}',
            '{"id": "e", "text": "x"} trailing',
            '{"id": "f", "text": "x",}',
            "[1, 2]",
            "null",
            '{"id": "g", "text": "lone \\ud800"}',
            '{"id": "h", "text": "x", "n": 123456789012345678901234567890}',
            '{"id": "i", "text": "x", "f": 1e300}',
            '{"id": "j", "text": "x", "text": "last wins"}',
            '{"id": "k", "text": "x"}\r',
            '{"id": "l", "text": "x"}\r\r',
        ]
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_line, max_size=8), st.booleans(), st.sampled_from(["\n", "\r\n"]))
def test_the_bytes_reader_gives_what_the_full_rules_give(
    lines: list[str], bom: bool, newline: str
) -> None:
    data = ("\ufeff" if bom else "").encode() + newline.join(lines).encode()
    _same(parse_bytes(data, "jsonl"), _by_the_full_rules(data))


_plain_record = st.fixed_dictionaries(
    {"id": st.one_of(st.sampled_from(["a", "b", " c ", "d", "", "\u202e"]), _value)},
    optional={
        "text": st.one_of(_text, st.none(), st.integers(0, 2)),
        "subject": st.one_of(_text, st.none()),
        "body": st.one_of(_text, st.none(), st.booleans()),
        "label": st.one_of(st.sampled_from(["billing", " shipping ", "", "a\u202eb"]), _value),
        "customer": _value,
        "channel": _value,
    },
)
"""Records of the block decoder's own keys only, so that whole blocks of them are decoded at
once, with every value the plain rules must decline among them."""
_block_line = st.one_of(
    _plain_record.map(lambda r: json.dumps(r, ensure_ascii=False)),
    _plain_record.map(json.dumps),
    _line,
    st.sampled_from(
        [
            '{"id": "m", "text": "}"}',
            '{"id": "n", "text": "x"} {"id": "o", "text": "y"}',
            '{"id": "n2", "text": "x"},{"id": "o2", "text": "y"}',
            '{"id": "p", "text": "{"}',
            '{"id": "q", "text": "x"}}',
            '{{"id": "r", "text": "x"}',
            '{"id": "s", "text": "x',
            '", "t": 1}',
            '{"id": "u", "text": "a\\nb"}',
            '{"id": "v", "subject": "s", "body": "b", "subject": null}',
            '{"id": "w" , "text" : "x" }',
            '{"id": "x", "text": "x", "Text": "y"}',
            '{"id": "y", "text": "x"} ',
        ]
    ),
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(_block_line, max_size=12),
    st.booleans(),
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),
    st.integers(1, 400),
    st.sampled_from([1_000_000, 60, 12]),
    st.sampled_from([10**9, 1]),
)
def test_the_block_reader_gives_what_the_full_rules_give(
    lines: list[str],
    bom: bool,
    newline: str,
    final_newline: bool,
    block_bytes: int,
    max_field_chars: int,
    misses: int,
) -> None:
    """Blocks of every size over files of plain records and of every other line: the same
    tickets, errors and lines as the full rules, whatever a block's lines hold."""
    text = newline.join(lines) + (newline if final_newline else "")
    data = ("\ufeff" if bom else "").encode() + text.encode()
    with _blocks(block_bytes, misses):
        got = parse_bytes(data, "jsonl", max_field_chars=max_field_chars)
    _same(got, _by_the_full_rules(data, max_field_chars))


@pytest.mark.parametrize(
    "odd",
    [
        ['{"id": "n", "text": "x"} {"id": "o", "text": "y"}'],  # two records on one line
        ['{"id": "n", "text": "x"},{"id": "o", "text": "y"}'],
        ['{"id": "s", "text": "x', '", "t": 1}'],  # a string cut by a newline
        ['{"id": "z", "text": "x", "body":', '{"a": 1}}'],  # one object over two lines
        ['{"id": "z", "text": "x"', "}"],
        [""],
        ["   "],
        ['{"id": "q", "text": "x"}}'],
        ['{"id": "y", "text": "x"} '],
        ['{"id": "T2", "subject": "s", "body": "body 2", "customer": "c"}'],  # same again
        ['{"id": "T2", "text": "other"}'],  # the same id, other content
        ['{"id": "d", "text": "x", "created_at": "2024-01-02"}'],
        ['{"id": "m", "text": "x", "priority": 1}'],
        ['{"id": "u", "text": "x", "Label": "billing"}'],
        ['{"id": 5, "text": "x"}'],
        ['{"id": "e", "text": "x", "label": "a\u202eb"}'],
        ['{"id": "j", "text": "x", "text": "last wins"}'],  # a repeated key: the last one
        ['{"id": "v", "subject": "s", "body": "b", "subject": null}'],
        ['{"id": "w", "text": "x", "text": null}'],
    ],
)
def test_an_odd_line_among_plain_ones_in_a_block_reads_as_the_full_rules_read_it(
    odd: list[str],
) -> None:
    plain = [
        json.dumps({"id": f"T{i}", "subject": "s", "body": f"body {i}", "customer": "c"})
        for i in range(1, 7)
    ]
    for newline in ("\n", "\r\n"):
        data = newline.join(plain[:3] + odd + plain[3:]).encode()
        with _blocks(1 << 20):
            got = parse_bytes(data, "jsonl")
        _same(got, _by_the_full_rules(data))


def test_a_plain_file_is_read_a_block_at_a_time_and_a_bad_line_in_one_is_named(
    tmp_path: Path,
) -> None:
    """A large plain file goes through the block decoder (the rules are not called line by
    line), and a bad line in the middle of a block still reads as the full rules read it."""
    path = _ten_thousand(tmp_path / "big.jsonl", {})
    data = path.read_bytes()
    assert len(data) >= jsonl_bytes.CHUNKED_FROM
    calls = []
    real = jsonl_bytes._read_region

    def counted(*args: Any) -> int:
        calls.append(args[2] - args[1])
        return real(*args)

    jsonl_bytes._read_region = counted  # type: ignore[assignment]
    try:
        plain = parse_bytes(data, "jsonl")
        assert calls == []  # every block decoded whole
        lines = data.split(b"\n")
        lines[4321] = b'{"id": "T4322", "text": 5}'
        broken = b"\n".join(lines)
        got = parse_bytes(broken, "jsonl")
    finally:
        jsonl_bytes._read_region = real  # type: ignore[assignment]
    _same(plain, _by_the_full_rules(data))
    _same(got, _by_the_full_rules(broken))
    assert [(e.line, e.reason) for e in got.errors] == [
        (4322, "field 'text' must be a string, not a number")
    ]
    assert len(calls) == 1  # only the block with the bad line was read line by line


@pytest.mark.parametrize(
    "data",
    [
        b'{"id": "a", "text": "one"}\n{"id": "a", "text": "one"}\n',  # repeated: skipped
        b'{"id": "a", "text": "one"}\n{"id": "a", "text": "two"}\n',  # repeated: an error
        b'{"id": "a", "text": "x", "label": "l"}\n{"id": "a", "text": "x"}\n',
        b'{"id": "a", "text": "one"}\n{"id": "b", "text": "two"}',  # no final newline
        b'{"id": "a", "text": "x", "meta": {"deep": [1, 2e19]}}\n',
        '\ufeff{"id": "é", "text": "bom first"}\n'.encode(),
        '{"id": "a", "text": "two bytes a char: é"}\n'.encode("utf-16"),
    ],
)
def test_edge_files_read_as_before(data: bytes) -> None:
    _same(parse_bytes(data, "jsonl"), _by_the_full_rules(data))


def test_a_line_within_the_limit_in_characters_but_not_in_bytes_is_kept() -> None:
    line = json.dumps({"id": "a", "text": "é" * 30}, ensure_ascii=False)
    assert len(line) <= 60 < len(line.encode())
    parsed = parse_bytes(line.encode(), "jsonl", max_field_chars=60)
    assert parsed.errors == [] and parsed.tickets[0].text == "é" * 30
    too_long = parse_bytes(line.encode(), "jsonl", max_field_chars=20)
    assert [e.line for e in too_long.errors] == [1] and too_long.tickets == []


def test_a_file_that_is_not_utf8_is_refused_whole_with_its_line() -> None:
    data = b'{"id": "a", "text": "fine"}\n{"id": "b", "text": "caf\xe9"}\n'
    with pytest.raises(IngestError, match=r"not UTF-8: byte 0xe9 at offset 52 \(line 2\)"):
        parse_bytes(data, "jsonl")


def _ten_thousand(path: Path, bad: dict[int, str]) -> Path:
    """10,000 common lines (a label on every third), line numbers in `bad` replaced."""
    with path.open("w") as out:
        for i in range(1, 10_001):
            row = {"id": f"T{i}", "subject": "s", "body": f"body {i}", "customer": "c"}
            if i % 3 == 0:
                row["label"] = "billing"
            out.write(bad.get(i, json.dumps(row)) + "\n")
    return path


def _read_by_line_calls(data: bytes) -> tuple[ParsedFile, list[int]]:
    """The file parsed, and the byte lengths of the regions read line by line."""
    calls: list[int] = []
    real = jsonl_bytes._read_region

    def counted(*args: Any) -> int:
        calls.append(args[2] - args[1])
        return real(*args)

    jsonl_bytes._read_region = counted  # type: ignore[assignment]
    try:
        return parse_bytes(data, "jsonl"), calls
    finally:
        jsonl_bytes._read_region = real  # type: ignore[assignment]


@pytest.mark.parametrize("endings", ["\n", "\r\n", "mixed"])
def test_a_large_file_of_any_line_endings_is_read_a_block_at_a_time(
    tmp_path: Path, endings: str
) -> None:
    """CRLF lines, and LF and CRLF lines in one file, are plain blocks too."""
    lines = _ten_thousand(tmp_path / "big.jsonl", {}).read_text().splitlines()
    if endings == "mixed":
        data = "".join(line + ("\r\n" if i % 2 else "\n") for i, line in enumerate(lines))
    else:
        data = endings.join(lines) + endings
    got, calls = _read_by_line_calls(data.encode())
    assert calls == []
    assert len(got.tickets) == 10_000 and not got.errors
    _same(got, _by_the_full_rules(data.encode()))


@pytest.mark.parametrize(
    ("line", "errors", "skipped"),
    [
        (json.dumps({"id": "T10", "subject": "s", "body": "body 10", "customer": "c"}), [], 1),
        ('{"id": "T10", "text": "other"}', [(9000, "duplicate id T10 (first on line 10)")], 0),
        ('{"id": "N1", "text": "new"}', [], 0),
    ],
)
def test_an_id_repeated_from_an_earlier_block_reads_as_the_full_rules_read_it(
    tmp_path: Path, line: str, errors: list[tuple[int, str]], skipped: int
) -> None:
    """A block that repeats an id of an earlier block, or one of its own, keeps the
    one-id-one-ticket rule: the same content skipped, other content the line's error."""
    data = _ten_thousand(tmp_path / "big.jsonl", {9_000: line}).read_bytes()
    lines = data.split(b"\n")
    lines[9_100] = lines[9_099]  # line 9101 repeats line 9100, within one block
    data = b"\n".join(lines)
    with _blocks(1 << 16):  # blocks of 64 KiB: line 9000 is blocks after line 10
        got, calls = _read_by_line_calls(data)
    assert calls == []
    _same(got, _by_the_full_rules(data))
    assert [(e.line, e.reason) for e in got.errors] == errors
    assert got.skipped_duplicates == skipped + 1
    assert "T9101" not in got.lines and got.lines["T9100"] == 9100


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ('{"id": "T9999", "subject": "s", "body": ', "invalid JSON: Expecting value"),
        ('{"id": "T\\u001b[2J", "text": "x"}', "control or formatting character (U+001B)"),
        ('{"id": "T2", "text": "other text"}', "duplicate id T2 (first on line 2)"),
        ('{"id": "T9999", "text": "x", "label": "a\\u2028b"}', "field 'label': label contains"),
        ('{"id": "T9999", "text": "x", "customer": {"a": 1}}', "field 'customer' must be"),
    ],
)
def test_a_bad_row_on_line_9999_of_10000_is_named_and_nothing_is_stored(
    tmp_path: Path, bad: str, reason: str
) -> None:
    data = _ten_thousand(tmp_path / "big.jsonl", {9_999: bad})
    db = tmp_path / "t.db"
    out, err = io.StringIO(), io.StringIO()
    assert run(["--db", str(db), "import", str(data)], out=out, err=err) == 2
    assert f"{data}:9999: " in err.getvalue() and reason in err.getvalue()
    assert "1 bad rows; nothing imported from this file" in err.getvalue()
    with Store(db) as store:
        assert store.ticket_count() == 0
        assert store._read("SELECT count(*) FROM label_events")[0][0] == 0


def test_a_big_file_is_stored_in_its_order_with_its_labels_and_events(tmp_path: Path) -> None:
    data = _ten_thousand(tmp_path / "big.jsonl", {})
    db = tmp_path / "t.db"
    assert run(["--db", str(db), "import", str(data)], out=io.StringIO()) == 0
    with Store(db) as store:
        ids = [r[0] for r in store._read("SELECT id FROM tickets ORDER BY seq")]
        assert ids == [f"T{i}" for i in range(1, 10_001)]
        events = store._read("SELECT ticket_id FROM label_events ORDER BY id")
        assert [r[0] for r in events] == [f"T{i}" for i in range(3, 10_001, 3)]
        counts = store._read(
            "SELECT count(label), count(label_source), count(customer), count(channel),"
            " count(created_at) FROM tickets"
        )
        assert tuple(counts[0]) == (3333, 3333, 10_000, 0, 0)


@pytest.mark.parametrize("n", [1, 49, 50, 51, 149])
def test_every_ticket_is_stored_whatever_the_count_with_its_values(tmp_path: Path, n: int) -> None:
    """Whole statements of 50 and the rest one by one; None stored as NULL, and text that
    is '0' (the stand-in for an absent value) stored as text."""
    made = [
        Ticket(
            id=f"T{i}",
            text=f"text {i}",
            subject="0" if i % 2 else "",
            customer="0" if i % 3 == 0 else None,
            channel=None if i % 3 == 0 else "0",
            created_at=None if i % 4 else Ticket(id="x", text="x").received_at,
            meta={"n": i} if i % 5 == 0 else {},
        )
        for i in range(n)
    ]
    labels = {f"T{i}": "0" for i in range(0, n, 2)}
    with Store(tmp_path / "t.db") as store:
        result = store.import_tickets(made, labels, source="src")
        assert (result.inserted, result.duplicates, result.labels_recorded) == (n, 0, len(labels))
        assert store.get_tickets([t.id for t in made]) == made
        rows = store._read("SELECT id, label, label_source, source FROM tickets ORDER BY seq")
        assert [tuple(r) for r in rows] == [
            (t.id, labels.get(t.id), "import" if t.id in labels else None, "src") for t in made
        ]
        raw = sqlite3.connect(tmp_path / "t.db")
        kinds = raw.execute(
            "SELECT DISTINCT typeof(customer), typeof(channel), typeof(label) FROM tickets"
        ).fetchall()
        raw.close()
        assert {k for row in kinds for k in row} <= {"text", "null"}


@pytest.mark.parametrize("sizes", [(120,), (70, 30, 1, 60), (49, 2, 50), (1, 1, 1)])
def test_runs_of_one_received_at_keep_each_tickets_own_stamp_and_order(
    tmp_path: Path, sizes: tuple[int, ...]
) -> None:
    """A statement binds one `received_at` and one `source` for its 50 tickets: a run of
    tickets sharing a stamp (one object, as a file's, or equal copies) fills whole statements,
    and a new stamp starts a new run wherever it falls, so every ticket keeps its own."""
    start = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    paris = timezone(timedelta(hours=1))
    made: list[Ticket] = []
    for run_number, size in enumerate(sizes):
        stamp = start + timedelta(seconds=run_number)
        for i in range(size):
            if run_number % 2 == 0:  # one object for the run, as a file's tickets hold
                received = stamp
            elif i % 5 == 4:  # the same instant written otherwise: a run of its own
                received = stamp.astimezone(paris)
            else:  # equal copies: the same run
                received = datetime.fromisoformat(stamp.isoformat())
            n = len(made)
            made.append(Ticket(id=f"T{n}", text=f"text {n}", received_at=received))
    labels = {t.id: "billing" for t in made[::3]}
    with Store(tmp_path / "t.db") as store:
        result = store.import_tickets(made, labels, source="runs.jsonl")
        assert result.inserted == len(made)
        rows = store._read("SELECT id, received_at, source, label FROM tickets ORDER BY seq")
        assert [tuple(r) for r in rows] == [
            (t.id, t.received_at.isoformat(), "runs.jsonl", labels.get(t.id)) for t in made
        ]
        assert store.get_tickets([t.id for t in made]) == made


def test_a_label_for_a_ticket_that_is_nowhere_still_fails_the_import(tmp_path: Path) -> None:
    with Store(tmp_path / "t.db") as store:
        with pytest.raises(sqlite3.IntegrityError):
            store.import_tickets([Ticket(id="a", text="one")], {"a": "billing", "ghost": "billing"})
        assert store.ticket_count() == 0
        assert store._read("SELECT count(*) FROM label_events")[0][0] == 0


def test_a_label_for_a_ticket_that_is_nowhere_fails_beside_a_stored_ones_relabel(
    tmp_path: Path,
) -> None:
    """The import writes without SQLite's foreign keys: the events of a relabelled stored
    ticket and of a new one go through its own check, which refuses one for no ticket."""
    with Store(tmp_path / "t.db") as store:
        store.import_tickets([Ticket(id="a", text="one")], {"a": "billing"})
        with pytest.raises(sqlite3.IntegrityError):
            store.import_tickets(
                [Ticket(id="a", text="one"), Ticket(id="b", text="two")],
                {"a": "shipping", "b": "billing", "ghost": "billing"},
            )
        assert store.ticket_count() == 1
        assert store._read("SELECT label FROM label_events")[0][0] == "billing"
        done = store.import_tickets(
            [Ticket(id="a", text="one"), Ticket(id="b", text="two")],
            {"a": "shipping", "b": "billing"},
        )
        assert done.labels_recorded == 2
        events = store._read("SELECT ticket_id, label FROM label_events ORDER BY id")
        assert [tuple(r) for r in events] == [("a", "billing"), ("a", "shipping"), ("b", "billing")]


def test_foreign_keys_are_enforced_again_after_an_import_that_worked_or_failed(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "t.db") as store:
        store.import_tickets([Ticket(id="a", text="one")], {"a": "billing"})
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        with pytest.raises(sqlite3.IntegrityError):
            store.import_tickets([Ticket(id="b", text="two")], {"ghost": "billing"})
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        with pytest.raises(sqlite3.IntegrityError), store._write() as conn:
            conn.execute(
                "INSERT INTO label_events (ticket_id, label, agent, source, created_at)"
                " VALUES ('ghost', 'billing', 'cli', 'cli', '2026-01-01')"
            )


def test_what_a_paused_block_made_leaves_the_young_generations() -> None:
    was = gc.isenabled()
    gc.enable()
    try:
        with cyclic_gc_paused():
            assert not gc.isenabled()
            made = [[i] for i in range(20_000)]
        assert gc.isenabled()
        young = {id(o) for o in gc.get_objects(generation=0)} | {
            id(o) for o in gc.get_objects(generation=1)
        }
        assert not any(id(o) in young for o in made)
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # the collector still finds garbage afterwards
    finally:
        if not was:
            gc.disable()


def test_a_nested_pause_leaves_the_collector_to_the_outer_one() -> None:
    with cyclic_gc_paused():
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
