"""Importers: good files of every format, the malformed files users really produce, and fuzzing."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui.core.ingest import (
    IngestError,
    ParsedFile,
    detect_format,
    parse_bytes,
    parse_file,
    ticket_from_record,
)

DATA = Path(__file__).resolve().parents[1] / "data"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def jsonl(*records: object) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def reasons(parsed: ParsedFile) -> list[tuple[int, str]]:
    return [(error.line, error.reason) for error in parsed.errors]


@pytest.mark.parametrize(
    ("name", "explicit", "expected"),
    [
        ("a.jsonl", None, "jsonl"),
        ("a.NDJSON", None, "jsonl"),
        ("a.json", None, "jsonl"),
        ("a.csv", None, "csv"),
        ("a.eml", None, "eml"),
        ("a.mbox", None, "mbox"),
        ("a.mbx", None, "mbox"),
        ("a.txt", "CSV", "csv"),
        ("a.csv", "jsonl", "jsonl"),
    ],
)
def test_detect_format(name: str, explicit: str | None, expected: str) -> None:
    assert detect_format(Path(name), explicit) == expected


def test_detect_format_unknown_names_the_file() -> None:
    with pytest.raises(IngestError, match=r"tickets\.txt"):
        detect_format(Path("tickets.txt"))
    with pytest.raises(IngestError, match="unknown format 'xml'"):
        detect_format(Path("tickets.csv"), "xml")


def test_detect_format_sniffs_extensionless_mbox(tmp_path: Path) -> None:
    path = write(tmp_path, "Inbox", (DATA / "sample.mbox").read_bytes())
    assert detect_format(path) == "mbox"


def test_jsonl_good_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.jsonl",
        jsonl(
            {"id": 17, "text": "Where is my parcel?", "label": " shipping ", "team": "EU"},
            {"subject": "Refund", "body": "Still waiting for it.", "customer": "a@b.c"},
            {"id": "x", "text": "hi", "created_at": "2025-03-01T10:00:00+01:00", "channel": "chat"},
            {"id": "y", "text": "yo", "label": "", "created_at": 1740823200},
        ),
    )
    parsed = parse_file(path)
    assert parsed.format == "jsonl" and parsed.path == path and parsed.errors == []
    first, second, third, fourth = parsed.tickets
    assert first.id == "17" and first.meta == {"team": "EU"}
    assert parsed.labels == {"17": "shipping"}
    assert second.text == "Refund\n\nStill waiting for it." and second.subject == "Refund"
    assert second.id.startswith("t-") and second.customer == "a@b.c"
    assert third.created_at == datetime(2025, 3, 1, 9, tzinfo=UTC) and third.channel == "chat"
    assert fourth.created_at == datetime(2025, 3, 1, 10, tzinfo=UTC)


def test_content_id_is_stable_across_imports(tmp_path: Path) -> None:
    data = jsonl({"text": "where is my order??", "customer": "a@example.com"}).encode()
    first = parse_bytes(data, "jsonl").tickets[0].id
    assert parse_bytes(data, "jsonl").tickets[0].id == first
    other = parse_bytes(
        jsonl({"text": "where is my order??", "customer": "b@x.org"}).encode(), "jsonl"
    )
    assert other.tickets[0].id != first


def test_jsonl_bad_line_reports_line_number_and_keeps_going(tmp_path: Path) -> None:
    content = '{"text": "ok"}\n\n   \n{"text": "broken",\n{"text": "fine too"}\n'
    parsed = parse_file(write(tmp_path, "t.jsonl", content))
    assert [t.text for t in parsed.tickets] == ["ok", "fine too"]
    [(line, reason)] = reasons(parsed)
    assert line == 4 and reason.startswith("invalid JSON: ")


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"text": ["a", "list"]}, "field 'text' must be a string, not a list"),
        ({"text": {"an": "object"}}, "field 'text' must be a string, not an object"),
        ({"text": "hi", "label": 3}, "field 'label' must be a string, not a number"),
        ({"text": "hi", "label": ["billing"]}, "field 'label' must be a string, not a list"),
        ({"text": "hi", "id": {"a": 1}}, "field 'id' must be a string or a number, not an object"),
        ({"text": "   \n "}, "empty text"),
        ({"subject": "", "body": ""}, "empty text"),
        ({"message": "hello"}, "no 'text' field (or 'subject' + 'body')"),
        ({"text": "hi", "created_at": "next tuesday-ish"}, "field 'created_at': cannot parse date"),
    ],
)
def test_jsonl_row_errors(record: dict[str, object], reason: str) -> None:
    parsed = parse_bytes(jsonl({"text": "good"}, record).encode(), "jsonl")
    assert len(parsed.tickets) == 1
    [(line, got)] = reasons(parsed)
    assert line == 2 and got.startswith(reason)


def test_jsonl_non_object_line() -> None:
    parsed = parse_bytes(b'[1, 2]\n"text"\n', "jsonl")
    assert reasons(parsed) == [
        (1, "expected a JSON object, got a list"),
        (2, "expected a JSON object, got str"),
    ]


def test_ticket_from_record_direct() -> None:
    ticket, label = ticket_from_record({"Text": "hello", "Label": "billing", "x": 1}, line=3)
    assert ticket.text == "hello" and label == "billing" and ticket.meta == {"x": 1}
    with pytest.raises(ValueError, match="empty text"):
        ticket_from_record({"text": ""}, line=1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-01", datetime(2025, 3, 1, tzinfo=UTC)),
        ("2025-03-01T10:00:00Z", datetime(2025, 3, 1, 10, tzinfo=UTC)),
        ("Sat, 01 Mar 2025 10:00:00 +0000", datetime(2025, 3, 1, 10, tzinfo=UTC)),
        ("03/04/2025 09:30", datetime(2025, 3, 4, 9, 30, tzinfo=UTC)),
        ("25/04/2025", datetime(2025, 4, 25, tzinfo=UTC)),
        ("1.3.2025", datetime(2025, 3, 1, tzinfo=UTC)),
        ("Mar 1, 2025", datetime(2025, 3, 1, tzinfo=UTC)),
    ],
)
def test_created_at_formats(value: str, expected: datetime) -> None:
    ticket, _ = ticket_from_record({"text": "x", "created_at": value}, line=1)
    assert ticket.created_at == expected


def test_duplicate_ids_identical_content_are_skipped() -> None:
    row = {"id": "A1", "text": "same", "label": "billing"}
    parsed = parse_bytes(jsonl(row, {"id": "B2", "text": "other"}, row).encode(), "jsonl")
    assert [t.id for t in parsed.tickets] == ["A1", "B2"]
    assert parsed.skipped_duplicates == 1 and parsed.errors == []


def test_duplicate_ids_different_content_are_errors() -> None:
    parsed = parse_bytes(
        jsonl({"id": 5, "text": "one"}, {"id": "5", "text": "two"}).encode(), "jsonl"
    )
    assert [t.text for t in parsed.tickets] == ["one"]
    assert reasons(parsed) == [(2, "duplicate id 5 (first on line 1)")]
    assert parsed.skipped_duplicates == 0


def test_duplicate_ids_in_csv_name_the_first_physical_line(tmp_path: Path) -> None:
    content = 'id,text\n1,"two\nlines"\n1,different\n'
    parsed = parse_file(write(tmp_path, "d.csv", content))
    assert reasons(parsed) == [(4, "duplicate id 1 (first on line 2)")]


def test_csv_sample_file() -> None:
    parsed = parse_file(DATA / "sample.csv")
    assert parsed.format == "csv" and parsed.errors == []
    assert [t.id for t in parsed.tickets] == ["1001", "1002", "1003"]
    first = parsed.tickets[0]
    assert first.text.startswith("Where is my order?\n\nHi, my order #A12345")
    assert "Tracking says it left Memphis" in first.text  # the quoted multi-line field
    assert first.meta == {"priority": "high"} and first.channel == "email"
    assert parsed.tickets[1].created_at == datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
    assert parsed.labels == {"1001": "shipping", "1002": "billing"}  # empty cell: no label


def test_csv_multiline_fields_keep_line_numbers(tmp_path: Path) -> None:
    content = 'text,label\n"first\nspans\nthree lines",a\n"",b\nlast,c\n'
    parsed = parse_file(write(tmp_path, "m.csv", content))
    assert parsed.tickets[0].text == "first\nspans\nthree lines"
    assert reasons(parsed) == [(5, "empty text")]
    assert [t.text for t in parsed.tickets] == ["first\nspans\nthree lines", "last"]


def test_csv_bom_crlf_and_semicolons(tmp_path: Path) -> None:
    content = "\ufeffText;Label\r\nhallo, wo ist mein Paket?;shipping\r\n"
    parsed = parse_file(write(tmp_path, "bom.csv", content.encode("utf-8")))
    assert parsed.errors == []
    assert parsed.tickets[0].text == "hallo, wo ist mein Paket?"
    assert list(parsed.labels.values()) == ["shipping"]


def test_csv_utf16_from_spreadsheet(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "u.csv", "text\tlabel\nnaïve café\tx\n".encode("utf-16")))
    assert parsed.tickets[0].text == "naïve café"


def test_csv_without_text_column_is_a_file_error(tmp_path: Path) -> None:
    path = write(tmp_path, "no_text.csv", "id,message,label\n1,hello,billing\n")
    with pytest.raises(
        IngestError, match=r"no_text\.csv: no 'text' column \(or 'subject' \+ 'body'\)"
    ):
        parse_file(path)


def test_csv_empty_file_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="header row"):
        parse_file(write(tmp_path, "empty.csv", ""))


def test_csv_row_with_too_many_fields(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "x.csv", "text,label\nhello,a,surprise\nok,b,\n"))
    assert reasons(parsed) == [(2, "row has 3 fields; the header has 2")]
    assert [t.text for t in parsed.tickets] == ["ok"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_invalid_utf8_names_file_and_offset(tmp_path: Path, fmt: str) -> None:
    data = b"text\n" if fmt == "csv" else b""
    data += '{"text": "caf\xe9"}\n'.encode("latin-1")
    path = write(tmp_path, f"latin1.{fmt}", data)
    with pytest.raises(IngestError, match=rf"latin1\.{fmt}: not UTF-8: byte 0xe9 at offset \d+"):
        parse_file(path)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "eml", "mbox"])
def test_binary_garbage_never_crashes(tmp_path: Path, fmt: str) -> None:
    garbage = bytes(range(256)) * 40 + b"\x00\xff\xfe" * 100
    path = write(tmp_path, f"garbage.{fmt}", garbage)
    try:
        parsed = parse_file(path)
    except IngestError as exc:
        assert "garbage" in str(exc)
    else:
        assert parsed.tickets == [] or parsed.errors


def test_unreadable_file_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="cannot read"):
        parse_file(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_ten_megabyte_field_is_a_row_error_not_a_hang(tmp_path: Path, fmt: str) -> None:
    huge = "x" * (10 * 1024 * 1024)
    if fmt == "jsonl":
        content = jsonl({"text": "small"}, {"text": huge}, {"text": "after"})
    else:
        content = f"text\nsmall\n{huge}\nafter\n"
    path = write(tmp_path, f"big.{fmt}", content)
    started = time.monotonic()
    parsed = parse_file(path)
    assert time.monotonic() - started < 10
    assert [t.text for t in parsed.tickets] == ["small", "after"]
    line = 2 if fmt == "jsonl" else 3  # the CSV header is line 1
    assert reasons(parsed) == [(line, "field 'text' is 10485760 characters; the limit is 1000000")]


def test_max_field_chars_is_configurable() -> None:
    parsed = parse_bytes(jsonl({"text": "abcdef"}).encode(), "jsonl", max_field_chars=3)
    assert reasons(parsed) == [(1, "field 'text' is 6 characters; the limit is 3")]


def test_eml_sample_with_attachment() -> None:
    parsed = parse_file(DATA / "sample.eml")
    assert parsed.format == "eml" and parsed.errors == []
    [ticket] = parsed.tickets
    assert ticket.id == "msg-1@example.com"
    assert ticket.subject == "Refund für Bestellung #A55555"
    assert ticket.text.startswith("Refund für Bestellung #A55555\n\nHallo,\nich warte")
    assert "Rückerstattung" in ticket.text and "PDF" not in ticket.text
    assert ticket.customer == "customer1@example.com" and ticket.channel == "email"
    assert ticket.created_at == datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
    assert ticket.meta["attachments"] == ["receipt.pdf"]
    assert ticket.meta["from_name"] == "Customer 1"


def eml(**kwargs: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = kwargs.get("sender", "Jo <jo@example.org>")
    msg["Subject"] = kwargs.get("subject", "Help")
    if "message_id" in kwargs:
        msg["Message-ID"] = kwargs["message_id"]
    return msg


def test_eml_html_only_body_is_converted(tmp_path: Path) -> None:
    msg = eml(message_id="<h1@x>")
    msg.set_content(
        "<html><head><style>p {color: red}</style></head><body><p>My <b>parcel</b> is lost."
        "</p><p>Order&nbsp;#A1</p></body></html>",
        subtype="html",
    )
    [ticket] = parse_file(write(tmp_path, "h.eml", bytes(msg))).tickets
    assert "<" not in ticket.text and "color" not in ticket.text
    assert "My parcel is lost." in ticket.text and "#A1" in ticket.text


def test_eml_multipart_prefers_plain_text(tmp_path: Path) -> None:
    msg = eml()
    msg.set_content("plain version")
    msg.add_alternative("<p>html version</p>", subtype="html")
    msg.add_attachment(b"\x89PNG...", maintype="image", subtype="png", filename="photo.png")
    msg.add_attachment("a,b\n1,2\n", subtype="csv", filename="order.csv")
    parsed = parse_file(write(tmp_path, "m.eml", bytes(msg)))
    [ticket] = parsed.tickets
    assert ticket.text == "Help\n\nplain version"
    assert ticket.meta["attachments"] == ["photo.png", "order.csv"]
    assert ticket.id.startswith("t-")  # no Message-ID: a content hash


def test_eml_legacy_charset_and_encoded_subject(tmp_path: Path) -> None:
    raw = (
        b"From: =?iso-8859-1?q?Ren=E9?= <rene@example.fr>\r\n"
        b"Subject: =?iso-8859-1?q?R=E9clamation?=\r\n"
        b"Date: not a date\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"\r\n"
        b"Le colis est arriv\xe9 cass\xe9.\r\n"
    )
    [ticket] = parse_file(write(tmp_path, "l.eml", raw)).tickets
    assert ticket.subject == "Réclamation"
    assert ticket.text == "Réclamation\n\nLe colis est arrivé cassé."
    assert ticket.customer == "rene@example.fr" and ticket.created_at is None
    assert ticket.meta["date"] == "not a date"


def test_eml_unknown_charset_is_replaced_not_fatal(tmp_path: Path) -> None:
    raw = b"From: a@b.c\nSubject: x\nContent-Type: text/plain; charset=klingon\n\nhello \xff\n"
    [ticket] = parse_file(write(tmp_path, "k.eml", raw)).tickets
    assert ticket.text.startswith("x\n\nhello ")


def test_eml_without_headers_is_a_row_error(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "n.eml", b"just some text\nno headers at all\n"))
    assert parsed.tickets == []
    assert reasons(parsed) == [(1, "no e-mail headers (From, Subject, Date, Message-ID)")]


def test_mbox_sample_with_three_messages() -> None:
    parsed = parse_file(DATA / "sample.mbox")
    assert parsed.format == "mbox" and parsed.errors == []
    assert [t.id for t in parsed.tickets] == [
        "msg-1@example.com",
        "msg-2@example.com",
        "msg-3@example.com",
    ]
    assert [t.subject for t in parsed.tickets] == [
        "Where is my parcel?",
        "Can't log in",
        "Cancel order",
    ]
    assert "password reset" in parsed.tickets[1].text and "<b>" not in parsed.tickets[1].text
    assert parsed.tickets[2].text.endswith("From now on I'll order in store.")  # >From unquoted
    assert all(t.channel == "email" for t in parsed.tickets)


def test_mbox_broken_message_is_a_row_error(tmp_path: Path) -> None:
    good = (DATA / "sample.mbox").read_bytes()
    broken = b"From nobody Mon Mar  4 00:00:00 2025\n\x00\x01 garbage\nmore garbage\n\n"
    last = b"From z@example.com Mon Mar  5 00:00:00 2025\nFrom: z@example.com\nSubject: Hi\n\nok\n"
    parsed = parse_file(write(tmp_path, "b.mbox", good + broken + last))
    assert [t.text for t in parsed.tickets][3:] == ["Hi\n\nok"]
    line = good.count(b"\n") + 1
    assert reasons(parsed) == [
        (line, "message 4: no e-mail headers (From, Subject, Date, Message-ID)")
    ]


def test_mbox_repeated_message_is_skipped_duplicate(tmp_path: Path) -> None:
    good = (DATA / "sample.mbox").read_bytes()
    parsed = parse_file(write(tmp_path, "twice.mbox", good + good))
    assert len(parsed.tickets) == 3 and parsed.skipped_duplicates == 3


def test_mbox_without_separator_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="not an mbox"):
        parse_file(write(tmp_path, "x.mbox", b"Subject: hi\n\nbody\n"))


def test_parse_bytes_names_its_input() -> None:
    parsed = parse_bytes(b'{"text": "x"}\n', "ndjson", name="drop/new.jsonl")
    assert parsed.path == Path("drop/new.jsonl") and parsed.format == "jsonl"
    with pytest.raises(IngestError, match="drop/new.bin"):
        parse_bytes(b"", "pdf", name="drop/new.bin")


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "eml", "mbox"])
@FUZZ
@given(data=st.binary(max_size=2048))
def test_parse_bytes_arbitrary_bytes_raise_only_ingest_error(fmt: str, data: bytes) -> None:
    try:
        parsed = parse_bytes(data, fmt)
    except IngestError:
        return
    for ticket in parsed.tickets:
        ticket.text.encode("utf-8")  # storable: no lone surrogates
        assert ticket.text.strip()


PRINTABLE = st.text(alphabet=st.characters(codec="utf-8"), max_size=200)
RECORD_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), PRINTABLE, st.lists(st.integers())
)


@FUZZ
@given(
    records=st.lists(
        st.dictionaries(
            st.sampled_from(["id", "text", "subject", "body", "label", "created_at", "x"]),
            RECORD_VALUE,
        ),
        max_size=8,
    )
)
def test_parse_bytes_structured_jsonl_never_crashes(records: list[dict[str, object]]) -> None:
    data = "\n".join(json.dumps(record) for record in records).encode("utf-8", "surrogatepass")
    try:
        parsed = parse_bytes(data, "jsonl")
    except IngestError:
        return
    assert len(parsed.tickets) + len(parsed.errors) + parsed.skipped_duplicates == len(records)


@pytest.mark.parametrize("fmt", ["eml", "mbox"])
@FUZZ
@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from(["From", "Subject", "Date", "Message-ID", "Content-Type"]), PRINTABLE
        ),
        max_size=6,
    ),
    body=st.binary(max_size=500),
)
def test_parse_bytes_mangled_mail_never_crashes(
    fmt: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    head = "".join(f"{name}: {value}\n" for name, value in headers).encode("utf-8", "surrogatepass")
    data = (b"From x Mon Jan  1 00:00:00 2025\n" if fmt == "mbox" else b"") + head + b"\n" + body
    with contextlib.suppress(IngestError):
        parse_bytes(data, fmt)
