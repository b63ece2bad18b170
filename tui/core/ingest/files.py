"""Reading one import file: its format from a name or extension, then the parser for it.

Pure parsing: bytes in, `Ticket` models and per-row errors out. The store decides what to do
with a file that has errors (SPEC: all-or-nothing per file), so nothing here touches SQLite.
A file of arbitrary bytes never raises anything but `IngestError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from tui.core.gc_pause import cyclic_gc_paused
from tui.core.ingest.jsonl_bytes import parse_jsonl_bytes
from tui.core.ingest.mail import parse_mbox, parse_message
from tui.core.ingest.results import Collector, Format, IngestError, ParsedFile
from tui.core.ingest.rows import decode_text, parse_csv
from tui.core.ticket_rows import TicketRows

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


def _parse(data: bytes, fmt: str, path: Path, max_field_chars: int) -> ParsedFile:
    parsed = ParsedFile(
        path=path,
        format=cast(Format, fmt),
        tickets=TicketRows(),
        labels={},
        errors=[],
        skipped_duplicates=0,
    )
    collector = Collector(parsed)
    with cyclic_gc_paused():
        if fmt == "jsonl":
            parse_jsonl_bytes(data, path, collector, max_field_chars)
        elif fmt == "csv":
            parse_csv(decode_text(data, path), path, collector, max_field_chars)
        elif fmt == "eml":
            parse_message(data, 1, None, collector, max_field_chars)
        elif fmt == "mbox":
            parse_mbox(data, path, collector, max_field_chars)
        else:  # detect_format only returns known names; this guards direct callers of _parse
            raise IngestError(f"{path}: unknown format {fmt!r}")
    return parsed
