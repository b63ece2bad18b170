"""Money as people write it: plain decimals at every magnitude, the unit that makes a figure
meaningful, never scientific notation (issue 18)."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tui.core import money

SCIENTIFIC = re.compile(r"\d[eE][-+]?\d")
PLAIN = re.compile(r"^(< )?-?\$\d{1,3}(,\d{3})*(\.\d+)?$")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "–"),
        (0.0, "$0"),
        (7.6e-9, "< $0.000001"),  # a specialist's ticket: below the floor
        (1e-6, "$0.000001"),
        (7.6e-6, "$0.0000076"),
        (2.3e-5, "$0.000023"),
        (0.00012, "$0.00012"),
        (0.011, "$0.011"),
        (0.05, "$0.05"),
        (0.0999, "$0.10"),  # rounds up a digit: 0.10, not 0.100
        (0.996, "$1.00"),
        (3.4, "$3.40"),
        (99.99, "$99.99"),
        (100.4, "$100"),
        (12_000.0, "$12,000"),
        (1_234_567.8, "$1,234,568"),
        (-0.05, "-$0.05"),
        (float("nan"), "–"),
    ],
)
def test_usd_across_magnitudes(value: float | None, shown: str) -> None:
    assert money.usd(value) == shown


def test_a_custom_floor() -> None:
    assert money.usd(0.00004, floor=0.0001) == "< $0.0001"
    assert money.usd(0.00015, floor=0.0001) == "$0.00015"


def test_units_lead_per_1k_and_per_month() -> None:
    assert money.per_1k(7.6e-9) == "$0.0000076/1k"
    assert money.per_1k(0.00015) == "$0.15/1k"
    assert money.per_1k_amount(12.5) == "$12.50/1k"
    assert money.monthly(0.011) == "$0.011/mo"
    assert money.monthly(12_000) == "$12,000/mo"
    # 10,000 tickets a day for 30 days at $0.0004 a ticket
    assert money.monthly_at(0.0004, 10_000) == "$120/mo"
    assert money.monthly_at(None, 10_000) == money.per_1k(None) == "–"


def test_rates_keep_the_digits_a_person_typed() -> None:
    assert money.rate(0.075, "Mtok") == "$0.075/Mtok"
    assert money.rate(0.15, "Mtok") == "$0.15/Mtok"
    assert money.rate(1.1, "GPU-h") == "$1.10/GPU-h"
    assert money.rate(0.00001, "vCPU-h") == "$0.00001/vCPU-h"
    assert money.rate(1e-12, "x") == "< $0.000000001/x"


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
def test_never_scientific_and_close_to_the_value(value: float) -> None:
    shown = money.usd(value)
    assert not SCIENTIFIC.search(shown) and PLAIN.match(shown), shown
    if abs(value) >= money.FLOOR_USD:
        parsed = float(shown.replace("$", "").replace(",", ""))
        assert math.isclose(parsed, value, rel_tol=0.05, abs_tol=0.005 if abs(value) >= 1 else 0)
