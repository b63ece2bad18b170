"""Two TUIs and a headless `route` on one database file: no "database is locked" reaches
anyone, and each TUI shows the other's labels after its refresh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from screens.label_picker import LabelPickerModal
from screens.widgets.ticket_table import TicketTable
from tests.screens.helpers import (
    LABELS,
    build_router,
    make_tickets,
    seed,
    settings_for,
    train_specialist,
    wait_until,
)
from tui.app import make_app
from tui.core.store import Store

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


async def test_two_tuis_and_a_router_see_each_others_labels(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    with Store(db) as store:
        seed(store, 3000)
    spec = train_specialist(tmp_path / "spec.joblib", *make_tickets(40))
    config = tmp_path / "c.toml"
    config.write_text(f'[backends.specialist]\ntype = "specialist"\npath = "{spec}"\n')
    router = subprocess.Popen(
        [sys.executable, "-m", "tui", "--db", str(db), "--config", str(config), "route", "--all"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    settings = settings_for({"specialist": {"type": "specialist", "path": str(spec)}})
    store_a, store_b = Store(db), Store(db)
    app_a = make_app(settings, store_a, build_router(settings, store_a))
    app_b = make_app(settings, store_b, build_router(settings, store_b))
    try:
        async with app_a.run_test(size=(120, 40)) as pa, app_b.run_test(size=(120, 40)) as pb:
            table_a = app_a.screen.query_one(TicketTable)
            table_b = app_b.screen.query_one(TicketTable)
            await wait_until(pa, lambda: table_a.row_count > 0)
            await wait_until(pb, lambda: table_b.row_count > 0)
            labels = list(LABELS)
            for step in range(3):
                for pilot, app, table, mine in (
                    (pa, app_a, table_a, store_a),
                    (pb, app_b, table_b, store_b),
                ):
                    current = table.current
                    assert current is not None
                    pick = labels[(step + len(current.ticket_id)) % len(labels)]
                    await pilot.press("l")
                    await wait_until(
                        pilot, lambda app=app: isinstance(app.screen, LabelPickerModal)
                    )
                    await pilot.press(*pick[:5], "enter")
                    await wait_until(
                        pilot,
                        lambda mine=mine, tid=current.ticket_id, pick=pick: (
                            mine.inbox_row(tid) is not None and mine.inbox_row(tid).label == pick  # type: ignore[union-attr]
                        ),
                    )
                    other_pilot, other_table = (pb, table_b) if pilot is pa else (pa, table_a)
                    # the other TUI shows it after its periodic refresh
                    await wait_until(
                        other_pilot,
                        lambda t=other_table, tid=current.ticket_id, pick=pick: (
                            t.row_for(tid) is not None and t.row_for(tid).label == pick  # type: ignore[union-attr]
                        ),
                        timeout=15,
                    )
                    await pilot.press("down")
    finally:
        out, err = router.communicate(timeout=300)
        store_a.close()
        store_b.close()
    assert router.returncode == 0, err
    assert "locked" not in (out + err).lower()
    with Store(db) as store:
        assert store.integrity_ok()
        assert store.decision_count() == 3000
        assert store.label_event_count() == 6
