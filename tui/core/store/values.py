"""How Python values are written to and read from the store's text columns."""

from __future__ import annotations

from datetime import datetime


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def from_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def quoted(value: str, limit: int = 40) -> str:
    """A user-supplied string for an error line: quoted, escaped (no newline or bidi control
    reaches the terminal), and cut to `limit` characters."""
    cut = value if len(value) <= limit else value[:limit] + "…"
    return repr(cut)
