"""Freshdesk sync through the real client against a loopback server speaking Freshdesk's API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.servers.helpdesk_server import Fault, FreshdeskServer, freshdesk
from tests.unit.helpdesk_setup import Sleeps, load, make_sync, use_hash_backend, write_config
from tui.core.helpdesk import HelpdeskAuthError
from tui.core.store import Store
from tui.services.helpdesk import SyncReport

KEY = "fd-secret-key"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> FreshdeskServer:
    use_hash_backend(monkeypatch)
    monkeypatch.setenv("FD_KEY", KEY)
    with freshdesk(max_pages=2) as srv:
        yield srv


def _config(tmp_path: Path, server: FreshdeskServer, extra: str = "") -> Path:
    return write_config(tmp_path / "c.toml", server.url, kind="freshdesk", name="fd", extra=extra)


def _once(config: Path, db: Path, sleeps: Sleeps, **kwargs: object) -> SyncReport:
    settings = load(config)

    async def run() -> SyncReport:
        with Store(db) as store:
            sync = make_sync(settings, store, "fd", sleeps, **kwargs)
            try:
                return await sync.once()
            finally:
                await sync.aclose()

    return asyncio.run(run())


def test_windows_split_past_the_page_limit(server: FreshdeskServer, tmp_path: Path) -> None:
    for i in range(1, 12):
        server.add(i, age_s=5000 - 100 * i)  # each its own second
    db = tmp_path / "t.db"
    report = _once(_config(tmp_path, server), db, Sleeps(), per_page=2, max_pages=2)
    assert report.new == 11
    lists = [r for r in server.requests if r.path == "/api/v2/tickets"]
    assert max(int(r.query["page"]) for r in lists) == 2, "never asks past the page limit"
    assert len({r.query["updated_since"] for r in lists}) >= 3, "a new window after 2 pages"
    assert all(
        r.query["order_by"] == "updated_at" and r.query["order_type"] == "asc" for r in lists
    )
    with Store(db) as store:
        assert store.ticket_count() == 11
        ticket = store.get_ticket("fd-4")
        assert ticket is not None and ticket.customer == "buyer@example.com"
        assert ticket.channel == "email" and ticket.text.startswith("subject 4")
        cursor = json.loads(store.pull_cursor("fd") or "{}")
        assert cursor["page"] == 1


def test_writeback_keeps_agent_tags_and_notes_once(server: FreshdeskServer, tmp_path: Path) -> None:
    server.add(1)
    server.add(2)
    extra = 'label_field = "cf_triage"\nconfidence_field = "cf_conf"\n[helpdesk.fd.labels.billing]\ngroup_id = 5'
    config = _config(tmp_path, server, extra)
    db = tmp_path / "t.db"
    report = _once(config, db, Sleeps())
    assert report.pushed == 2
    for i in (1, 2):
        t = server.tickets[i]
        label = t["custom_fields"]["cf_triage"]
        assert t["custom_fields"]["cf_conf"] == 0.75
        assert t["tags"] == ["vip", f"triagedesk_{label}"]
        assert (t["group_id"] == 5) == (label == "billing")
        (note,) = server.notes[i]
        assert note["private"] is True and f"routed this ticket: {label}" in note["body"]
        auth = [r.headers["authorization"] for r in server.requests]
        assert all(a.startswith("Basic ") for a in auth)
    assert _once(config, db, Sleeps()).pushed == 0
    assert all(len(server.notes[i]) == 1 for i in (1, 2))


def test_stale_stamp_is_a_conflict(server: FreshdeskServer, tmp_path: Path) -> None:
    server.add(1)
    settings = load(_config(tmp_path, server))

    async def run() -> SyncReport:
        with Store(tmp_path / "t.db") as store:
            sync = make_sync(settings, store, "fd", Sleeps())
            try:
                report = SyncReport()
                await sync.pull(report)
                await sync.route(report)
                server.agent_edit(1, tags=["mine"])
                await sync.push(report)
                return report
            finally:
                await sync.aclose()

    report = asyncio.run(run())
    assert len(report.conflicts) == 1 and server.tickets[1]["tags"] == ["mine"]
    assert server.notes[1] == []


def test_rate_limit_and_partial_then_empty_pages(server: FreshdeskServer, tmp_path: Path) -> None:
    server.add(1)
    server.faults.append(Fault(1, 429, {"Retry-After": "3"}, path="/api/v2/tickets"))
    sleeps = Sleeps()
    config = _config(tmp_path, server)
    db = tmp_path / "t.db"
    assert _once(config, db, sleeps).new == 1
    assert 3.0 in sleeps.waits
    report = _once(config, db, Sleeps())
    assert (report.new, report.updated, report.pushed) == (
        0,
        0,
        0,
    )  # the edge ticket again: kept once


def test_bad_key_names_the_variable(
    server: FreshdeskServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FD_KEY", "not-the-key")
    with pytest.raises(HelpdeskAuthError, match="FD_KEY") as caught:
        _once(_config(tmp_path, server), tmp_path / "t.db", Sleeps())
    assert "not-the-key" not in str(caught.value)


def test_missing_token_says_where_to_put_it(
    server: FreshdeskServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FD_KEY")
    with pytest.raises(HelpdeskAuthError, match="no API token: set FD_KEY"):
        _once(_config(tmp_path, server), tmp_path / "t.db", Sleeps())
