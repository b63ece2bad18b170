"""Fixtures shared by the reliability tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under a lax and an open umask: private files must be private under both."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)
