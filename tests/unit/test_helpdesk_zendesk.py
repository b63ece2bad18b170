"""Zendesk sync through the real client against a loopback server speaking Zendesk's API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.servers.helpdesk_server import Fault, ZendeskServer, zendesk
from tests.unit.helpdesk_setup import Sleeps, load, make_sync, use_hash_backend, write_config
from tui.core.helpdesk import HelpdeskAuthError, HelpdeskError
from tui.core.store import Store
from tui.services.helpdesk import SyncReport

TOKEN = "zd-secret-token"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> ZendeskServer:
    use_hash_backend(monkeypatch)
    monkeypatch.setenv("ZD_TOKEN", TOKEN)
    with zendesk() as srv:
        yield srv


def _once(settings_path: Path, db: Path, sleeps: Sleeps, **kwargs: object) -> SyncReport:
    settings = load(settings_path)

    async def run() -> SyncReport:
        with Store(db) as store:
            sync = make_sync(settings, store, "zd", sleeps, **kwargs)
            try:
                return await sync.once()
            finally:
                await sync.aclose()

    return asyncio.run(run())


def test_pull_pages_by_cursor_routes_and_writes_back_once(
    server: ZendeskServer, tmp_path: Path
) -> None:
    for i in range(1, 8):
        server.add(i, age_s=1000 - i)
    config = write_config(
        tmp_path / "c.toml",
        server.url,
        extra='label_field = 555\n[helpdesk.zd.labels.billing]\ngroup_id = 42\ntags = ["billing"]',
    )
    db = tmp_path / "t.db"
    report = _once(config, db, Sleeps(), per_page=3)
    assert (report.pages, report.new, report.routed, report.pushed) == (3, 7, 7, 7)
    exports = [r for r in server.requests if "incremental" in r.path]
    assert "start_time" in exports[0].query and "cursor" not in exports[0].query
    assert all("cursor" in r.query for r in exports[1:])
    with Store(db) as store:
        ticket = store.get_ticket("zd-3")
        assert ticket is not None
        assert ticket.customer == "customer@example.com" and ticket.channel == "email"
        assert ticket.meta["helpdesk_id"] == 3 and ticket.meta["tags"] == ["vip"]
        labels = {f"zd-{i}": store.latest_decision(f"zd-{i}").label for i in range(1, 8)}  # type: ignore[union-attr]
    for i in range(1, 8):
        t = server.tickets[i]
        label = labels[f"zd-{i}"]
        assert "vip" in t["tags"], "the agents' tags are kept"
        assert (t["group_id"] == 42) == (label == "billing")
        assert ("billing" if label == "billing" else "triagedesk_shipping") in t["tags"]
        assert t["custom_fields"] == {555: label}
        (note,) = server.notes[i]
        assert note["public"] is False
        assert f"routed this ticket: {label}" in note["body"] and "backend hash" in note["body"]
        assert "confidence 0.75" in note["body"] and "latency" in note["body"]
    # a rerun pulls nothing new and pushes nothing twice
    again = _once(config, db, Sleeps(), per_page=3)
    assert (again.new, again.routed, again.pushed) == (0, 0, 0)
    assert all(len(server.notes[i]) == 1 for i in range(1, 8))


def test_last_minute_is_pulled_by_the_next_pass(server: ZendeskServer, tmp_path: Path) -> None:
    server.add(1, age_s=600)
    server.add(2, age_s=5)  # inside the minute the export withholds
    config = write_config(tmp_path / "c.toml", server.url)
    db = tmp_path / "t.db"
    assert _once(config, db, Sleeps()).new == 1
    server.now = lambda: time.time() + 120  # type: ignore[method-assign]
    assert _once(config, db, Sleeps()).new == 1
    with Store(db) as store:
        assert store.ticket_count() == 2


def test_start_time_is_kept_out_of_the_last_minute(
    server: ZendeskServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.add(1, age_s=600)
    config = write_config(tmp_path / "c.toml", server.url).read_text()
    config = config.replace("2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z")
    (tmp_path / "c.toml").write_text(config)
    report = _once(tmp_path / "c.toml", tmp_path / "t.db", Sleeps())
    assert report.pages == 1  # a start_time in the future would be refused with 400


def test_429_retry_after_and_5xx_and_drops_are_retried(
    server: ZendeskServer, tmp_path: Path
) -> None:
    server.add(1)
    server.faults += [
        Fault(1, 429, {"Retry-After": "7"}, path="incremental"),
        Fault(1, 503, path="incremental"),
        Fault(1, drop=True, path="incremental"),
        Fault(1, 502, path="/tickets/1.json"),
    ]
    sleeps = Sleeps()
    report = _once(write_config(tmp_path / "c.toml", server.url), tmp_path / "t.db", sleeps)
    assert (report.new, report.pushed) == (1, 1)
    assert 7.0 in sleeps.waits
    assert len(server.notes[1]) == 1


def test_ceiling_and_remaining_budget_pace_requests(server: ZendeskServer, tmp_path: Path) -> None:
    for i in range(1, 4):
        server.add(i)
    server.remaining = 1
    sleeps = Sleeps()
    config = write_config(tmp_path / "c.toml", server.url, rpm=30)
    _once(config, tmp_path / "t.db", sleeps, per_page=1)
    assert sleeps.waits and max(sleeps.waits) >= 30.0  # one left: the rest of the minute
    server.remaining = None
    sleeps = Sleeps()
    for i in range(4, 7):
        server.add(i)
    _once(config, tmp_path / "t.db", sleeps, per_page=1)
    assert sleeps.waits and all(w <= 2.0 + 1e-6 for w in sleeps.waits)  # 30/min: 2 s apart


def test_bad_token_stops_with_the_variable_never_the_token(
    server: ZendeskServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.add(1)
    monkeypatch.setenv("ZD_TOKEN", "wrong-token-value")
    with pytest.raises(HelpdeskAuthError) as caught:
        _once(write_config(tmp_path / "c.toml", server.url), tmp_path / "t.db", Sleeps())
    message = str(caught.value)
    assert "ZD_TOKEN" in message and "wrong-token-value" not in message
    assert "HTTP 401" in message and "\n" not in message
    with Store(tmp_path / "t.db") as store:
        (state,) = store.helpdesk_states(["zd"])
        assert state.last_error is not None and "wrong-token-value" not in state.last_error


def test_echoed_token_is_redacted_from_errors(server: ZendeskServer, tmp_path: Path) -> None:
    server.faults.append(Fault(10, 500, body=f'{{"echo": "{TOKEN}"}}', path="incremental"))
    with pytest.raises(HelpdeskError) as caught:
        _once(write_config(tmp_path / "c.toml", server.url), tmp_path / "t.db", Sleeps())
    assert TOKEN not in str(caught.value) and "server error (HTTP 500)" in str(caught.value)


def test_conflict_is_recorded_and_never_overwritten(server: ZendeskServer, tmp_path: Path) -> None:
    server.add(1)
    config = write_config(tmp_path / "c.toml", server.url)
    db = tmp_path / "t.db"
    settings = load(config)

    async def run() -> SyncReport:
        with Store(db) as store:
            sync = make_sync(settings, store, "zd", Sleeps())
            try:
                report = SyncReport()
                await sync.pull(report)
                await sync.route(report)
                server.agent_edit(1, group_id=999, tags=["vip", "agent_tag"])
                await sync.push(report)
                return report
            finally:
                await sync.aclose()

    report = asyncio.run(run())
    assert len(report.conflicts) == 1 and report.pushed == 0
    assert server.tickets[1]["group_id"] == 999 and server.tickets[1]["tags"] == [
        "vip",
        "agent_tag",
    ]
    assert server.notes[1] == []
    with Store(db) as store:
        (state,) = store.helpdesk_states(["zd"])
        assert state.conflicts == 1
        link = store.ticket_link("zd-1")
        assert link is not None and link.push_state == "conflict"
    again = _once(config, db, Sleeps())
    assert again.pushed == 0 and server.notes[1] == []  # the conflict is not retried over it


def test_agent_correction_pushes_the_correction(server: ZendeskServer, tmp_path: Path) -> None:
    server.add(1)
    config = write_config(tmp_path / "c.toml", server.url)
    db = tmp_path / "t.db"
    _once(config, db, Sleeps())
    with Store(db) as store:
        first = store.latest_decision("zd-1")
        assert first is not None and first.label is not None
        other = "shipping" if first.label == "billing" else "billing"
        store.add_label("zd-1", other, agent="ana")
    report = _once(config, db, Sleeps())
    assert report.pushed == 1
    ticket = server.tickets[1]
    assert (
        f"triagedesk_{other}" in ticket["tags"]
        and f"triagedesk_{first.label}" not in ticket["tags"]
    )
    assert (
        len(server.notes[1]) == 2
        and f"agent set the label to {other}" in server.notes[1][1]["body"]
    )
    assert _once(config, db, Sleeps()).pushed == 0


def test_hostile_ticket_is_skipped_with_one_line(server: ZendeskServer, tmp_path: Path) -> None:
    server.add(1)
    server.add(2, description="x" * 300_000)
    server.add(3)
    report = _once(write_config(tmp_path / "c.toml", server.url), tmp_path / "t.db", Sleeps())
    assert report.new == 2
    (line,) = report.rejected
    assert line.startswith("zd ticket 2:") and "limit" in line and "\n" not in line


def test_empty_export_and_writeback_off(server: ZendeskServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", server.url)
    config.write_text(config.read_text().replace('writeback = "apply"', 'writeback = "off"'))
    db = tmp_path / "t.db"
    assert _once(config, db, Sleeps()).pages == 1
    server.add(1)
    report = _once(config, db, Sleeps())
    assert (report.new, report.routed, report.pushed) == (1, 1, 0)
    assert server.notes[1] == [] and not server.writes(1)


def test_change_between_passes_is_a_conflict_for_the_queued_push(
    server: ZendeskServer, tmp_path: Path
) -> None:
    server.add(1)
    config = write_config(tmp_path / "c.toml", server.url, extra="max_retries = 0")
    db = tmp_path / "t.db"
    server.faults.append(Fault(1, 503, path="/tickets/1.json"))
    first = _once(config, db, Sleeps())
    assert len(first.failed) == 1 and first.pushed == 0
    server.agent_edit(1, group_id=77)  # after the push was queued with the older stamp
    server.now = lambda: time.time() + 120  # type: ignore[method-assign]
    second = _once(config, db, Sleeps())  # its pull sees the edit, its push must not win
    assert second.updated == 1 and len(second.conflicts) == 1 and second.pushed == 0
    assert server.tickets[1]["group_id"] == 77 and server.notes[1] == []


def test_a_reply_past_the_size_cap_is_refused_and_nothing_is_stored(
    server: ZendeskServer, tmp_path: Path
) -> None:
    """A hostile or broken helpdesk cannot make the sync buffer without bound."""
    for i in range(1, 4):
        server.add(i, age_s=1000 - i)
    config = write_config(tmp_path / "c.toml", server.url)
    db = tmp_path / "t.db"
    settings = load(config)

    async def run() -> SyncReport:
        with Store(db) as store:
            sync = make_sync(settings, store, "zd", Sleeps())
            sync.client.http.max_reply_bytes = 200  # one export page is more than this
            try:
                return await sync.once()
            finally:
                await sync.aclose()

    with pytest.raises(HelpdeskError, match="reply larger than 200 bytes, refused"):
        asyncio.run(run())
    with Store(db) as store:
        assert store.ticket_count() == 0
    assert len([r for r in server.requests if "incremental" in r.path]) == 1  # not retried
