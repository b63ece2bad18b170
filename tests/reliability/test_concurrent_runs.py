"""Two runs on one database: each ticket is routed once, every call is paid for once.

Real `triagedesk route` subprocesses against a real loopback OpenAI-compatible server that
holds its answers behind a gate, so a run is caught with its tickets in flight without any
sleep: the second run is started while the first one's requests wait at the gate.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.openai_server import OpenAIServer, Recorded, Reply, ScriptedHandler
from tui.core.config import ConfigError
from tui.core.models import Ticket
from tui.core.store import Store

ROOT = Path(__file__).resolve().parents[2]
N = 40
FOREIGN = "far-away-host:99:0a1b2c3d"
"""A claim owner on another machine sharing the database (team mode): trusted until its lease
runs out, since its pid cannot be checked from here."""

pytestmark = pytest.mark.slow


class GatedServer(OpenAIServer):
    """Holds every chat completion until `gate` is set (at most two minutes)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def respond(self, handler: ScriptedHandler, request: Recorded, reply: Reply) -> None:
        if request.path.endswith("/chat/completions"):
            self.gate.wait(120)
        super().respond(handler, request, reply)


@pytest.fixture
def server() -> Iterator[GatedServer]:
    started = GatedServer().start()
    try:
        yield started
    finally:
        started.gate.set()
        started.stop()


def write_config(path: Path, server: OpenAIServer) -> Path:
    path.write_text(
        '[labels]\nbilling = "charges"\nshipping = "parcels"\n\n'
        '[routing]\nbackend = "llm"\n\n'
        "[backends.llm]\n"
        'type = "openai"\n'
        f'base_url = "{server.url}"\n'
        'model = "test-model"\n'
        "stream = false\n"
        "timeout_s = 150\n"
        "max_retries = 0\n"
        "max_concurrency = 4\n"
        # fixed: the gate holds every request, and slow start would send the first one only
        "adaptive_concurrency = false\n"
        "input_usd_per_mtok = 1.5\n"
        "output_usd_per_mtok = 6.0\n",
        encoding="utf-8",
    )
    return path


def seeded_db(path: Path, n: int = N) -> Path:
    with Store(path) as store:
        store.import_tickets([Ticket(id=f"T{i:03d}", text=f"ticket {i}") for i in range(n)])
    return path


def route_cmd(db: Path, config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tui", "--db", str(db), "--config", str(config), "route", *extra]


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TRIAGEDESK_HOME": str(home), **extra}


def spawn(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Poll until `predicate` holds (a generous bound for a loaded machine, not a speed test)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def decisions_per_ticket(db: Path) -> dict[str, int]:
    rows = query(db, "SELECT ticket_id, count(*) FROM decisions GROUP BY ticket_id")
    return {tid: n for tid, n in rows}


def test_two_runs_route_each_ticket_once_and_count_every_call(
    tmp_path: Path, isolated_home: Path, server: GatedServer
) -> None:
    db = seeded_db(tmp_path / "shared.db")
    config = write_config(tmp_path / "c.toml", server)
    env = env_for(isolated_home)
    first = spawn(route_cmd(db, config, "--concurrency", "4"), env)
    # Its first request is out: it has read and claimed its page (all 40 tickets) by now.
    wait_for(lambda: len(server.completions()) >= 1 or first.poll() is not None, "run 1")
    second = spawn(route_cmd(db, config, "--concurrency", "4"), env)
    # Run 1 has at most 4 requests in flight; a fifth can only come from run 2.
    wait_for(lambda: second.poll() is not None or len(server.completions()) > 4, "run 2 to finish")
    server.gate.set()
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = second.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2

    assert len(server.completions()) == N  # not 80: no ticket was routed twice
    assert decisions_per_ticket(db) == {f"T{i:03d}": 1 for i in range(N)}
    assert "routed 40 tickets" in out1
    assert "routed 0 tickets" in out2
    said = f"skipped 40 tickets claimed by another run (pid {first.pid})"
    assert said in out2 and said in err2  # the summary line and stderr
    assert f"which another run (pid {first.pid}) is routing" in err2

    # Cost: every call made, counted once, and the same in every aggregate.
    ((per_call, paid),) = query(db, "SELECT min(cost_usd), sum(cost_usd) FROM decisions")
    assert per_call > 0 and paid == pytest.approx(N * per_call)
    ((totals,),) = query(db, "SELECT sum(cost_usd) FROM backend_totals")
    ((hourly,),) = query(db, "SELECT sum(cost_usd) FROM cost_by_hour")
    assert totals == pytest.approx(N * per_call) and hourly == pytest.approx(N * per_call)
    stats = subprocess.run(
        [sys.executable, "-m", "tui", "--db", str(db), "--config", str(config), "stats", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stats.returncode == 0, stats.stderr
    (llm,) = json.loads(stats.stdout)
    assert llm["n"] == N and llm["cost_usd"] == pytest.approx(N * per_call)

    # Both processes shared one run; the last one out marked it done; no claim is left.
    assert query(db, "SELECT status FROM runs") == [("done",)]
    assert query(db, "SELECT count(*) FROM claims") == [(0,)]


def test_a_killed_run_gives_its_tickets_back(
    tmp_path: Path, isolated_home: Path, server: GatedServer
) -> None:
    db = seeded_db(tmp_path / "crash.db")
    config = write_config(tmp_path / "c.toml", server)
    env = env_for(isolated_home)
    doomed = spawn(route_cmd(db, config, "--all", "--concurrency", "4"), env)
    # All four of its requests are held by the gate (none can finish or be retried), so once
    # the server has recorded four, no request of the doomed run is still on its way.
    wait_for(lambda: len(server.completions()) >= 4 or doomed.poll() is not None, "the run")
    assert doomed.poll() is None
    doomed.kill()  # SIGKILL: no finally runs, its claims stay in the database
    doomed.communicate(timeout=60)
    calls_lost = len(server.completions())
    assert calls_lost == 4
    owners = query(db, "SELECT DISTINCT owner FROM claims")
    assert len(owners) == 1 and f":{doomed.pid}:" in owners[0][0]
    assert query(db, "SELECT count(*) FROM claims") == [(N,)]

    server.gate.set()
    # The pid is gone, so its claims are void at once (no lease to wait out on this host).
    again = subprocess.run(
        route_cmd(db, config, "--all", "--concurrency", "4"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert "resuming run-" in again.stderr and "skipped" not in again.stderr
    assert "routed 40 tickets" in again.stdout
    assert len(server.completions()) == calls_lost + N
    assert decisions_per_ticket(db) == {f"T{i:03d}": 1 for i in range(N)}
    assert query(db, "SELECT count(*) FROM claims") == [(0,)]
    assert query(db, "SELECT status FROM runs") == [("done",)]


def test_a_claim_from_another_machine_holds_until_its_lease_runs_out(
    tmp_path: Path, isolated_home: Path, server: GatedServer
) -> None:
    server.gate.set()
    db = seeded_db(tmp_path / "team.db")
    config = write_config(tmp_path / "c.toml", server)
    env = env_for(isolated_home)
    held = [f"T{i:03d}" for i in range(10)]
    with Store(db) as store:
        claimed = store.claim_tickets(FOREIGN, "their-run", held, lease_s=3600)
        assert [t.id for _, t in claimed.tickets] == held
    first = subprocess.run(
        route_cmd(db, config), env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr
    assert "routed 30 tickets" in first.stdout
    assert "skipped 10 tickets claimed by another run (pid 99 on far-away-host)" in first.stderr
    assert set(decisions_per_ticket(db)) == {f"T{i:03d}" for i in range(10, N)}
    assert len(server.completions()) == N - 10

    with Store(db) as store:  # their lease runs out (as if they vanished an hour ago)
        assert store.renew_claims(FOREIGN, 0) == 10
    second = subprocess.run(
        route_cmd(db, config), env=env, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr
    assert "routed 10 tickets" in second.stdout and "skipped" not in second.stderr
    assert decisions_per_ticket(db) == {f"T{i:03d}": 1 for i in range(N)}
    assert len(server.completions()) == N
    assert query(db, "SELECT count(*) FROM claims") == [(0,)]


def test_the_lease_is_configurable_and_checked(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, server: GatedServer
) -> None:
    from tui.core.claims import LEASE_ENV, claim_lease_s

    monkeypatch.setenv(LEASE_ENV, "5")
    assert claim_lease_s() == 5.0
    for bad in ("0", "-3", "nan", "inf", "soon", "1e9"):
        monkeypatch.setenv(LEASE_ENV, bad)
        with pytest.raises(ConfigError, match=LEASE_ENV):
            claim_lease_s()
    monkeypatch.delenv(LEASE_ENV)
    assert claim_lease_s() == 60.0

    db = seeded_db(tmp_path / "lease.db", 3)
    config = write_config(tmp_path / "c.toml", server)
    r = subprocess.run(
        route_cmd(db, config),
        env=env_for(isolated_home, **{LEASE_ENV: "soon"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert LEASE_ENV in r.stderr and "Traceback" not in r.stderr
    assert server.completions() == [] and decisions_per_ticket(db) == {}


async def test_the_tui_routes_with_the_same_claims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from screens.widgets.ticket_table import TicketTable
    from tests.screens.helpers import build_router, seed, settings_for, wait_until
    from tui.app import make_app
    from tui.core import registry

    monkeypatch.setitem(registry.BUILTIN, "hash", "tests.unit.plugin_backends:HashBackend")
    store = Store(tmp_path / "tui.db")
    seed(store, 20)
    held = [f"T-{i:04d}" for i in range(5)]
    store.claim_tickets(FOREIGN, "their-run", held, lease_s=3600)
    settings = settings_for({"hash": {"type": "hash"}})
    app = make_app(settings, store, build_router(settings, store))
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.screen.query_one(TicketTable)
            await wait_until(pilot, lambda: table.total_rows == 20)
            await pilot.press("R")  # route every unrouted ticket
            await wait_until(pilot, lambda: store.decision_count() == 15, timeout=60)
            await wait_until(pilot, lambda: not app.screen.batch_running, timeout=60)
            said = "Skipped 5 tickets claimed by another run (pid 99 on far-away-host)"
            await wait_until(pilot, lambda: said in [n.message for n in app._notifications])
            assert {r.ticket_id for r in store.inbox_page("unrouted")} == set(held)

            table.move_to(held[0])
            await pilot.press("r")  # route the selected ticket, which the other run holds
            one = "Skipped 1 ticket claimed by another run (pid 99 on far-away-host)"
            await wait_until(pilot, lambda: one in [n.message for n in app._notifications])
            assert store.decisions_for(held[0]) == [] and store.decision_count() == 15
        assert store.conn.execute("SELECT owner FROM claims").fetchall() == [(FOREIGN,)] * 5
    finally:
        store.close()
