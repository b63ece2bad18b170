"""E-mail formats: a single RFC 822 message (.eml) and mbox files of many messages."""

from __future__ import annotations

import codecs
import email
import email.message
import email.utils
import re
from datetime import datetime
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

from tui.core.ingest.dates import parse_date
from tui.core.ingest.records import content_id
from tui.core.ingest.results import Collector, IngestError
from tui.core.models import MAX_ID_CHARS, Ticket, check_ticket_id


def parse_mbox(data: bytes, path: Path, collector: Collector, max_field_chars: int) -> None:
    """Split an mbox on its `From ` lines and add each message; errors name the message."""
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
        parse_message(body, start + 1, index, collector, max_field_chars)


_MBOXRD = re.compile(rb"^>(>*From )")


def parse_message(
    data: bytes, line: int, index: int | None, collector: Collector, max_field_chars: int
) -> None:
    """Add one message as a ticket; `index` (mbox) prefixes its errors with "message N: "."""
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
