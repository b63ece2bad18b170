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
from pathlib import Path
from typing import Any

import orjson

from tui.core.ingest.records import PlainBuilder, plain_builder
from tui.core.ingest.results import Collector
from tui.core.ingest.rows import decode_text, has_huge_float, jsonl_line, parse_jsonl

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
    size = len(data)
    pos = start
    number = 0
    while pos < size:
        number += 1
        end = find(b"\n", pos)
        if end < 0:
            end = size
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
