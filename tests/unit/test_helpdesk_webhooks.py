"""Webhooks: signed Zendesk events and Freshdesk shared-secret calls import and route at once."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.servers.helpdesk_server import freshdesk, zendesk
from tests.unit.helpdesk_setup import Sleeps, load, make_sync, use_hash_backend, write_config
from tui.core.helpdesk import HelpdeskError
from tui.core.store import Store
from tui.services.helpdesk.webhooks import WebhookReceiver, zendesk_signature

SECRET = "whsec-signing"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _post_all(
    receiver: WebhookReceiver, name: str, calls: list[tuple[dict[str, str], bytes]]
) -> list[int]:
    stop = asyncio.Event()
    port: list[int] = []
    serving = asyncio.ensure_future(receiver.serve("127.0.0.1", 0, stop, port.append))
    while not port:
        await asyncio.sleep(0.01)
    statuses = []
    async with httpx.AsyncClient() as client:
        for headers, body in calls:
            reply = await client.post(
                f"http://127.0.0.1:{port[0]}/webhooks/{name}", content=body, headers=headers
            )
            statuses.append(reply.status_code)
    await receiver.drain()
    stop.set()
    await serving
    return statuses


def _signed(body: bytes, ts: float, secret: str = SECRET) -> dict[str, str]:
    stamp = _iso(ts)
    return {
        "X-Zendesk-Webhook-Signature": zendesk_signature(secret.encode(), stamp, body),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "Content-Type": "application/json",
    }


def test_zendesk_signed_event_imports_routes_and_writes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    use_hash_backend(monkeypatch)
    monkeypatch.setenv("ZD_TOKEN", "zd-secret-token")
    monkeypatch.setenv("ZD_HOOK", SECRET)
    with zendesk() as server:
        server.add(41, age_s=1)  # too new for the export: only the webhook brings it now
        server.add(42, age_s=1)
        config = write_config(
            tmp_path / "c.toml", server.url, extra='webhook_secret_env = "ZD_HOOK"'
        )
        settings = load(config)
        good = json.dumps({"type": "zen:event-type:ticket.created", "detail": {"id": "41"}})
        other = json.dumps({"ticket": {"id": 42}}).encode()
        now = time.time()
        calls = [
            (_signed(good.encode(), now), good.encode()),
            (_signed(other, now, secret="wrong"), other),  # bad signature
            (_signed(other, now - 3600), other),  # stale: a replay an hour later
            ({"Content-Type": "application/json"}, other),  # unsigned
            (_signed(b"[]", now), b"[]"),  # signed but names no ticket
        ]

        async def run() -> list[int]:
            with Store(tmp_path / "t.db") as store:
                sync = make_sync(settings, store, "zd", Sleeps())
                lines: list[str] = []
                try:
                    receiver = WebhookReceiver({"zd": sync}, on_line=lines.append)
                    return await _post_all(receiver, "zd", calls)
                finally:
                    await sync.aclose()

        statuses = asyncio.run(run())
        assert statuses == [202, 401, 401, 401, 400]
        with Store(tmp_path / "t.db") as store:
            assert store.get_ticket("zd-41") is not None and store.get_ticket("zd-42") is None
            decision = store.latest_decision("zd-41")
            assert decision is not None and decision.label is not None
        assert len(server.notes[41]) == 1 and server.notes[42] == []


def test_freshdesk_shared_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    use_hash_backend(monkeypatch)
    monkeypatch.setenv("FD_KEY", "fd-secret-key")
    monkeypatch.setenv("FD_HOOK", SECRET)
    with freshdesk() as server:
        server.add(5)
        config = write_config(
            tmp_path / "c.toml",
            server.url,
            kind="freshdesk",
            name="fd",
            extra='webhook_secret_env = "FD_HOOK"',
        )
        settings = load(config)
        body = json.dumps({"freshdesk_webhook": {"ticket_id": 5}}).encode()

        async def run() -> list[int]:
            with Store(tmp_path / "t.db") as store:
                sync = make_sync(settings, store, "fd", Sleeps())
                try:
                    receiver = WebhookReceiver({"fd": sync})
                    return await _post_all(
                        receiver,
                        "fd",
                        [
                            ({"X-Triagedesk-Secret": "nope"}, body),
                            ({"X-Triagedesk-Secret": SECRET}, body),
                        ],
                    )
                finally:
                    await sync.aclose()

        assert asyncio.run(run()) == [401, 202]
        assert len(server.notes[5]) == 1


def test_receiver_needs_its_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    use_hash_backend(monkeypatch)
    monkeypatch.setenv("ZD_TOKEN", "zd-secret-token")
    monkeypatch.delenv("ZD_HOOK", raising=False)
    config = write_config(
        tmp_path / "c.toml", "http://127.0.0.1:9", extra='webhook_secret_env = "ZD_HOOK"'
    )
    settings = load(config)
    with Store(tmp_path / "t.db") as store:
        sync = make_sync(settings, store, "zd", Sleeps())
        with pytest.raises(HelpdeskError, match="set ZD_HOOK"):
            WebhookReceiver({"zd": sync})
        asyncio.run(sync.aclose())
