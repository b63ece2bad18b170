"""Scrubbing personal data out of ticket text before it leaves the machine as training data.

Typed placeholders (`[EMAIL]`, `[PHONE]`, `[CARD]`, `[IBAN]`) keep the sentence shape a model
learns from while removing the value. Patterns are conservative: a digit run is a card only
when it passes the Luhn check, and a phone needs separators or a leading `+`, so order
numbers and dates survive.
"""

from __future__ import annotations

import re
from collections import Counter

PII_TYPES = ("EMAIL", "IBAN", "CARD", "PHONE")

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,5}){1,5}(?![\w])"
)
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum every payment card number carries."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _iban(match: re.Match[str], counts: Counter[str]) -> str:
    """Replace an IBAN-like run, giving back trailing all-letter words it swallowed."""
    tokens = match.group(0).split(" ")
    kept = len(tokens)
    while kept > 1 and tokens[kept - 1].isalpha():
        kept -= 1
    body = "".join(tokens[:kept])
    if len(body) < 15:
        return match.group(0)
    counts["IBAN"] += 1
    rest = " ".join(tokens[kept:])
    return "[IBAN]" + (" " + rest if rest else "")


def _card(match: re.Match[str], counts: Counter[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        counts["CARD"] += 1
        return "[CARD]"
    return match.group(0)


def _phone(match: re.Match[str], counts: Counter[str]) -> str:
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    international = text.startswith(("+", "("))
    if not (7 if international else 9) <= digits <= 15 or _DATE.fullmatch(text):
        return text
    counts["PHONE"] += 1
    return "[PHONE]"


def scrub(text: str) -> tuple[str, Counter[str]]:
    """Replace e-mail addresses, IBANs, Luhn-valid card numbers and phone numbers.

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
    text = _PHONE.sub(lambda m: _phone(m, counts), text)
    return text, counts
