"""kill -9 the TUI while it routes the whole inbox and an agent labels: the database stays
intact, no ticket has two decisions in one run, no label is lost, and the rest routes after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.screens.helpers import make_tickets, seed, train_specialist
from tui.core.store import Store

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

TICKETS = 60_000
KILL_AFTER = 500
"""The kill comes once this many decisions are stored: early in a run long enough that a fast
moment on the machine (the specialist routes thousands a second) cannot finish it first."""

TUI = textwrap.dedent(
    """
    import asyncio, sys
    from tests.screens.helpers import build_router, settings_for
    from tui.app import make_app
    from tui.core.store import Store

    db, spec = sys.argv[1], sys.argv[2]
    settings = settings_for({"specialist": {"type": "specialist", "path": spec}})
    store = Store(db)
    app = make_app(settings, store, build_router(settings, store))

    async def main():
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.5)
            await pilot.press("R")   # route all unrouted, in the app's workers
            await pilot.press("l")   # an agent labels the selected ticket meanwhile
            await pilot.press("b", "i", "l", "l", "enter")
            print("routing", flush=True)
            while True:
                await pilot.pause(0.05)

    asyncio.run(main())
    """
)


def test_kill_9_the_tui_mid_route(tmp_path: Path) -> None:
    db = tmp_path / "tui-crash.db"
    with Store(db) as store:
        seed(store, TICKETS)
    spec = train_specialist(tmp_path / "spec.joblib", *make_tickets(40))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", TUI, str(db), str(spec)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "routing", proc.stderr
    deadline = time.monotonic() + 120
    with Store(db) as store:
        # The label is written by a worker thread after the keys are pressed, so on a loaded
        # machine it can land after the first decisions: wait for both before the kill.
        while time.monotonic() < deadline and (
            store.decision_count() < KILL_AFTER or store.label_event_count() < 1
        ):
            time.sleep(0.05)
        labels_before = store.label_event_count()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Store(db) as store:
        assert store.integrity_ok()
        done = store.decision_count()
        assert KILL_AFTER <= done < TICKETS, "the TUI finished before it was killed"
        dupes = store.conn.execute(
            "SELECT count(*) FROM (SELECT run_id, ticket_id FROM decisions GROUP BY 1, 2 HAVING count(*) > 1)"
        ).fetchone()[0]
        assert dupes == 0
        assert store.label_event_count() == labels_before >= 1
    config = tmp_path / "c.toml"
    config.write_text(f'[backends.specialist]\ntype = "specialist"\npath = "{spec}"\n')
    rest = subprocess.run(
        [sys.executable, "-m", "tui", "--db", str(db), "--config", str(config), "route"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rest.returncode == 0, rest.stderr
    with Store(db) as store:
        assert store.count_unrouted() == 0
        assert store.integrity_ok()
        routed = store.conn.execute("SELECT count(DISTINCT ticket_id) FROM decisions").fetchone()[0]
        assert routed == TICKETS
