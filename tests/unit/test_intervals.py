"""The Wilson interval against published reference values."""

from __future__ import annotations

import pytest

from tui.core.intervals import wilson_interval


def test_matches_reference_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17, table I: 81/263 -> 0.2553 to 0.3662.
    interval = wilson_interval(81, 263)
    assert interval.low == pytest.approx(0.2553, abs=5e-5)
    assert interval.high == pytest.approx(0.3662, abs=5e-5)


def test_edges_stay_inside_zero_one() -> None:
    perfect = wilson_interval(40, 40)
    assert perfect.high == 1.0 and perfect.low is not None and 0.9 < perfect.low < 0.92
    none = wilson_interval(0, 10)
    assert none.low == 0.0 and none.high is not None and 0.27 < none.high < 0.28
    empty = wilson_interval(0, 0)
    assert empty.value is None and empty.low is None and empty.high is None


def test_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
    with pytest.raises(ValueError):
        wilson_interval(-1, 4)
