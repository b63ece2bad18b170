"""Team mode's guarantees, on a real PostgreSQL server (tests/servers/postgres.py):

- four TUIs (Pilot, each its own process and agent) and two `route` runs on one database:
  no ticket is leased to two desks, and every ticket has exactly one decision in the run;
- the server restarted in the middle of a route run: the run reconnects and finishes, with
  nothing lost or duplicated;
- `kill -9` of a TUI holding a lease: the lease is void, the ticket comes back;
- the password (PGPASSWORD or ~/.pgpass, password authentication on) never appears in any
  output, file or table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest

from tests.screens.helpers import LABELS, make_tickets, seed, train_specialist
from tests.servers.postgres import Cluster
from tui.core.store import Store

ROOT = Path(__file__).resolve().parents[2]
FAR = "far-away-host:5:bo"

pytestmark = pytest.mark.slow

DESK = textwrap.dedent(
    """
    import asyncio, json, sys
    from tests.screens.helpers import build_router, settings_for
    from tui.app import make_app
    from tui.core.config.settings import TeamConfig
    from tui.core.store import Store

    db, spec, agent, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    settings = settings_for({"specialist": {"type": "specialist", "path": spec}})
    settings = settings.model_copy(update={"team": TeamConfig(agent=agent, lease_s=60)})
    store = Store(db)
    app = make_app(settings, store, build_router(settings, store))

    async def main():
        got = []
        async with app.run_test(size=(120, 40)) as pilot:
            inbox = app.screen
            leases = inbox.data.leases
            print("ready", flush=True)
            if rounds < 0:  # hold the open ticket until killed
                while leases.held is None:
                    await pilot.pause(0.05)
                print("held", leases.held, flush=True)
                while True:
                    await pilot.pause(0.1)

            async def until(predicate, seconds=20.0):
                for _ in range(int(seconds / 0.05)):
                    if predicate():
                        return True
                    await pilot.pause(0.05)
                return predicate()

            claimed = []  # what each "next" leased: not whatever the cursor opened meanwhile
            claim = leases.next

            def recorded_next():
                ticket = claim()
                if ticket is not None:
                    claimed.append(ticket)
                return ticket

            leases.next = recorded_next
            for _ in range(rounds):
                asked = len(claimed)
                await pilot.press("N")
                current = lambda: inbox.table.current and inbox.table.current.ticket_id
                if not await until(lambda: len(claimed) > asked and current() == claimed[-1]):
                    continue  # nothing free this time
                ticket = claimed[-1]
                got.append(ticket)
                await pilot.press("l")
                if not await until(lambda: app.screen is not inbox and app.focused is not None):
                    sys.exit(f"{agent}: no label picker for {ticket}")
                await pilot.press("enter")
                # labelled before the next round: a desk moving on (or quitting) with the label
                # still in flight gives the ticket back unlabelled, for another desk to claim
                row = lambda: inbox.table.row_for(ticket)
                if not await until(lambda: row() is not None and row().label is not None):
                    sys.exit(f"{agent}: the label of {ticket} was not stored")
        print(json.dumps(got), flush=True)

    asyncio.run(main())
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _config(tmp_path: Path, spec: Path) -> Path:
    labels = "".join(f'{name} = "{text}"\n' for name, text in LABELS.items())
    path = tmp_path / "team.toml"
    path.write_text(
        f'[labels]\n{labels}\n[routing]\nbackend = "specialist"\n\n'
        f'[backends.specialist]\ntype = "specialist"\npath = "{spec}"\n',
        encoding="utf-8",
    )
    return path


def _route(url: str, config: Path, home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tui", "--db", url, "--config", str(config), "route"],
        env={**_env(), "TRIAGEDESK_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _duplicates(store: Store) -> int:
    return int(
        store.query(
            "SELECT count(*) FROM (SELECT run_id, ticket_id FROM decisions"
            " GROUP BY run_id, ticket_id HAVING count(*) > 1) d"
        )[0][0]
    )


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    return train_specialist(tmp_path / "spec.joblib", *make_tickets(40))


def test_four_desks_and_two_route_runs_on_one_database(
    pg_url: str, spec: Path, tmp_path: Path, isolated_home: Path
) -> None:
    n = 600
    with Store(pg_url) as store:
        seed(store, n)
    config = _config(tmp_path, spec)
    desks = [
        subprocess.Popen(
            [sys.executable, "-c", DESK, pg_url, str(spec), f"agent{i}", "6"],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(4)
    ]
    for desk in desks:
        assert desk.stdout is not None and desk.stdout.readline().strip() == "ready"
    routes = [_route(pg_url, config, isolated_home) for _ in range(2)]
    for proc in routes:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    claimed: dict[str, list[str]] = {}
    for i, desk in enumerate(desks):
        out, err = desk.communicate(timeout=600)
        assert desk.returncode == 0, err[-2000:]
        claimed[f"agent{i}"] = json.loads(out.strip().splitlines()[-1])
    every = [t for ids in claimed.values() for t in ids]
    assert len(every) >= 12, claimed  # the desks did claim (most of their rounds)
    assert len(every) == len(set(every)), f"a ticket leased to two desks: {claimed}"
    with Store(pg_url) as store:
        assert _duplicates(store) == 0
        runs = store.query("SELECT run_id, count(*) FROM decisions GROUP BY run_id")
        assert len(runs) == 1 and runs[0][1] == n  # one shared run, every ticket once
        by_ticket: dict[str, set[str]] = defaultdict(set)
        for ticket_id, agent in store.query(
            "SELECT ticket_id, agent FROM label_events WHERE source != 'undo'"
        ):
            by_ticket[ticket_id].add(agent)
        assert all(len(agents) == 1 for agents in by_ticket.values()), by_ticket
        for agent, ids in claimed.items():
            assert all(by_ticket[t] == {agent} for t in ids)
        assert store.agent_leases() == {}  # every desk quit: every lease given back


def test_a_server_restart_mid_route_is_ridden_out(
    pg_cluster: Cluster, pg_url: str, spec: Path, tmp_path: Path, isolated_home: Path
) -> None:
    n = 20_000
    with Store(pg_url) as store:
        seed(store, n)
    proc = _route(pg_url, _config(tmp_path, spec), isolated_home)
    with Store(pg_url) as store:
        deadline = time.monotonic() + 300
        while store.decision_count() < 1000 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = store.decision_count()
    pg_cluster.restart()
    assert proc.poll() is None and 1000 <= before < n, "the run was not in the middle"
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    with Store(pg_url) as store:
        assert _duplicates(store) == 0
        assert store.count_unrouted() == 0
        assert store.decision_count() == n  # nothing lost, nothing twice
        assert [r[0] for r in store.query("SELECT status FROM runs")] == ["done"]


def test_kill_9_of_a_desk_gives_its_ticket_back(pg_url: str, spec: Path) -> None:
    with Store(pg_url) as store:
        seed(store, 5)
    desk = subprocess.Popen(
        [sys.executable, "-c", DESK, pg_url, str(spec), "carla", "-1"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert desk.stdout is not None and desk.stdout.readline().strip() == "ready"
    line = desk.stdout.readline().split()
    assert line[:1] == ["held"], desk.stderr
    held = line[1]
    with Store(pg_url) as store:
        assert store.agent_leases() == {held: "carla"}
        desk.send_signal(signal.SIGKILL)
        desk.wait()
        assert store.agent_leases() == {}  # its process is gone: void before it expires
        assert store.claim_for_agent("bo", FAR, lease_s=60, ids=[held]) == [held]


def test_the_password_never_appears(
    pg_cluster: Cluster, spec: Path, tmp_path: Path, isolated_home: Path
) -> None:
    """Password authentication on (scram), the password in PGPASSWORD, then in ~/.pgpass:
    every command works, and the password is in no output, no file of ours, no table."""
    secret = "s3cret-Zq8-never-shown"
    user = "pwagent"
    hba = pg_cluster.data / "pg_hba.conf"
    rules = hba.read_text()
    if user not in rules:
        hba.write_text(f"host all {user} 127.0.0.1/32 scram-sha-256\n" + rules)
        pg_cluster.pg_ctl("reload")
    name = f"pw_{os.getpid()}_{int(time.time() * 1000) % 100000}"
    with psycopg.connect(pg_cluster.url(), autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone():
            admin.execute(f"ALTER ROLE {user} PASSWORD '{secret}'")
        else:
            admin.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{secret}'")
        admin.execute(f'CREATE DATABASE "{name}" OWNER {user}')
    url = f"postgresql://{user}@127.0.0.1:{pg_cluster.port}/{name}"
    tickets = tmp_path / "t.jsonl"
    tickets.write_text(
        "".join(
            json.dumps({"id": f"P{i}", "text": t.text}) + "\n"
            for i, t in enumerate(make_tickets(20)[0])
        )
    )
    config = _config(tmp_path, spec)
    base = {**_env(), "TRIAGEDESK_HOME": str(isolated_home), "HOME": str(tmp_path)}
    base.pop("PGPASSWORD", None)

    def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tui", "--db", url, "--config", str(config), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )

    outputs = []
    refused = cli(base, "stats")  # no password anywhere: refused by the server, not shown
    assert refused.returncode == 2 and "password" in refused.stderr
    outputs.append(refused.stdout + refused.stderr)
    with_env = {**base, "PGPASSWORD": secret}
    for args in (["import", str(tickets)], ["route"], ["stats"], ["claim", "--agent", "ana"]):
        done = cli(with_env, *args)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
    pgpass = tmp_path / ".pgpass"
    pgpass.write_text(f"127.0.0.1:{pg_cluster.port}:{name}:{user}:{secret}\n")
    pgpass.chmod(0o600)
    done = cli(base, "release", "--agent", "ana")
    assert done.returncode == 0 and "released 1 ticket" in done.stdout, done.stderr
    outputs.append(done.stdout + done.stderr)
    in_url = cli(with_env, "--db", url.replace(f"{user}@", f"{user}:{secret}@"), "stats")
    assert in_url.returncode == 2
    outputs.append(in_url.stdout + in_url.stderr)
    assert all(secret not in text for text in outputs)
    for path in isolated_home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    with psycopg.connect(pg_cluster.url(name), autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        assert "tickets" in tables
        for table in tables:
            for (row,) in conn.execute(f"SELECT t::text FROM {table} t"):
                assert secret not in row, table
