"""Shared set-up of the helpdesk tests: a config for a loopback server, the hash backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tui.core import registry
from tui.core.config import Settings, load_settings
from tui.core.store import Store
from tui.services.helpdesk import HelpdeskSync
from tui.services.helpdesk.freshdesk import FreshdeskClient
from tui.services.helpdesk.http import HelpdeskHTTP, helpdesk_token
from tui.services.helpdesk.sync import HelpdeskClient
from tui.services.helpdesk.zendesk import ZendeskClient


def use_hash_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILTIN, "hash", "tests.unit.plugin_backends:HashBackend")


def write_config(
    path: Path,
    url: str,
    *,
    kind: str = "zendesk",
    name: str = "zd",
    backend: str = "hash",
    extra: str = "",
    rpm: int = 100_000,
) -> Path:
    auth = (
        'email = "bot@acme.test"\ntoken_env = "ZD_TOKEN"'
        if kind == "zendesk"
        else 'token_env = "FD_KEY"'
    )
    path.write_text(
        f"""[labels]
billing = "money"
shipping = "parcels"
[routing]
backend = "{backend}"
reference_backend = ""
[backends.hash]
type = "{backend}"
[helpdesk.{name}]
type = "{kind}"
base_url = "{url}"
{auth}
writeback = "apply"
requests_per_minute = {rpm}
start_time = 2020-01-01T00:00:00Z
{extra}
""",
        encoding="utf-8",
    )
    return path


class Sleeps:
    """A sleep that records what it was asked and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client_for(settings: Settings, name: str, sleep: Sleeps, **kwargs: Any) -> HelpdeskClient:
    config = settings.helpdesk[name]
    http = HelpdeskHTTP(config, helpdesk_token(config), sleep=sleep)
    if config.type == "zendesk":
        return ZendeskClient(http, **kwargs)
    return FreshdeskClient(http, **kwargs)


def make_sync(
    settings: Settings, store: Store, name: str, sleep: Sleeps, **kwargs: Any
) -> HelpdeskSync:
    return HelpdeskSync(settings, store, name, client=client_for(settings, name, sleep, **kwargs))


def load(path: Path) -> Settings:
    return load_settings(path, required=True)
