"""A UTF-8 JSONL file read from its bytes: the common line parsed in place, the rest by the rules.

Decoding a whole file to one string and splitting it into line strings made two more copies of
it (a 300 MB file: 600 MB more, and a fifth of the parse time in the copying and in the page
faults it costs). Here each line goes to orjson as a `memoryview` slice of the file's bytes,
with no copy: a line that starts with `{` and whose record passes `plain_builder` becomes its
ticket at once. Every other line (blank, too long, not an object, any record the plain rules
decline or a repeated id) is decoded on its own and handed to `rows.jsonl_line`, the full
rules, which word its error exactly as for a decoded file. A file that is not valid UTF-8 is
refused before any line is read, with `decode_text`'s own error.
"""

from __future__ import annotations

import codecs
import functools
from operator import attrgetter
from pathlib import Path
from typing import Any

import orjson

from tui.core.ingest.records import (
    ABSENT,
    PlainBuilder,
    plain_builder,
    plain_columns,
    plain_values,
)
from tui.core.ingest.results import Collector
from tui.core.ingest.rows import decode_text, has_huge_float, jsonl_line, parse_jsonl
from tui.core.ticket_rows import PlainColumns

_OPEN_BRACE = ord("{")


def parse_jsonl_bytes(data: bytes, path: Path, collector: Collector, max_field_chars: int) -> None:
    """Add each line's object of a JSONL file as a ticket, each bad line as its error.

    Raises:
        IngestError: When the file is not UTF-8 (or UTF-16 with a BOM), as `decode_text`.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        parse_jsonl(decode_text(data, path), collector, max_field_chars)
        return
    if not data.isascii():
        decode_text(data, path)  # refuses a file that is not UTF-8; the text is not kept
    _read_lines(data, 3 if data.startswith(codecs.BOM_UTF8) else 0, collector, max_field_chars)


def _read_lines(data: bytes, start: int, collector: Collector, max_field_chars: int) -> None:
    """The line loop over valid UTF-8 `data` from byte `start` (after any BOM).

    A file of more than `CHUNKED_FROM` bytes is read in blocks of whole lines, each block
    decoded at once (`_plain_block`) when every one of its lines is a plain record; any
    other block is read line by line (`_read_region`), as a smaller file is. A block at a
    time holds the decoder in C for thousands of lines; a block that is not plain costs one
    failed decode, and after `_MISSES` of them the rest of the file is read line by line.
    """
    size = len(data)
    if size - start < CHUNKED_FROM:
        _read_region(data, start, size, 0, collector, max_field_chars)
        return
    window = min(_BLOCK_BYTES, max_field_chars)
    pos = start
    number = 0
    misses = 0
    while pos < size:
        if misses >= _MISSES:
            _read_region(data, pos, size, number, collector, max_field_chars)
            return
        if size - pos <= window:  # the last block, without the file's final newline
            stop = size - 1 if data.endswith(b"\n") else size
        else:
            stop = data.rfind(b"\n", pos, pos + window)
        if stop < 0:  # one line longer than the window: that line alone, by the rules
            stop = data.find(b"\n", pos)
            if stop < 0:
                stop = size
            number = _read_region(data, pos, stop, number, collector, max_field_chars)
        elif added := _plain_block(data, pos, stop, number, collector):
            number += added
        else:
            misses += 1
            number = _read_region(data, pos, stop, number, collector, max_field_chars)
        pos = stop + 1


CHUNKED_FROM = 256 * 1024
"""Files (after any BOM) from this many bytes are read a block at a time; smaller ones line by
line, which spares them loading the block decoder (0.02 s)."""
_BLOCK_BYTES = 1 << 20
"""The most bytes of whole lines one block holds (never more than the field limit, so that
no field of a plain block's records can pass it: no decoded string is longer than its line)."""
_MISSES = 2
"""Blocks that may fail to be plain before a file is read line by line to its end: a file
whose lines carry metadata, dates or numbers would otherwise pay a failed decode per block."""


def _plain_block(data: bytes, pos: int, stop: int, number: int, collector: Collector) -> int:
    """Add the lines of `data[pos:stop]` (numbered from `number + 1`) if every one of them is
    one plain record, and return how many there were; 0, with nothing added, otherwise.

    The block is decoded in one call (`msgspec`, into `_PlainRecord`: the plain rules' known
    fields, any other key refused), and each record passes `plain_values`. A decoder of a
    stream of values must not take one line's record for another's: the counts make sure.
    Every line starts with `{` and ends with `}` (before an optional `\\r`), so no record can
    run on from one line into the next (after a `}` a new line's `{` is never valid JSON,
    and no string holds a raw newline); a line holds at least one value, so as many records
    as lines means one a line, in order.
    """
    lines = data.count(b"\n", pos, stop) + 1
    if data[pos] != _OPEN_BRACE:
        return 0
    last = stop - 1 if data[stop - 1] != _CARRIAGE_RETURN else stop - 2
    if last < pos or data[last] != _CLOSE_BRACE:
        return 0
    # Every newline between `}` (or `}\r`) and `{`: no occurrence of either pattern can share
    # its newline with another, so as many as there are newlines means every one. Counting a
    # pattern of several bytes costs twice as much as counting one byte, so one count of
    # `}\n{` is the cheap test; a file of CRLF lines pays the second.
    between = data.count(b"}\n{", pos, stop)
    if between != lines - 1:
        between += data.count(b"}\r\n{", pos, stop)
        if between != lines - 1:
            return 0
    try:
        records = _decoder().decode_lines(memoryview(data)[pos:stop])
    except (ValueError, RecursionError):  # msgspec's DecodeError and ValidationError
        return 0
    if len(records) != lines:
        return 0
    received_at = collector.received_at
    ids, texts, subjects, bodies, labels_found, customers, channels = _columns(records)
    columns = plain_columns(
        ids, texts, subjects, bodies, labels_found, customers, channels, received_at
    )
    if columns is not None and _add_columns(columns, number, collector):
        return lines
    made = []
    for record in records:
        found = plain_values(
            record.id,
            record.text,
            record.subject,
            record.body,
            record.label,
            record.customer,
            record.channel,
            received_at,
            {},
        )
        if found is None:
            return 0
        made.append(found)
    parsed = collector.parsed
    tickets = parsed.tickets
    lines_of = parsed.lines
    labels = parsed.labels
    for ticket, label in made:
        number += 1
        ticket_id = ticket.id
        if lines_of.setdefault(ticket_id, number) != number:
            collector.add(ticket, label, number)  # a repeated id: `add` words the rule
        else:
            tickets.append(ticket)
            if label:
                labels[ticket_id] = label
    return lines


def _columns(records: list[Any]) -> tuple[list[Any], ...]:
    """The decoded records' known values as columns, in `plain_columns`' order."""
    return tuple(list(map(get, records)) for get in _FIELD_GETTERS)


_FIELD_GETTERS = tuple(
    map(attrgetter, ("id", "text", "subject", "body", "label", "customer", "channel"))
)


def _add_columns(columns: PlainColumns, number: int, collector: Collector) -> bool:
    """Add a checked block (its first line numbered `number + 1`) unless one of its ids
    repeats, within it or from before; False, with nothing added, when one does (the block
    goes one record at a time then, and `Collector.add` applies the duplicate rule)."""
    ids = columns.ids
    block_lines = dict(zip(ids, range(number + 1, number + 1 + len(ids)), strict=True))
    parsed = collector.parsed
    if len(block_lines) != len(ids) or not parsed.lines.keys().isdisjoint(block_lines):
        return False
    parsed.lines.update(block_lines)
    if columns.labels.count(None) != len(ids):
        parsed.labels.update(
            (ticket_id, label)
            for ticket_id, label in zip(ids, columns.labels, strict=True)
            if label is not None
        )
    parsed.tickets.add_columns(columns)
    return True


@functools.cache
def _decoder() -> Any:
    """The block decoder, made (and msgspec loaded) on first use."""
    import msgspec

    class _PlainRecord(msgspec.Struct, forbid_unknown_fields=True, gc=False):
        """A plain record's fields as the file spells them; any other key fails the block
        (case and metadata are the full rules' to read). Absent is None, as `plain_values`
        takes it, but for the subject, whose absence it tells from a null."""

        id: Any = None
        text: Any = None
        subject: Any = ABSENT
        body: Any = None
        label: Any = None
        customer: Any = None
        channel: Any = None

    return msgspec.json.Decoder(_PlainRecord)


def _read_region(
    data: bytes, pos: int, stop: int, number: int, collector: Collector, max_field_chars: int
) -> int:
    """The lines of `data[pos:stop]`, the first numbered `number + 1`, one at a time: the
    common line through orjson and `plain_builder`, any other by `rows.jsonl_line`. Returns
    the number of the last line read. A region ends at a newline or at the file's end; an
    empty last line counts unless it is the file's end (after a final newline).

    Lines are numbered as `text.split("\\n")` numbers them (no byte of a multi-byte UTF-8
    character is a newline). A trailing "\\r" needs no stripping before orjson, for which it
    is whitespace; the length test counts bytes, never fewer than characters, so a line it
    lets through is within the limit, and one it stops is measured again by the full rules.
    """
    parsed = collector.parsed
    tickets = parsed.tickets
    lines = parsed.lines
    labels = parsed.labels
    received_at = collector.received_at
    view = memoryview(data)
    find = data.find
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    layout: tuple[Any, ...] | None = None
    build: PlainBuilder | None = None
    has_meta = False
    at_end = stop == len(data)
    while pos < stop or (pos == stop and not at_end):
        number += 1
        end = find(b"\n", pos, stop)
        if end < 0:
            end = stop
        if data[pos] == _OPEN_BRACE and end - pos <= max_field_chars:
            try:
                record = loads(view[pos:end])
            except decode_error:
                record = None
            if type(record) is dict:
                names = tuple(record)
                if names != layout:
                    layout = names
                    build, has_meta = plain_builder(names)
                found = build(record, received_at) if build is not None else None
                if found is not None and not (has_meta and has_huge_float(found[0].meta)):
                    ticket, label = found
                    ticket_id = ticket.id
                    # One look-up records a new id; a repeated one keeps its first line, and
                    # `add` applies the duplicate rule and words it.
                    if lines.setdefault(ticket_id, number) != number:
                        collector.add(ticket, label, number)
                    else:
                        tickets.append(ticket)
                        if label:
                            labels[ticket_id] = label
                    pos = end + 1
                    continue
        jsonl_line(number, data[pos:end].decode("utf-8"), collector, max_field_chars)
        pos = end + 1
    return number


_CLOSE_BRACE = ord("}")
_CARRIAGE_RETURN = ord("\r")
