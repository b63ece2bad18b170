"""Several processes on one database file: a headless `route` and two agents labelling.

No "database is locked" may reach anyone: WAL, a busy timeout, short IMMEDIATE transactions
and retries in the store make the writers queue instead of failing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tui.core.demo import generate_inbox
from tui.core.learning.model import SpecialistModel
from tui.core.store import Store

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

AGENT = textwrap.dedent(
    """
    import sys
    from tui.core.store import Store
    db, agent, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with Store(db) as store:
        ids = [r[0] for r in store.conn.execute("SELECT id FROM tickets ORDER BY seq")]
        for i in range(start, start + 400):
            store.add_label(ids[i], "billing", agent=agent, source="correct")
            store.inbox_page("unlabelled", limit=50)
            if i % 40 == 0:
                store.undo_last_label(agent)
                store.backend_stats(daily_volume=1000)
    print("done", agent)
    """
)


def test_router_and_two_agents_share_the_file(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    model = tmp_path / "spec.joblib"
    config = tmp_path / "c.toml"
    config.write_text(f'[backends.specialist]\ntype = "specialist"\npath = "{model}"\n')
    inbox = generate_inbox(4000, seed=5)
    with Store(db) as store:
        store.import_tickets([d.ticket for d in inbox])
    labelled = [d for d in inbox if d.agent_label][:300]
    SpecialistModel.train(
        [d.ticket.text for d in labelled], [d.agent_label for d in labelled]
    ).save(model)  # type: ignore[misc]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    router = subprocess.Popen(
        [sys.executable, "-m", "tui", "--db", str(db), "--config", str(config), "route", "--all"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    agents = [
        subprocess.Popen(
            [sys.executable, "-c", AGENT, str(db), name, str(start)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, start in (("ann", 0), ("bob", 1000))
    ]
    outputs = [p.communicate(timeout=600) for p in (router, *agents)]
    for proc, (out, err) in zip((router, *agents), outputs, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err.lower() and "locked" not in out.lower()
    assert "routed 4000 tickets" in outputs[0][0]
    with Store(db) as store:
        assert store.integrity_ok()
        assert store.decision_count() == 4000
        # 400 labels and 10 undos per agent, all visible to everyone
        assert store.label_event_count() == 2 * (400 + 10)
        assert store.inbox_count("unlabelled") == 4000 - 2 * (400 - 10)
