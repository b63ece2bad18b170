"""Reading a ticket's `created_at`: ISO 8601, RFC 2822 and the common spreadsheet dates.

ISO 8601 and RFC 2822 go to the standard library, which reads them exactly. Everything else
(`03/04/2025 09:30`, `1.3.2025`, `Mar 1, 2025 10:00 PM`) goes to python-dateutil's parser,
held to what a ticket's date must be, because its defaults are lenient in ways that would put
a wrong date on a ticket without a word:

- a missing year, month or day is filled in from today ("March 2025", "10:00", "12"): here
  each of the three must be written, or the value is rejected;
- a zone name it does not know ("EST", "CET") is dropped with a warning, or read as the
  machine's local zone when it matches it: here only UTC, GMT, Z and numeric offsets count,
  and "GMT+3" (POSIX reads it as three hours *behind* GMT) is rejected;
- a two-digit year is placed within 50 years of today, so the same file would import
  differently next year (and its tickets get other content ids): here it is strptime's fixed
  pivot, 69-99 -> 19xx and 00-68 -> 20xx;
- dotted dates are day first (1.3.2025 is 1 March, as written in Europe); slashed and dashed
  ones month first (03/04/2025 is March 4, as US exports write), falling back to day first
  when the first number cannot be a month (25/04/2025);
- fuzzy matching stays off, and only short single-line ASCII values are tried, so a hostile
  value (a megabyte of text, control characters, bidi overrides) is rejected at once.
"""

from __future__ import annotations

import email.utils
import functools
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from tui.core.safe_text import excerpt

if TYPE_CHECKING:
    from dateutil.parser import parser as DateutilParser

MAX_DATE_CHARS = 80
"""Longer values are not dates ("Wednesday, 30 September 2025, 11:59:59 PM +0000" is 46)."""

_TRIED = re.compile(r"[A-Za-z0-9 ,./:+-]+")
"""Characters a spreadsheet date is written with; anything else is rejected unparsed."""
_NUMERIC_DATE = re.compile(
    r"(?<![\d.])(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2}))(?![\d.])"
)
_MONTH_NAME = re.compile(r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b", re.I)
_YEAR = re.compile(r"(?<![\d.:])\d{4}(?![\d:])")
_UTC_THEN_OFFSET = re.compile(r"(?:UTC|GMT|Z)\s*[+-]\s*\d", re.IGNORECASE)
_DOTTED_DATE = re.compile(r"(?<![\d.])\d{1,2}\.\d{1,2}\.\d{2,4}(?![\d.])")
_AM_PM = re.compile(r"\d\s*[AaPp]\.?[Mm]\b")
_TRAILING_WORD = re.compile(r"([A-Za-z]+)\s*$")
_RFC_2822_ZONES = frozenset(
    {"UT", "UTC", "GMT", "Z", "EST", "EDT", "CST", "CDT", "MST", "MDT", "PST", "PDT"}
)
"""The zone names RFC 2822 defines (section 4.3), which the standard library reads right."""
_UTC_NAMES = frozenset({"UTC", "GMT", "Z"})


def parse_date(value: str) -> datetime:
    """Parse ISO 8601, RFC 2822 or a common spreadsheet date into an aware datetime (UTC if naive).

    Raises:
        ValueError: When the value is not a complete, unambiguous date (see the module doc).
    """
    text = value.strip()
    if not text:
        raise ValueError("empty date")
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        parsed = None
    if parsed is None and _rfc_2822_reads_it_whole(text):
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            parsed = None
    if parsed is None:
        parsed = _parse_written_date(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _rfc_2822_reads_it_whole(text: str) -> bool:
    """Whether the standard library's RFC 2822 parser would read all of the value.

    It takes "PM" for a zone and drops it (9:30 PM would be 09:30), and reads any zone name
    it does not know ("CET") as UTC: values with either go to dateutil's rules instead.
    """
    if _AM_PM.search(text):
        return False
    word = _TRAILING_WORD.search(text)
    if word is not None and word.group(1).upper() not in _RFC_2822_ZONES:
        return False
    try:
        return email.utils.parsedate_tz(text) is not None
    except (TypeError, ValueError, IndexError):
        return False


def _parse_written_date(text: str) -> datetime:
    """A date as people and spreadsheets write it, through dateutil held to the rules above."""
    if not _written_like_a_date(text):
        raise ValueError(f"cannot parse date {excerpt(text)}")
    day_first = _DOTTED_DATE.search(text) is not None
    try:
        parsed: datetime = _parser().parse(
            text, default=_NoFillIn(2000, 1, 1), dayfirst=day_first, tzinfos=_zone
        )
    except (ValueError, OverflowError) as exc:  # dateutil's ParserError is a ValueError
        refused = exc if isinstance(exc, _Refused) else exc.__cause__
        reason = f" ({refused})" if isinstance(refused, _Refused) else ""
        raise ValueError(f"cannot parse date {excerpt(text)}{reason}") from None
    return parsed


def _written_like_a_date(text: str) -> bool:
    """Whether a value is worth handing to dateutil: short, one line, date characters only,
    and a whole date in one of the shapes spreadsheets write (2025-03-01, 03/04/2025,
    1.3.2025, 03/04/25, or a month name with a four-digit year). dateutil alone would also
    read "1 2 3" (2003-01-02), "1/1/1" or "-1/2/2025" as dates."""
    if len(text) > MAX_DATE_CHARS or not text[0].isalnum() or not _TRIED.fullmatch(text):
        return False
    if _UTC_THEN_OFFSET.search(text):
        return False
    if _NUMERIC_DATE.search(text):
        return True
    return _MONTH_NAME.search(text) is not None and _YEAR.search(text) is not None


class _Refused(ValueError):
    """A value dateutil would have completed or reinterpreted on its own."""


class _NoFillIn(datetime):
    """The `default` handed to dateutil: it refuses to supply a year, month or day.

    dateutil builds its result as `default.replace(**fields it found)`; a field missing from
    the text would silently come from the default ("March 2025" -> 1 March). This replace
    raises instead, and returns a plain datetime when all three were written.
    """

    def replace(self, **found: Any) -> datetime:  # type: ignore[override]
        missing = [name for name in ("year", "month", "day") if name not in found]
        if missing:
            raise _Refused(f"no {' or '.join(missing)}")
        return datetime(**found)


def _zone(name: str | None, offset: int | None) -> timezone | None:
    """dateutil's `tzinfos` hook: numeric offsets and UTC only; other names are refused.

    Given as a callable, it is consulted for every value, so dateutil never falls back to
    the machine's local zone for a name that happens to match it.
    """
    if name is None or name.upper() in _UTC_NAMES:
        if offset is None:
            return None if name is None else UTC
        return timezone(timedelta(seconds=offset)) if offset else UTC
    raise _Refused(f"unknown time zone {name}")


@functools.cache
def _parser() -> DateutilParser:
    """One dateutil parser with strptime's two-digit-year pivot, built on first use."""
    from dateutil.parser import parser, parserinfo

    class _FixedPivot(parserinfo):  # type: ignore[misc]
        def convertyear(self, year: int, century_specified: bool = False) -> int:
            if year < 100 and not century_specified:
                return year + (1900 if year >= 69 else 2000)
            return year

    built: DateutilParser = parser(_FixedPivot())
    return built
