"""Ticket importers for JSONL, CSV, single e-mails (.eml) and mbox files.

Pure parsing: bytes in, `Ticket` models and per-row errors out; nothing here touches SQLite.
The package reads in layers, each module one concern:

- `files`: the entry points (`parse_file`, `parse_bytes`, `detect_format`) and the dispatch;
- `rows`: JSONL and CSV; `jsonl_bytes`: a UTF-8 JSONL file read from its bytes, the common
  line in place; `mail`: .eml and mbox;
- `records`: one record's fields -> a `Ticket` (names, types, limits, the content id);
- `dates`: `created_at` strings -> aware datetimes;
- `results`: `ParsedFile`, `RowError`, `IngestError` and the per-file duplicate rule.
"""

from tui.core.ingest.dates import parse_date
from tui.core.ingest.files import FORMATS, detect_format, parse_bytes, parse_file
from tui.core.ingest.records import KNOWN_FIELDS, content_id, ticket_from_record
from tui.core.ingest.results import Format, IngestError, ParsedFile, RowError

__all__ = [
    "FORMATS",
    "KNOWN_FIELDS",
    "Format",
    "IngestError",
    "ParsedFile",
    "RowError",
    "content_id",
    "detect_format",
    "parse_bytes",
    "parse_date",
    "parse_file",
    "ticket_from_record",
]
