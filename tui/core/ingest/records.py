"""One JSONL object or CSV row -> a `Ticket`: field names, types, limits and the content id."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from tui.core.ingest.dates import parse_date
from tui.core.models import (
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    Ticket,
    check_label_name,
    check_ticket_id,
    checked_ticket,
    utcnow,
)
from tui.core.ticket_rows import PlainColumns

KNOWN_FIELDS = ("id", "text", "subject", "body", "label", "created_at", "customer", "channel")
"""Fields a record maps onto `Ticket`; every other field goes to `Ticket.meta` verbatim."""


def ticket_from_record(
    record: dict[str, Any],
    *,
    line: int,
    max_field_chars: int = 1_000_000,
    received_at: datetime | None = None,
) -> tuple[Ticket, str | None]:
    """Turn one JSONL object or CSV row into a ticket and its optional agent label.

    Known field names match case-insensitively (CSV headers are often "Text" or "Label").

    Args:
        record: Field name -> value, as read from the file.
        line: Where the record starts; the caller's RowError carries it, so reasons don't.
        max_field_chars: Longest accepted string field.
        received_at: The import's time, shared by a file's tickets; now when None.

    Returns:
        The ticket and its label (None when the record has no non-empty label).

    Raises:
        ValueError: With a one-line reason naming the offending field.
    """
    del line  # part of the signature so callers can pass it; reasons carry no position
    if not isinstance(record, dict):
        raise ValueError(f"expected an object, got {type_name(record)}")
    keys, meta_keys = _layout(record)
    for key, value in record.items():
        if type(value) is str and len(value) > max_field_chars:
            raise ValueError(
                f"field {key!r} is {len(value)} characters; the limit is {max_field_chars}"
            )
    get = record.get
    text = _optional_str(get(keys["text"]) if "text" in keys else None, "text")
    subject = _optional_str(get(keys["subject"]) if "subject" in keys else None, "subject") or ""
    body = _optional_str(get(keys["body"]) if "body" in keys else None, "body")
    if text is None and not subject.strip() and body is None:
        if "text" not in keys and "subject" not in keys and "body" not in keys:
            raise ValueError("no 'text' field (or 'subject' + 'body')")
        raise ValueError("empty text")
    subject = subject.strip()
    if text is None:
        rest = (body or "").strip()
        text = f"{subject}\n\n{rest}" if subject and rest else subject or rest
    text = text.strip()
    if not text:
        raise ValueError("empty text")
    if len(text) > max_field_chars:
        raise ValueError(f"field 'text' is {len(text)} characters; the limit is {max_field_chars}")

    label = _optional_str(get(keys["label"]) if "label" in keys else None, "label")
    label = label.strip() if label is not None else None
    if label:  # an empty label cell means "unlabelled", as spreadsheets export it
        try:
            label = check_label_name(label)
        except ValueError as exc:
            raise ValueError(f"field 'label': {exc}") from None
    customer = _scalar_str(get(keys["customer"]) if "customer" in keys else None, "customer")
    channel = _scalar_str(get(keys["channel"]) if "channel" in keys else None, "channel")
    created_at = _parse_date_field(get(keys["created_at"])) if "created_at" in keys else None

    ticket_id = _id_field(get(keys["id"])) if "id" in keys else None
    if ticket_id is None:
        ticket_id = content_id(text, customer, created_at)
    meta = {key: record[key] for key in meta_keys} if meta_keys else {}
    fields = {
        "id": ticket_id,
        "text": text,
        "subject": subject,
        "customer": customer,
        "channel": channel,
        "created_at": created_at,
        "received_at": received_at or utcnow(),
        "meta": meta,
    }
    if not meta_keys or all(type(key) is str for key in meta_keys):
        # Every field has just passed the model's own rules (the id through check_ticket_id or
        # content_id, strings and dates by type), so validating again would only repeat them,
        # at a third of the import's time.
        return checked_ticket(fields), label or None
    try:
        ticket = Ticket.model_validate(fields)
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


def norm(name: str) -> str:
    """A field or header name as matched: trimmed, BOM dropped, lower case."""
    return name.strip().lstrip("\ufeff").strip().lower()


def _layout(record: dict[str, Any]) -> tuple[dict[str, str], tuple[Any, ...]]:
    """Known field -> the record's actual key, and the other keys (its metadata), in order."""
    names = tuple(record)
    try:
        return _layout_of(names)
    except TypeError:  # an unhashable key cannot happen in JSON/CSV, but stay total
        return _layout_uncached(names)


@functools.lru_cache(maxsize=256)
def _layout_of(names: tuple[Any, ...]) -> tuple[dict[str, str], tuple[Any, ...]]:
    """Cached per key set: every row of a file usually has the same columns. Callers only
    read the dict."""
    return _layout_uncached(names)


def _layout_uncached(names: tuple[Any, ...]) -> tuple[dict[str, str], tuple[Any, ...]]:
    keys = _known_keys_uncached(names)
    known = set(keys.values())
    return keys, tuple(name for name in names if name not in known)


def _known_keys_uncached(names: tuple[Any, ...]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for key in names:
        if not isinstance(key, str):
            continue
        known = norm(key)
        if known in KNOWN_FIELDS and (known not in keys or key == known):
            keys[known] = key
    return keys


def _optional_str(value: Any, field: str) -> str | None:
    if value is not None and type(value) is not str and not isinstance(value, str):
        raise ValueError(f"field {field!r} must be a string, not {type_name(value)}")
    return value


def _scalar_str(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if type(value) is not str and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError(f"field {field!r} must be a string, not {type_name(value)}")
    text = str(value).strip()
    return text or None


def _id_field(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is str:
        text = value.strip()
    else:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"field 'id' must be a string or a number, not {type_name(value)}")
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
        raise ValueError(f"field 'created_at' must be a date string, not {type_name(value)}")
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 1e11 else value  # epoch milliseconds
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"field 'created_at': timestamp {value!r} out of range") from None
    if not isinstance(value, str):
        raise ValueError(f"field 'created_at' must be a date string, not {type_name(value)}")
    try:
        return parse_date(value)
    except ValueError as exc:
        raise ValueError(f"field 'created_at': {exc}") from None


def type_name(value: object) -> str:
    names = {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}
    if type(value) in names:
        return names[type(value)]
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def plain_ticket(
    record: dict[str, Any], *, received_at: datetime
) -> tuple[Ticket, str | None] | None:
    """`ticket_from_record` for the common record, or None to send it there.

    The common record has an id and every known field it names (text, subject, body, label,
    customer, channel; no `created_at`) as a plain string, which is what almost every line
    of a large JSONL export holds. Each such string passes here the same rules as there,
    with none of the per-type branches; any other shape or any rule that fails returns None,
    so that `ticket_from_record` decides it and words the reason (a property test holds the
    two equal wherever this returns a ticket). The caller checks the lengths: it only comes
    here when the record's whole line is no longer than the field limit, and no decoded
    JSON string is longer than its line.
    """
    build = plain_builder(tuple(record))[0]
    return None if build is None else build(record, received_at)


PlainBuilder = Callable[[dict[str, Any], datetime], "tuple[Ticket, str | None] | None"]
"""`plain_ticket` for records of one key layout: the record and the import time in."""


@functools.lru_cache(maxsize=256)
def plain_builder(names: tuple[Any, ...]) -> tuple[PlainBuilder | None, bool]:
    """The `plain_ticket` of records whose keys are `names` (in this order), and whether those
    records carry metadata; (None, False) for a layout that always takes the full rules.

    Every row of a large file usually has one layout, so the look-up of each known field's
    key is done once here, and the builder reads the record's values straight by key: the
    per-record work is the rules themselves. The importer asks for the builder once per run
    of lines with the same keys.
    """
    try:
        keys, meta_keys = _layout_of(names)
    except TypeError:
        keys, meta_keys = _layout_uncached(names)
    if "created_at" in keys or "id" not in keys:
        return None, False
    k_id = keys["id"]
    k_text = keys.get("text")
    k_subject = keys.get("subject")
    k_body = keys.get("body")
    k_label = keys.get("label")
    k_customer = keys.get("customer")
    k_channel = keys.get("channel")

    def build(record: dict[str, Any], received_at: datetime) -> tuple[Ticket, str | None] | None:
        return plain_values(
            record[k_id],
            record[k_text] if k_text is not None else None,
            record[k_subject] if k_subject is not None else ABSENT,
            record[k_body] if k_body is not None else None,
            record[k_label] if k_label is not None else None,
            record[k_customer] if k_customer is not None else None,
            record[k_channel] if k_channel is not None else None,
            received_at,
            {key: record[key] for key in meta_keys} if meta_keys else {},
        )

    return build, bool(meta_keys)


class _Absent:
    """The type of `ABSENT`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
"""A `subject` the record does not have, which `plain_values` must tell from a JSON null:
beside a text, no subject is an empty one, while a null one goes to the full rules."""


def plain_values(
    ticket_id: Any,
    text: Any,
    subject: Any,
    body: Any,
    label: Any,
    customer: Any,
    channel: Any,
    received_at: datetime,
    meta: dict[Any, Any],
) -> tuple[Ticket, str | None] | None:
    """The plain rules on one record's known values: its ticket and label, or None to send
    the record to `ticket_from_record`.

    A value the record does not have is None (a JSON null is treated alike), except the
    subject, which is `ABSENT` then. Shared by `plain_builder` (the values read from a
    record's dict by its layout) and the JSONL reader's decoded records, so one set of rules
    holds for both; the property tests hold it equal to `ticket_from_record`.
    """
    if type(ticket_id) is not str:
        return None
    ticket_id = ticket_id.strip()
    if not ticket_id or len(ticket_id) > MAX_ID_CHARS or not ticket_id.isprintable():
        return None  # empty (content id), too long or not printable: the full rules decide
    if type(text) is not str:
        if text is not None or type(subject) is not str or type(body) is not str:
            return None
        subject = subject.strip()
        rest = body.strip()
        # Both parts are stripped, so the text is too: only emptiness is left to test.
        text = f"{subject}\n\n{rest}" if subject and rest else subject or rest
    else:
        if subject is ABSENT:
            subject = ""
        if type(subject) is not str or (body is not None and type(body) is not str):
            return None  # the full rules name the field that is not a string
        subject = subject.strip()
        text = text.strip()
    if not text:
        return None
    if label is not None:
        if type(label) is not str:
            return None
        label = label.strip()
        if len(label) > MAX_LABEL_CHARS or not label.isprintable():
            return None
    if customer is not None:
        if type(customer) is not str:
            return None
        customer = customer.strip() or None
    if channel is not None:
        if type(channel) is not str:
            return None
        channel = channel.strip() or None
    fields = {
        "id": ticket_id,
        "text": text,
        "subject": subject,
        "customer": customer,
        "channel": channel,
        "created_at": None,
        "received_at": received_at,
        "meta": meta,
    }
    return checked_ticket(fields), label or None


_NONE_TYPE = type(None)
_STR_ONLY = frozenset({str})
_STR_OR_NONE = frozenset({str, _NONE_TYPE})
_strip = str.strip


def plain_columns(
    ids: Sequence[Any],
    texts: Sequence[Any],
    subjects: Sequence[Any],
    bodies: Sequence[Any],
    labels: Sequence[Any],
    customers: Sequence[Any],
    channels: Sequence[Any],
    received_at: datetime,
) -> PlainColumns | None:
    """`plain_values` on a block of records at once, given their values column by column (row
    i of each column is record i's): the block's tickets as `PlainColumns`, or None to send
    every record of it to `plain_values`.

    The same rules, tested a column at a time where a test of the whole column says the same
    as one of each value (a column's types as one set, its strings' emptiness by `in`, their
    length by `max`, their printability as one joined string: a string is printable when all
    its parts are). Only the two usual shapes are taken: every record without a text (subject
    and body both strings, joined) or every record with one; a block that mixes them, or in
    which any record fails a rule, returns None, and `plain_values` decides each record (a
    property test holds this equal to it record by record). Lengths against the field limit
    are the caller's, as for `plain_values`.
    """
    if not ids or set(map(type, ids)) != _STR_ONLY:
        return None
    ids = list(map(_strip, ids))
    if "" in ids or max(map(len, ids)) > MAX_ID_CHARS or not "".join(ids).isprintable():
        return None
    if texts.count(None) == len(texts):  # no record has a text: subject and body make it
        if set(map(type, subjects)) != _STR_ONLY or set(map(type, bodies)) != _STR_ONLY:
            return None
        subjects = list(map(_strip, subjects))
        rests = list(map(_strip, bodies))
        # Both parts are stripped, so the text is too: only emptiness is left to test.
        joined = [
            f"{s}\n\n{r}" if s and r else s or r for s, r in zip(subjects, rests, strict=True)
        ]
    elif set(map(type, texts)) == _STR_ONLY:
        if ABSENT in subjects:
            subjects = ["" if s is ABSENT else s for s in subjects]
        if set(map(type, subjects)) != _STR_ONLY or not set(map(type, bodies)) <= _STR_OR_NONE:
            return None
        subjects = list(map(_strip, subjects))
        joined = list(map(_strip, texts))
    else:
        return None
    if "" in joined:
        return None
    found_labels = _stripped_or_none(labels)
    if found_labels is None:
        return None
    named = [label for label in found_labels if label is not None]
    if named and (max(map(len, named)) > MAX_LABEL_CHARS or not "".join(named).isprintable()):
        return None
    found_customers = _stripped_or_none(customers)
    found_channels = _stripped_or_none(channels)
    if found_customers is None or found_channels is None:
        return None
    return PlainColumns(
        ids=ids,
        subjects=subjects,
        texts=joined,
        customers=found_customers,
        channels=found_channels,
        labels=found_labels,
        received_at=received_at,
    )


def _stripped_or_none(values: Sequence[Any]) -> list[str | None] | None:
    """Each value stripped, None for None or a string that strips to nothing; None (for the
    whole column) when some value is neither a string nor None."""
    if values.count(None) == len(values):
        return list(values)
    if not set(map(type, values)) <= _STR_OR_NONE:
        return None
    return [None if value is None else value.strip() or None for value in values]
