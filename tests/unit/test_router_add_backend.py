"""Adding a backend to a running router/desk (a fine-tune just finished): the settings are
replaced, the new backend routes, an existing name is refused and nothing changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.screens.helpers import build_router, make_tickets, settings_for
from tui.core import registry
from tui.core.config import ConfigError
from tui.core.store import Store
from tui.services.desk import Desk


@pytest.fixture(autouse=True)
def plugin_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILTIN, "hash", "tests.unit.plugin_backends:HashBackend")


async def test_added_backend_is_listed_swappable_and_routes(tmp_path: Path) -> None:
    settings = settings_for({"a": {"type": "hash"}})
    new = settings_for({"ft": {"type": "hash"}}).backends["ft"]
    with Store(tmp_path / "d.db") as store:
        router = build_router(settings, store)
        desk = Desk(settings, store, router)
        desk.add_backend("ft", new)
        assert list(desk.settings.backends) == ["a", "ft"] and desk.settings is router.settings
        assert list(settings.backends) == ["a"], "the old settings object is not changed"
        router.swap("ft")
        ticket = make_tickets(1)[0][0]
        decision = await router.route_one(ticket)
        assert decision.backend == "ft" and decision.ok
        with pytest.raises(ConfigError, match="already configured"):
            desk.add_backend("a", new)
        assert list(desk.settings.backends) == ["a", "ft"]
        await router.aclose()
