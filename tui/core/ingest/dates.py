"""Reading a ticket's `created_at`: ISO 8601, RFC 2822 and the common spreadsheet dates."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

from tui.core.safe_text import excerpt


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
