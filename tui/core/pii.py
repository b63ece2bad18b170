"""Scrubbing personal data out of ticket text before it leaves the machine as training data.

Typed placeholders (`[EMAIL]`, `[PHONE]`, `[CARD]`, `[IBAN]`) keep the sentence shape a model
learns from while removing the value. Detection is conservative, so order numbers and dates
survive:

- an IBAN is scrubbed only when python-stdnum validates it (country length and mod-97
  checksum), so a mistyped or made-up one is left as written;
- a digit run of 13-19 is a card only when it passes the Luhn check (python-stdnum);
- a phone number written with `+` and a country code is found and length-checked for its
  country by phonenumbers (Google's libphonenumber), with or without separators;
- one written without a country code can only be read against a region, and the export has
  none to go by, so it keeps the old rule: separators, 9-15 digits (7 when it starts with an
  area code in parentheses), and not a date. That also covers `(555) 123-4567`.

The libraries are imported on the first scrub: they cost about a quarter of a second, and
only `export --scrub-pii` needs them.
"""

from __future__ import annotations

import re
from collections import Counter

PII_TYPES = ("EMAIL", "IBAN", "CARD", "PHONE")

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_NATIONAL_PHONE = re.compile(
    r"(?<![\w+])(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,5}){1,5}(?![\w])"
)
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum every payment card number carries."""
    from stdnum import luhn

    return bool(luhn.is_valid(digits))


def _iban(match: re.Match[str], counts: Counter[str]) -> str:
    """Replace a valid IBAN, giving back trailing words the pattern swallowed ("... 00 THANKS").

    The longest run of leading tokens that validates wins; none validating leaves the text.
    """
    from stdnum import iban

    tokens = match.group(0).split(" ")
    for kept in range(len(tokens), 0, -1):
        body = "".join(tokens[:kept])
        if len(body) >= 15 and iban.is_valid(body):
            counts["IBAN"] += 1
            rest = " ".join(tokens[kept:])
            return "[IBAN]" + (" " + rest if rest else "")
    return match.group(0)


def _card(match: re.Match[str], counts: Counter[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        counts["CARD"] += 1
        return "[CARD]"
    return match.group(0)


def _international_phones(text: str, counts: Counter[str]) -> str:
    """Replace every `+` number phonenumbers finds possible for its country code."""
    import phonenumbers

    found = list(
        phonenumbers.PhoneNumberMatcher(text, None, leniency=phonenumbers.Leniency.POSSIBLE)
    )
    for match in reversed(found):  # from the end, so earlier offsets stay right
        counts["PHONE"] += 1
        text = text[: match.start] + "[PHONE]" + text[match.end :]
    return text


def _national_phone(match: re.Match[str], counts: Counter[str]) -> str:
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    if not (7 if text.startswith("(") else 9) <= digits <= 15 or _DATE.fullmatch(text):
        return text
    counts["PHONE"] += 1
    return "[PHONE]"


def scrub(text: str) -> tuple[str, Counter[str]]:
    """Replace e-mail addresses, valid IBANs, Luhn-valid card numbers and phone numbers.

    Returns:
        The scrubbed text and how many items of each type were replaced.
    """
    counts: Counter[str] = Counter()

    def email(match: re.Match[str]) -> str:
        counts["EMAIL"] += 1
        return "[EMAIL]"

    text = _EMAIL.sub(email, text)
    text = _IBAN.sub(lambda m: _iban(m, counts), text)
    text = _CARD.sub(lambda m: _card(m, counts), text)
    if "+" in text:
        text = _international_phones(text, counts)
    text = _NATIONAL_PHONE.sub(lambda m: _national_phone(m, counts), text)
    return text, counts
