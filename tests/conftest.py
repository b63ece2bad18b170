"""Machine isolation for every test: a temporary TRIAGEDESK_HOME and no real API keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATASETS = SHARED / "datasets"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("TRIAGEDESK_HOME", str(home))
    for var in ("TRIAGEDESK_DB", "TRIAGEDESK_CONFIG", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    yield home


def dataset(name: str) -> Path:
    """Path to a shared dataset file; skips the test with a reason when shared/ is absent."""
    path = DATASETS / name
    if not path.exists():
        pytest.skip(f"{path} not present (the shared datasets live beside the checkout)")
    return path
