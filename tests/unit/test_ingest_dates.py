"""`created_at` parsing: python-dateutil reads what the old strptime list read, the same way,
and none of dateutil's lenient defaults (fill-ins from today, unknown zones dropped, a moving
two-digit-year window) reaches a ticket."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.core.ingest import parse_date, ticket_from_record

ROOT = Path(__file__).resolve().parents[2]

# The 91 strptime formats the importer used before dateutil: the oracle for what it accepted.
_OLD_DATES = (
    "%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%m/%d/%y", "%d/%m/%y",
    "%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%b %d %Y", "%a, %d %b %Y",
)  # fmt: skip
_OLD_TIMES = ("", " %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p", "T%H:%M:%S", ", %H:%M")
OLD_FORMATS = tuple(d + t for d in _OLD_DATES for t in _OLD_TIMES)


def old_reading(text: str) -> datetime:
    """What the strptime list made of a value: the first format that matched, in order."""
    for fmt in OLD_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise AssertionError(f"no old format reads {text!r}")


def test_old_format_list_is_the_one_replaced() -> None:
    assert len(OLD_FORMATS) == 91


@settings(max_examples=400, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2067, 12, 31)),
    fmt=st.sampled_from(OLD_FORMATS),
    unpadded=st.booleans(),
)
def test_every_old_format_reads_the_same(moment: datetime, fmt: str, unpadded: bool) -> None:
    text = moment.replace(microsecond=0).strftime(fmt)
    if unpadded:  # strptime took "1.3.2025" and "9:05" as well as "01.03.2025" and "09:05"
        text = text.replace(" 0", " ").removeprefix("0")
    assert parse_date(text) == old_reading(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("03/04/2025", datetime(2025, 3, 4, tzinfo=UTC)),  # month first, as US exports
        ("25/04/2025", datetime(2025, 4, 25, tzinfo=UTC)),  # 25 cannot be a month
        ("01.03.2025 10:00", datetime(2025, 3, 1, 10, tzinfo=UTC)),  # dotted: day first
        ("04.03.2025T09:30:15", datetime(2025, 3, 4, 9, 30, 15, tzinfo=UTC)),
        ("03/04/69", datetime(1969, 3, 4, tzinfo=UTC)),  # strptime's pivot, not "today +- 50"
        ("03/04/68", datetime(2068, 3, 4, tzinfo=UTC)),
        ("Mar 1, 2025 10:00 PM", datetime(2025, 3, 1, 22, tzinfo=UTC)),
        ("03/04/2025 12:00 AM", datetime(2025, 3, 4, 0, tzinfo=UTC)),
    ],
)
def test_ambiguous_day_month_and_two_digit_years_read_as_before(
    value: str, expected: datetime
) -> None:
    assert parse_date(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "03/04/2025 09:30 +0100",
            datetime(2025, 3, 4, 9, 30, tzinfo=timezone(timedelta(hours=1))),
        ),
        ("03/04/2025 09:30 -05:30", datetime(2025, 3, 4, 15, 0, tzinfo=UTC)),
        ("03/04/2025 09:30 UTC", datetime(2025, 3, 4, 9, 30, tzinfo=UTC)),
        ("03/04/2025 09:30 Z", datetime(2025, 3, 4, 9, 30, tzinfo=UTC)),
        ("1 March 2025 at 10am", datetime(2025, 3, 1, 10, tzinfo=UTC)),
        ("March 1st, 2025", datetime(2025, 3, 1, tzinfo=UTC)),
        ("01-Mar-2025", datetime(2025, 3, 1, tzinfo=UTC)),
        ("2025.03.01", datetime(2025, 3, 1, tzinfo=UTC)),
        ("03/04/2025 10:00:00.250", datetime(2025, 3, 4, 10, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_complete_dates_the_list_missed_now_read_correctly(value: str, expected: datetime) -> None:
    assert parse_date(value) == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [
        # dateutil would fill the missing parts in from today (or from its default)
        ("March 2025", "no day"),
        ("Mar 1 2025x", ""),
        ("10:00 03/2025", ""),
        # dateutil would drop the zone with a warning and return the wall time as UTC
        ("03/04/2025 09:30 EST", "unknown time zone EST"),
        ("Mar 1, 2025 10:00 XYZT", "unknown time zone XYZT"),
        # POSIX: three hours *behind* GMT, the opposite of what a person means
        ("03/04/2025 09:30 GMT+3", ""),
        # dateutil reads these as 2003-01-02, 2001-01-01, 2025-01-02, 2025-01-03
        ("1 2 3", ""),
        ("1/1/1", ""),
        ("-1/2/2025", ""),
        ("1 3 2025", ""),
    ],
)
def test_incomplete_or_reinterpreted_dates_are_rejected(value: str, why: str) -> None:
    with pytest.raises(ValueError, match="cannot parse date") as raised:
        parse_date(value)
    assert why in str(raised.value)


@pytest.mark.parametrize(
    "value",
    ["2025", "Mar 1", "10:00", "12", "Monday", "today", "now", "next tuesday-ish",
     "yesterday-ish", "the 32nd of Smarch", "2025-02-30", "13/13/2025", "31/31/2025",
     "03/04/2025 25:00", "0/0/2025", "1740823200", "2025-03-01 UTC"],
)  # fmt: skip
def test_values_rejected_before_are_still_rejected(value: str) -> None:
    with pytest.raises(ValueError, match="cannot parse date"):
        parse_date(value)


def test_a_zone_matching_the_machines_own_is_not_read_as_local(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # dateutil maps a name found in time.tzname to the local zone; an import must not
    # depend on the machine it runs on.
    monkeypatch.setattr(time, "tzname", ("EST", "EDT"))
    with pytest.raises(ValueError, match="unknown time zone EST"):
        parse_date("03/04/2025 09:30 EST")


@pytest.mark.parametrize(
    "value",
    ["03/04/2025\x00", "03/04/2025\x1b[2J", "\u202e03/04/2025", "03/04/2025 " + "9" * 5000],
)
def test_hostile_values_are_rejected_with_a_short_escaped_reason(value: str) -> None:
    with pytest.raises(ValueError) as raised:
        ticket_from_record({"text": "x", "created_at": value}, line=1)
    reason = str(raised.value)
    assert reason.startswith("field 'created_at': cannot parse date")
    assert len(reason) < 120 and "\x1b" not in reason and "\u202e" not in reason


def test_a_megabyte_value_is_rejected_at_once() -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError):
        parse_date("1/2/2025 " * 110_000)
    assert time.perf_counter() - start < 0.5


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789/.-: ,+APMTZaprmjnuy", max_size=30))
def test_date_like_noise_raises_only_value_error(value: str) -> None:
    try:
        parsed = parse_date(value)
    except ValueError:
        return
    assert parsed.tzinfo is not None


def test_dateutil_is_imported_only_for_a_date_iso_and_rfc_2822_cannot_read() -> None:
    code = (
        "import json, sys\n"
        "from tui.core.ingest import parse_date\n"
        "parse_date('2025-03-01T10:00:00Z'); parse_date('Sat, 01 Mar 2025 10:00:00 +0000')\n"
        "before = 'dateutil' in sys.modules\n"
        "parse_date('03/04/2025 09:30')\n"
        "print(json.dumps([before, 'dateutil' in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == [False, True]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # the RFC 2822 parser used to take "PM" for a zone and read 09:30
        ("01 Mar 2025 09:30 PM", datetime(2025, 3, 1, 21, 30, tzinfo=UTC)),
        ("Jan 01, 2000 12:00 AM", datetime(2000, 1, 1, 0, 0, tzinfo=UTC)),
        # zones RFC 2822 names still go through the standard library
        ("Sat, 01 Mar 2025 10:00:00 EST", datetime(2025, 3, 1, 15, tzinfo=UTC)),
        ("Sat, 01 Mar 2025 10:00:00 GMT", datetime(2025, 3, 1, 10, tzinfo=UTC)),
        ("Sat, 01 Mar 2025 10:00:00 +0000 (UTC)", datetime(2025, 3, 1, 10, tzinfo=UTC)),
    ],
)
def test_rfc_2822_path_reads_am_pm_and_named_zones_right(value: str, expected: datetime) -> None:
    assert parse_date(value) == expected


def test_an_unknown_zone_in_a_mail_date_is_not_read_as_utc() -> None:
    # the RFC 2822 parser read "CET" as +0000; the ticket keeps the raw header instead
    with pytest.raises(ValueError, match="unknown time zone CET"):
        parse_date("Sat, 01 Mar 2025 10:00:00 CET")
    mail = (
        b"From: a@example.com\r\nSubject: hi\r\nDate: Sat, 01 Mar 2025 10:00:00 CET\r\n\r\nbody\r\n"
    )
    from tui.core.ingest import parse_bytes

    [ticket] = parse_bytes(mail, "eml").tickets
    assert ticket.created_at is None and ticket.meta["date"] == "Sat, 01 Mar 2025 10:00:00 CET"
