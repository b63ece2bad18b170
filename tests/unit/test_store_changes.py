"""Polling a real store for what other processes changed: new tickets, decisions of other runs
only, label events; nothing reported when nothing changed."""

from __future__ import annotations

from pathlib import Path

from tui.core.models import Decision, Ticket
from tui.core.store import Store
from tui.core.store_changes import StoreChanges


def decided(tid: str, run: str) -> Decision:
    return Decision(
        ticket_id=tid,
        run_id=run,
        backend="api",
        backend_type="openai",
        label="billing",
        confidence=0.9,
        total_ms=5.0,
    )


def test_changes_since_the_last_poll_leave_out_our_own_runs(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    try:
        store.import_tickets([Ticket(id=f"T{i}", text=f"text {i}") for i in range(3)])
        changes = StoreChanges(store, own_run_prefix="tui-me-")
        assert changes.poll() is None  # the first poll takes the marks
        assert changes.poll() is None
        store.import_tickets([Ticket(id="T9", text="new one")])
        store.record_decisions([decided("T0", "tui-me-1"), decided("T1", "run-other")])
        change = changes.poll()
        assert change is not None and change.new_tickets == 1 and not change.labels_changed
        assert [(d.ticket_id, d.run_id) for d in change.decisions] == [("T1", "run-other")]
        assert changes.poll() is None
        store.record_decisions([decided("T2", "tui-me-2")])
        assert changes.poll() is None  # only our own decision: shown already, no change
        store.record_decisions([decided("T2", "run-other"), decided("T0", "tui-me-3")])
        foreign = changes.poll()  # the marks moved past our own decision above
        assert foreign is not None and [d.run_id for d in foreign.decisions] == ["run-other"]
        store.add_label("T2", "billing", agent="someone", source="cli")
        labelled = changes.poll()
        assert labelled is not None and labelled.labels_changed and labelled.decisions == ()
    finally:
        store.close()
