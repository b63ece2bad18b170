"""kill -9 the headless router at random points: after restarts every ticket has exactly one
decision in the run, the database passes integrity_check, and no label event is lost."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui.core.demo import generate_inbox
from tui.core.learning.model import SpecialistModel
from tui.core.store import Store

ROOT = Path(__file__).resolve().parents[2]
N = 10_000

pytestmark = pytest.mark.slow


def _route_cmd(db: Path, config: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tui",
        "--db",
        str(db),
        "--config",
        str(config),
        "route",
        "--all",
        "--concurrency",
        "2",
    ]


def _decisions(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])
    finally:
        conn.close()


def test_kill_9_mid_run_then_resume(tmp_path: Path, isolated_home: Path) -> None:
    db = tmp_path / "crash.db"
    model = tmp_path / "spec.joblib"
    config = tmp_path / "c.toml"
    config.write_text(f'[backends.specialist]\ntype = "specialist"\npath = "{model}"\n')
    inbox = generate_inbox(N, seed=3)
    with Store(db) as store:
        store.import_tickets([d.ticket for d in inbox])
    labelled = [d for d in inbox if d.agent_label][:400]
    SpecialistModel.train(
        [d.ticket.text for d in labelled], [d.agent_label for d in labelled]
    ).save(model)  # type: ignore[misc]

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(11)
    labels_written = 0
    kills = 0
    for _ in range(4):
        before = _decisions(db)
        proc = subprocess.Popen(
            _route_cmd(db, config), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        # Kill somewhere in the next third of what is left, so the run never completes here
        # however fast the machine is; the final run below must resume it.
        target = before + rng.randint(100, max(101, (N - before) // 3))
        deadline = time.monotonic() + 120
        while proc.poll() is None and _decisions(db) < target and time.monotonic() < deadline:
            # an agent keeps labelling in another process while the router runs
            with Store(db) as store:
                store.add_label(
                    inbox[labels_written].ticket.id, inbox[labels_written].true_label, agent="ann"
                )
            labels_written += 1
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills == 4, "the router finished before it could be killed; raise N"

    done = subprocess.run(
        _route_cmd(db, config), env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "resuming run-" in done.stderr

    with Store(db) as store:
        assert store.integrity_ok()
        rows = store.conn.execute(
            "SELECT run_id, count(*), count(DISTINCT ticket_id) FROM decisions GROUP BY run_id"
        ).fetchall()
        assert len(rows) == 1, rows
        _run, total, distinct = rows[0]
        assert total == distinct == N
        assert store.label_event_count() == labels_written
        assert store.conn.execute("SELECT status FROM runs").fetchall() == [("done",)]
