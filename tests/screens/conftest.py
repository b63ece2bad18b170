"""Pilot fixtures: a real Store on tmp_path, a trained specialist and loopback-free test
backends registered like plugins (tests/unit/plugin_backends.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.screens.helpers import build_router, make_tickets, settings_for, train_specialist
from tui.app import TriageApp, make_app
from tui.core import registry
from tui.core.store import Store


@pytest.fixture(autouse=True)
def plugin_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILTIN, "hash", "tests.unit.plugin_backends:HashBackend")


@pytest.fixture(autouse=True)
def agent_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "maria")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "inbox.db") as opened:
        yield opened


@pytest.fixture
def specialist(tmp_path: Path) -> Path:
    tickets, truth = make_tickets(40)
    return train_specialist(tmp_path / "specialist.joblib", tickets, truth)


class AppFactory:
    """Builds the real app from backends blocks on the test's store."""

    def __init__(self, store: Store, specialist: Path) -> None:
        self.store = store
        self.specialist = specialist

    def __call__(self, backends: dict[str, dict[str, Any]] | None = None, **kw: Any) -> TriageApp:
        blocks = backends or {"specialist": {"type": "specialist", "path": str(self.specialist)}}
        watch = kw.pop("watch", None)
        settings = settings_for(blocks, **kw)
        return make_app(settings, self.store, build_router(settings, self.store), watch=watch)


@pytest.fixture
def app_for(store: Store, specialist: Path) -> AppFactory:
    return AppFactory(store, specialist)
