"""Ticket importers for JSONL, CSV, single e-mails (.eml) and mbox files.

Pure parsing: bytes in, `Ticket` models and per-row errors out. The store decides what to do
with a file that has errors (SPEC: all-or-nothing per file), so nothing here touches SQLite.
Every failure is an `IngestError` (the file as a whole) or a `RowError` (one record); a file
of arbitrary bytes never raises anything else.
"""

from __future__ import annotations

import codecs
import csv
import email
import email.message
import email.utils
import functools
import hashlib
import io
import json
import re
from datetime import UTC, datetime
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ValidationError, field_validator

from tui.core.models import MAX_ID_CHARS, Ticket, check_label_name, check_ticket_id
from tui.core.safe_text import excerpt, printable

Format = Literal["jsonl", "csv", "eml", "mbox"]

FORMATS: tuple[str, ...] = ("jsonl", "csv", "eml", "mbox")
_ALIASES = {
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "json": "jsonl",
    "jsonlines": "jsonl",
    "csv": "csv",
    "tsv": "csv",
    "eml": "eml",
    "email": "eml",
    "mbox": "mbox",
    "mbx": "mbox",
}
KNOWN_FIELDS = ("id", "text", "subject", "body", "label", "created_at", "customer", "channel")
"""Fields a record maps onto `Ticket`; every other field goes to `Ticket.meta` verbatim."""
_CSV_DELIMITERS = (",", ";", "\t", "|")


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
    tickets: list[Ticket]
    labels: dict[str, str]
    """Ticket id -> agent label, for rows that carried a non-empty label."""
    errors: list[RowError]
    skipped_duplicates: int = 0
    """Rows whose id repeated an earlier row with identical content."""
    lines: dict[str, int] = {}
    """Ticket id -> the line its record starts on, so the store can name the line of a
    ticket that conflicts with one imported earlier (from another file)."""


def detect_format(path: Path, explicit: str | None = None) -> str:
    """Pick the import format from an explicit name or the file's extension.

    A file without a known extension that starts with an mbox `From ` line is read as mbox,
    because mail clients often export mailboxes without any extension.

    Raises:
        IngestError: When neither the name nor the extension is a known format.
    """
    if explicit is not None:
        fmt = _ALIASES.get(explicit.strip().lower().lstrip("."))
        if fmt is None:
            raise IngestError(f"{path}: unknown format {explicit!r} (use csv, jsonl, eml or mbox)")
        return fmt
    fmt = _ALIASES.get(path.suffix.lower().lstrip("."))
    if fmt is not None:
        return fmt
    try:
        with path.open("rb") as handle:
            if handle.read(5) == b"From ":
                return "mbox"
    except OSError:
        pass
    shown = path.suffix or "no extension"
    raise IngestError(
        f"{path}: cannot tell the format from {shown!r}; "
        "use .jsonl, .csv, .eml or .mbox, or pass --format"
    )


def parse_file(
    path: Path, fmt: str | None = None, *, max_field_chars: int = 1_000_000
) -> ParsedFile:
    """Read and parse one import file.

    Args:
        path: The file to import.
        fmt: Format name (csv, jsonl, eml, mbox); from the extension when None.
        max_field_chars: Longest accepted text field; longer ones become row errors.

    Raises:
        IngestError: When the file is unreadable, of unknown format or not decodable.
    """
    resolved = detect_format(path, fmt)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return _parse(data, resolved, path, max_field_chars)


def parse_bytes(
    data: bytes, fmt: str, *, name: str = "<input>", max_field_chars: int = 1_000_000
) -> ParsedFile:
    """Parse an import file already in memory (watch folder, tests, fuzzing).

    Raises:
        IngestError: When the format is unknown or the bytes are not decodable.
    """
    path = Path(name)
    return _parse(data, detect_format(path, fmt), path, max_field_chars)


def ticket_from_record(
    record: dict[str, Any], *, line: int, max_field_chars: int = 1_000_000
) -> tuple[Ticket, str | None]:
    """Turn one JSONL object or CSV row into a ticket and its optional agent label.

    Known field names match case-insensitively (CSV headers are often "Text" or "Label").

    Args:
        record: Field name -> value, as read from the file.
        line: Where the record starts; the caller's RowError carries it, so reasons don't.
        max_field_chars: Longest accepted string field.

    Returns:
        The ticket and its label (None when the record has no non-empty label).

    Raises:
        ValueError: With a one-line reason naming the offending field.
    """
    del line  # part of the signature so callers can pass it; reasons carry no position
    if not isinstance(record, dict):
        raise ValueError(f"expected an object, got {_type_name(record)}")
    keys = _known_keys(record)
    for key, value in record.items():
        if isinstance(value, str) and len(value) > max_field_chars:
            raise ValueError(
                f"field {key!r} is {len(value)} characters; the limit is {max_field_chars}"
            )
    text = _optional_str(record, keys, "text")
    subject = _optional_str(record, keys, "subject") or ""
    body = _optional_str(record, keys, "body")
    if text is None and not subject.strip() and body is None:
        if "text" not in keys and "subject" not in keys and "body" not in keys:
            raise ValueError("no 'text' field (or 'subject' + 'body')")
        raise ValueError("empty text")
    subject = subject.strip()
    if text is None:
        text = "\n\n".join(part for part in (subject, (body or "").strip()) if part)
    text = text.strip()
    if not text:
        raise ValueError("empty text")
    if len(text) > max_field_chars:
        raise ValueError(f"field 'text' is {len(text)} characters; the limit is {max_field_chars}")

    label = _optional_str(record, keys, "label")
    label = label.strip() if label is not None else None
    if label:  # an empty label cell means "unlabelled", as spreadsheets export it
        try:
            label = check_label_name(label)
        except ValueError as exc:
            raise ValueError(f"field 'label': {exc}") from None
    customer = _scalar_str(record, keys, "customer")
    channel = _scalar_str(record, keys, "channel")
    created_at = _parse_date_field(record.get(keys["created_at"])) if "created_at" in keys else None

    ticket_id = _id_field(record, keys)
    if ticket_id is None:
        ticket_id = content_id(text, customer, created_at)
    meta = {key: value for key, value in record.items() if key not in keys.values()}
    try:
        ticket = Ticket(
            id=ticket_id,
            text=text,
            subject=subject,
            customer=customer,
            channel=channel,
            created_at=created_at,
            meta=meta,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"field {'.'.join(map(str, err['loc']))!r}: {err['msg']}") from None
    return ticket, label or None


def content_id(text: str, customer: str | None = None, created_at: datetime | None = None) -> str:
    """A stable id for a ticket whose source has none, so that re-imports don't duplicate it.

    The sender and date take part so that two customers who both write "where is my order??"
    remain two tickets.
    """
    parts = [text, customer or "", created_at.isoformat() if created_at else ""]
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()
    return f"t-{digest[:12]}"


def parse_date(value: str) -> datetime:
    """Parse ISO 8601, RFC 2822 or a common spreadsheet date into an aware datetime (UTC if naive).

    Raises:
        ValueError: When no known format matches.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty date")
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        parsed = None
    if parsed is None:
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            parsed = None
    if parsed is None:
        for fmt in _DATE_FORMATS:
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        raise ValueError(f"cannot parse date {excerpt(text)}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _date_formats() -> tuple[str, ...]:
    # Day-first is tried after month-first, so 03/04/2025 reads as March 4 (US exports) and
    # 25/04/2025 still parses (strptime rejects month 25).
    dates = (
        "%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%m/%d/%y", "%d/%m/%y",
        "%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%b %d %Y", "%a, %d %b %Y",
    )  # fmt: skip
    times = ("", " %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p", "T%H:%M:%S", ", %H:%M")
    return tuple(d + t for d in dates for t in times)


_DATE_FORMATS = _date_formats()


def _parse(data: bytes, fmt: str, path: Path, max_field_chars: int) -> ParsedFile:
    parsed = ParsedFile(
        path=path, format=cast(Format, fmt), tickets=[], labels={}, errors=[], skipped_duplicates=0
    )
    collector = _Collector(parsed)
    if fmt == "jsonl":
        _parse_jsonl(_decode_text(data, path), collector, max_field_chars)
    elif fmt == "csv":
        _parse_csv(_decode_text(data, path), path, collector, max_field_chars)
    elif fmt == "eml":
        _parse_message(data, 1, None, collector, max_field_chars)
    elif fmt == "mbox":
        _parse_mbox(data, path, collector, max_field_chars)
    else:  # detect_format only returns known names; this guards direct callers of _parse
        raise IngestError(f"{path}: unknown format {fmt!r}")
    return parsed


class _Collector:
    """Adds tickets to a ParsedFile while enforcing SPEC's one-id-one-ticket rule per file."""

    def __init__(self, parsed: ParsedFile) -> None:
        self.parsed = parsed
        self.first_seen: dict[str, tuple[int, Ticket, str | None]] = {}

    def error(self, line: int, reason: str) -> None:
        self.parsed.errors.append(RowError(line=line, reason=reason))

    def add(self, ticket: Ticket, label: str | None, line: int) -> None:
        seen = self.first_seen.get(ticket.id)
        if seen is not None:
            first_line, first, first_label = seen
            if _same_content(first, ticket) and first_label == label:
                self.parsed.skipped_duplicates += 1
            else:
                self.error(line, f"duplicate id {ticket.id} (first on line {first_line})")
            return
        self.first_seen[ticket.id] = (line, ticket, label)
        self.parsed.tickets.append(ticket)
        self.parsed.lines[ticket.id] = line
        if label:
            self.parsed.labels[ticket.id] = label


def _same_content(a: Ticket, b: Ticket) -> bool:
    return a.model_dump(exclude={"received_at"}) == b.model_dump(exclude={"received_at"})


def _decode_text(data: bytes, path: Path) -> str:
    """Decode a text import file as UTF-8 (BOM stripped); UTF-16 with a BOM is accepted too.

    Spreadsheet programs save "Unicode text" as UTF-16 with a BOM, so it is worth recognising.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise IngestError(f"{path}: invalid UTF-16 at byte offset {exc.start}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start]
        raise IngestError(
            f"{path}: not UTF-8: byte 0x{byte:02x} at offset {exc.start} (line {line}); "
            "save the file as UTF-8"
        ) from None


def _parse_jsonl(text: str, collector: _Collector, max_field_chars: int) -> None:
    # Split on "\n" only: str.splitlines would also split on U+2028 inside JSON strings.
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            collector.error(number, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except RecursionError:
            collector.error(number, "invalid JSON: nested too deeply")
            continue
        except ValueError as exc:  # e.g. an integer longer than Python's digit limit
            collector.error(number, f"invalid JSON: {exc}")
            continue
        if not isinstance(record, dict):
            collector.error(number, f"expected a JSON object, got {_type_name(record)}")
            continue
        if "\\u" in line and _SURROGATE_ESCAPE.search(line):  # only escapes make surrogates
            record = _clean_surrogates(record)
        _add_record(record, number, collector, max_field_chars)


def _parse_csv(text: str, path: Path, collector: _Collector, max_field_chars: int) -> None:
    # The csv module refuses fields over 128 KiB by default; the real limit is max_field_chars,
    # checked per row so one oversized ticket is a row error rather than a failed file.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    delimiter, header, header_line = _csv_header(text, path)
    names = _header_names(header, path)
    del header
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    consumed = 0
    while reader.line_num < header_line:
        next(reader)
    consumed = reader.line_num
    while True:
        start = consumed + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            consumed = reader.line_num
            collector.error(start, f"malformed CSV: {exc}")
            continue
        consumed = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) > len(names):
            extra = row[len(names) :]
            if any(cell.strip() for cell in extra):
                collector.error(start, f"row has {len(row)} fields; the header has {len(names)}")
                continue
            row = row[: len(names)]
        record = dict(zip(names, row, strict=False))
        _add_record(record, start, collector, max_field_chars)


def _csv_header(text: str, path: Path) -> tuple[str, list[str], int]:
    """Find the delimiter and header row: the first delimiter whose header names a text column.

    Choosing by the header rather than `csv.Sniffer` is deterministic, and Sniffer is easily
    fooled by commas and semicolons inside ticket text.
    """
    first: tuple[list[str], int] | None = None
    for delimiter in _CSV_DELIMITERS:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        except csv.Error as exc:
            raise IngestError(f"{path}: malformed CSV header: {exc}") from None
        if header is None:
            raise IngestError(f"{path}: empty file (a header row is required)")
        if first is None:
            first = (header, reader.line_num)
        fields = {_norm(cell) for cell in header}
        if fields & {"text", "subject", "body"}:
            return delimiter, header, reader.line_num
    assert first is not None
    # Only an excerpt: a header row can be anything (a whole file of secrets on one line).
    cells = first[0]
    shown = excerpt(",".join(cell.strip() for cell in cells[:4]), 30)
    raise IngestError(
        f"{path}: no 'text' column (or 'subject' + 'body'); the header has {len(cells)}"
        f" column{'s' if len(cells) != 1 else ''}, starting {shown}"
    )


def _header_names(header: list[str], path: Path) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for index, cell in enumerate(header, start=1):
        name = cell.strip().lstrip("\ufeff").strip()
        if not name:
            names.append(f"column_{index}")
            continue
        if name.lower() in seen:
            raise IngestError(f"{path}: column {excerpt(name)} appears twice in the header")
        seen.add(name.lower())
        names.append(name)
    return names


def _parse_mbox(data: bytes, path: Path, collector: _Collector, max_field_chars: int) -> None:
    lines = data.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith(b"From ")]
    if not starts:
        raise IngestError(f"{path}: not an mbox file (no 'From ' separator line)")
    if any(line.strip() for line in lines[: starts[0]]):
        collector.error(1, "text before the first 'From ' line is not part of any message")
    bounds = zip(starts, [*starts[1:], len(lines)], strict=True)
    for index, (start, end) in enumerate(bounds, start=1):
        # mboxrd quoting: one ">" was added to body lines that began with ">*From ".
        body = b"".join(_MBOXRD.sub(rb"\1", line) for line in lines[start + 1 : end])
        _parse_message(body, start + 1, index, collector, max_field_chars)


_MBOXRD = re.compile(rb"^>(>*From )")


def _parse_message(
    data: bytes, line: int, index: int | None, collector: _Collector, max_field_chars: int
) -> None:
    prefix = f"message {index}: " if index is not None else ""
    try:
        ticket = _ticket_from_email(data, max_field_chars)
    except ValueError as exc:
        collector.error(line, f"{prefix}{exc}")
        return
    except Exception as exc:  # the email package raises assorted errors on mangled input
        collector.error(line, f"{prefix}unreadable e-mail ({type(exc).__name__}: {exc})")
        return
    collector.add(ticket, None, line)


_EMAIL_HEADERS = ("from", "subject", "date", "message-id", "to", "received", "mime-version")


def _ticket_from_email(data: bytes, max_field_chars: int) -> Ticket:
    """Build a ticket from one RFC 822 message (compat32 parsing: lenient with real-world mail)."""
    msg = email.message_from_bytes(data)
    if not any(name in msg for name in _EMAIL_HEADERS):
        raise ValueError("no e-mail headers (From, Subject, Date, Message-ID)")
    subject = " ".join(_header(msg, "subject").split())
    body, attachments = _email_body(msg)
    if len(body) > max_field_chars:
        raise ValueError(f"field 'body' is {len(body)} characters; the limit is {max_field_chars}")
    text = "\n\n".join(part for part in (subject, body) if part)
    if not text:
        raise ValueError("empty text")
    sender_name, sender_addr = email.utils.parseaddr(_header(msg, "from"))
    customer = sender_addr.strip() or sender_name.strip() or None
    created_at: datetime | None = None
    raw_date = _header(msg, "date")
    if raw_date:
        try:
            created_at = parse_date(raw_date)
        except ValueError:
            created_at = None
    message_id = _header(msg, "message-id").strip().strip("<>").strip()
    if not message_id or len(message_id) > MAX_ID_CHARS or any(c.isspace() for c in message_id):
        message_id = content_id(text, customer, created_at)  # folded or mangled: not an id
    try:
        message_id = check_ticket_id(message_id)
    except ValueError as exc:  # ESC, bidi overrides, NUL: never a mail client's mistake
        raise ValueError(f"Message-ID: {exc}") from None
    meta: dict[str, Any] = {}
    if sender_name.strip():
        meta["from_name"] = sender_name.strip()
    for name in ("to", "cc", "in-reply-to", "references"):
        value = _header(msg, name)
        if value:
            meta[name.replace("-", "_")] = value
    if raw_date and created_at is None:
        meta["date"] = raw_date
    if attachments:
        meta["attachments"] = attachments
    return Ticket(
        id=message_id,
        text=text,
        subject=subject,
        customer=customer,
        channel="email",
        created_at=created_at,
        meta=meta,
    )


def _email_body(msg: email.message.Message) -> tuple[str, list[str]]:
    """The message's plain-text body (HTML converted when there is no text/plain) and the
    names of its attachments."""
    plain: str | None = None
    html: str | None = None
    attachments: list[str] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        disposition = (part.get("content-disposition") or "").split(";")[0].strip().lower()
        filename = part.get_filename()
        ctype = part.get_content_type()
        if disposition == "attachment" or (filename and not ctype.startswith("text/")):
            attachments.append(_clean(str(filename)) if filename else ctype)
            continue
        if ctype == "text/plain" and plain is None:
            plain = _part_text(part)
        elif ctype == "text/html" and html is None:
            html = _part_text(part)
    if plain is not None and plain.strip():
        body = plain
    elif html is not None:
        body = _html_to_text(html)
    else:
        body = plain or ""
    body = "\n".join(line.rstrip() for line in body.replace("\r\n", "\n").split("\n"))
    return body.strip(), attachments


def _part_text(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = str(part.get_payload()).encode("utf-8", "surrogateescape")
    charset = part.get_content_charset() or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    if charset in ("us-ascii", "ascii"):
        charset = "utf-8"  # mislabelled 8-bit mail is far more often UTF-8 than not
    return payload.decode(charset, errors="replace")


def _html_to_text(html: str) -> str:
    import html2text  # local: only e-mail imports need it

    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.ignore_links = True
    converter.ignore_tables = True
    return str(converter.handle(html))


def _header(msg: email.message.Message, name: str) -> str:
    """A header decoded from RFC 2047 words; never raises, garbage comes back replaced."""
    raw = msg.get(name)
    if raw is None:
        return ""
    try:
        value = str(make_header(decode_header(str(raw))))
    except Exception:  # malformed encoded words or unknown charsets in real mail
        value = str(raw)
    return _clean(value).strip()


def _clean(value: str) -> str:
    """Replace lone surrogates (from undecodable bytes) so the text is valid UTF-8."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # surrogates outside the escape range, e.g. from RFC 2047 words
        return value.encode("utf-8", "replace").decode("utf-8")


def _add_record(
    record: dict[str, Any], line: int, collector: _Collector, max_field_chars: int
) -> None:
    try:
        ticket, label = ticket_from_record(record, line=line, max_field_chars=max_field_chars)
    except (ValueError, TypeError, RecursionError) as exc:
        collector.error(line, str(exc) or type(exc).__name__)
        return
    collector.add(ticket, label, line)


def _clean_surrogates(record: dict[str, Any]) -> dict[str, Any]:
    """Replace lone surrogates from JSON escapes (\\ud800), which SQLite cannot store as UTF-8."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        dumped = json.dumps(record, ensure_ascii=False).encode("utf-8", "replace")
        return cast(dict[str, Any], json.loads(dumped))
    except (ValueError, RecursionError):
        pass
    return record


def _norm(name: str) -> str:
    return name.strip().lstrip("\ufeff").strip().lower()


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _known_keys(record: dict[str, Any]) -> dict[str, str]:
    """Known field -> the record's actual key, exact names winning over case variants."""
    names = tuple(record)
    try:
        return dict(_known_keys_of(names))
    except TypeError:  # an unhashable key cannot happen in JSON/CSV, but stay total
        return _known_keys_uncached(names)


@functools.lru_cache(maxsize=256)
def _known_keys_of(names: tuple[Any, ...]) -> tuple[tuple[str, str], ...]:
    """Cached per key set: every row of a file usually has the same columns."""
    return tuple(_known_keys_uncached(names).items())


def _known_keys_uncached(names: tuple[Any, ...]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for key in names:
        if not isinstance(key, str):
            continue
        norm = _norm(key)
        if norm in KNOWN_FIELDS and (norm not in keys or key == norm):
            keys[norm] = key
    return keys


def _optional_str(record: dict[str, Any], keys: dict[str, str], field: str) -> str | None:
    if field not in keys:
        return None
    value = record[keys[field]]
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"field {field!r} must be a string, not {_type_name(value)}")
    return value


def _scalar_str(record: dict[str, Any], keys: dict[str, str], field: str) -> str | None:
    if field not in keys:
        return None
    value = record[keys[field]]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"field {field!r} must be a string, not {_type_name(value)}")
    text = str(value).strip()
    return text or None


def _id_field(record: dict[str, Any], keys: dict[str, str]) -> str | None:
    if "id" not in keys:
        return None
    value = record[keys["id"]]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"field 'id' must be a string or a number, not {_type_name(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"field 'id' must be a string or an integer, not {value!r}")
        value = int(value)
    text = str(value).strip()
    if not text:
        return None
    try:
        return check_ticket_id(text)
    except ValueError as exc:
        raise ValueError(f"field 'id': {exc}") from None


def _parse_date_field(value: Any) -> datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"field 'created_at' must be a date string, not {_type_name(value)}")
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 1e11 else value  # epoch milliseconds
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"field 'created_at': timestamp {value!r} out of range") from None
    if not isinstance(value, str):
        raise ValueError(f"field 'created_at' must be a date string, not {_type_name(value)}")
    try:
        return parse_date(value)
    except ValueError as exc:
        raise ValueError(f"field 'created_at': {exc}") from None


def _type_name(value: object) -> str:
    names = {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}
    if type(value) in names:
        return names[type(value)]
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__
