"""PII scrubbing where the libraries do better than the old patterns: IBANs validated by
python-stdnum (country length, mod-97), phone numbers with a country code checked by
phonenumbers for that country, with or without separators."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tui.core.pii import luhn_valid, scrub

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "text",
    [
        "iban DE89 3704 0044 0532 0130 01 please",  # checksum off by one digit
        "to GB82WEST12345698765433 please",
        "to DE89370400440532013 please",  # a German IBAN is 22 characters, this is 21
        "code AB12 CDEF GHIJ KLMN OP",  # no such country
    ],
)
def test_an_iban_with_a_bad_checksum_or_length_is_not_scrubbed_as_an_iban(text: str) -> None:
    scrubbed, counts = scrub(text)
    assert counts["IBAN"] == 0 and "[IBAN]" not in scrubbed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iban NL91 ABNA 0417 1643 00 ok", "iban [IBAN] ok"),
        ("iban FR14 2004 1010 0505 0001 3M02 606 THANKS", "iban [IBAN] THANKS"),
        ("pay BE71096123456769.", "pay [IBAN]."),
    ],
)
def test_valid_ibans_of_other_countries_are_scrubbed(text: str, expected: str) -> None:
    assert scrub(text) == (expected, Counter({"IBAN": 1}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call +442079460958 now", "call [PHONE] now"),  # no separators: the old pattern missed it
        ("ring +33 1 42 68 53 00 tomorrow", "ring [PHONE] tomorrow"),
        # a 6-digit group: the old pattern allowed at most 5 and missed it
        ("Berlin office +49 30 901820, ask for Jo", "Berlin office [PHONE], ask for Jo"),
        ("mobile +1 (415) 555-2671", "mobile [PHONE]"),
    ],
)
def test_valid_international_phones_are_scrubbed(text: str, expected: str) -> None:
    assert scrub(text) == (expected, Counter({"PHONE": 1}))


def test_a_plus_number_with_no_such_country_code_is_left() -> None:
    # the old pattern took "+", 1-3 digits and any 7-15 digits; there is no country +999
    assert scrub("build +999 1234 5678 failed") == ("build +999 1234 5678 failed", Counter())


def test_luhn_rejects_non_digits_and_wrong_checksums() -> None:
    assert luhn_valid("378282246310005")
    assert not luhn_valid("378282246310006") and not luhn_valid("4111-1111")


def test_libraries_load_on_the_first_scrub_only() -> None:
    code = (
        "import json, sys\n"
        "import tui.core.export, tui.core.pii\n"
        "before = [m in sys.modules for m in ('phonenumbers', 'stdnum')]\n"
        "tui.core.pii.scrub('call +44 20 7946 0958, iban GB82WEST12345698765432')\n"
        "print(json.dumps([before, [m in sys.modules for m in ('phonenumbers', 'stdnum')]]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == [[False, False], [True, True]]
