"""Row formats: JSONL (one object a line) and CSV (header row, delimiter chosen by the header)."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from pathlib import Path
from typing import Any, cast

import orjson

from tui.core.ingest.records import norm, plain_ticket, ticket_from_record, type_name
from tui.core.ingest.results import Collector, IngestError
from tui.core.safe_text import excerpt

_CSV_DELIMITERS = (",", ";", "\t", "|")


def decode_text(data: bytes, path: Path) -> str:
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


def parse_jsonl(text: str, collector: Collector, max_field_chars: int) -> None:
    """Add each line's object as a ticket; a line that is not one object is that line's error.

    For text already decoded (UTF-16 files); UTF-8 files are read from their bytes by
    `tui.core.ingest.jsonl_bytes`, which hands this module's `jsonl_line` every line it
    does not take itself.
    """
    # Split on "\n" only: str.splitlines would also split on U+2028 inside JSON strings.
    for number, raw in enumerate(text.split("\n"), start=1):
        jsonl_line(number, raw, collector, max_field_chars)


def jsonl_line(number: int, raw: str, collector: Collector, max_field_chars: int) -> None:
    """One JSONL line, `number`, by the full rules: its ticket or its error, worded."""
    line = raw.rstrip("\r")
    if not line or line.isspace():
        return
    # The common line first: orjson, then `plain_ticket`; a line longer than the field
    # limit, one orjson refuses, or any record that path declines takes the full path
    # below, which words every error. No decoded string is longer than its line, so the
    # per-field length rule holds for every line within the limit.
    if len(line) <= max_field_chars:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if type(record) is dict:
            found = plain_ticket(record, received_at=collector.received_at)
            if found is not None and not (found[0].meta and has_huge_float(found[0].meta)):
                collector.add(found[0], found[1], number)
                return
    try:
        record = _loads(line)
    except json.JSONDecodeError as exc:
        collector.error(number, f"invalid JSON: {exc.msg} (column {exc.colno})")
        return
    except RecursionError:
        collector.error(number, "invalid JSON: nested too deeply")
        return
    except ValueError as exc:  # e.g. an integer longer than Python's digit limit
        collector.error(number, f"invalid JSON: {exc}")
        return
    if not isinstance(record, dict):
        collector.error(number, f"expected a JSON object, got {type_name(record)}")
        return
    if "\\u" in line and _SURROGATE_ESCAPE.search(line):  # only escapes make surrogates
        record = _clean_surrogates(record)
    _add_record(record, number, collector, max_field_chars)


def _loads(line: str) -> Any:
    """`json.loads(line)`, through orjson where the two agree.

    orjson is four to five times faster, but stricter (NaN, lone surrogates) and reads integers
    past 64 bits as floats. Whatever it refuses, and any line where it read such a float, goes
    to the standard parser, so the result and every error message are the standard parser's.
    """
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)
    return json.loads(line) if has_huge_float(value) else value


def has_huge_float(value: Any) -> bool:
    """Whether a parsed value holds a float of 2**63 or more, which may be an integer orjson
    could not keep."""
    kind = type(value)
    if kind is float:
        return bool(abs(value) >= _HUGE)
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return False
    for item in value:
        kind = type(item)
        if kind is float:
            if abs(item) >= _HUGE:
                return True
        elif (kind is dict or kind is list) and has_huge_float(item):
            return True
    return False


def parse_csv(text: str, path: Path, collector: Collector, max_field_chars: int) -> None:
    """Add each row under the header as a ticket; a malformed row is that row's error."""
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
        fields = {norm(cell) for cell in header}
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


def _add_record(
    record: dict[str, Any], line: int, collector: Collector, max_field_chars: int
) -> None:
    try:
        ticket, label = ticket_from_record(
            record, line=line, max_field_chars=max_field_chars, received_at=collector.received_at
        )
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


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_HUGE = float(2**63)
"""Floats from here up may be integers that orjson, unlike json, could not keep as integers."""
