"""SVG snapshots of each screen at a fixed size on deterministic data (fixed ids, times,
latencies and costs; no clock text). Review snapshot_report.html before `--snapshot-update`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from screens.backend_picker import BackendPickerModal
from screens.compare import CompareModal
from screens.label_picker import LabelPickerModal
from screens.stats import StatsScreen
from screens.widgets.ticket_table import TicketTable
from tests.screens.helpers import BASE_TIME, build_router, make_tickets, settings_for, wait_until
from tui.app import TriageApp, make_app
from tui.core import registry
from tui.core.backend import ServerError
from tui.core.store import Store

SIZE = (120, 40)
BACKENDS: dict[str, dict[str, Any]] = {
    "specialist": {"type": "fixed", "model": "tfidf:400ex", "latency_ms": 2.0, "tokens": False},
    "gpt-4o-mini": {
        "type": "fixed",
        "model": "gpt-4o-mini",
        "latency_ms": 780.0,
        "input_usd_per_mtok": 0.15,
        "output_usd_per_mtok": 0.6,
    },
    "llama3": {
        "type": "fixed",
        "model": "llama3.1:8b",
        "latency_ms": 420.0,
        "gpu_usd_per_hour": 1.1,
    },
}


@pytest.fixture(autouse=True)
def fixed_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILTIN, "fixed", "tests.snapshots.fixed_backends:FixedBackend")
    monkeypatch.setattr("getpass.getuser", lambda: "maria")


@pytest.fixture
def snapshot_app(tmp_path: Path) -> Iterator[TriageApp]:
    """60 tickets: 54 routed by the specialist or gpt-4o-mini, 2 failed, 4 unrouted, 8 labelled."""
    import asyncio

    settings = settings_for(BACKENDS, reference_backend="gpt-4o-mini")
    with Store(tmp_path / "snap.db") as store:
        tickets, truth = make_tickets(60)
        store.import_tickets(tickets, source="snapshot")
        router = build_router(settings, store)

        async def route() -> list[Any]:
            out = []
            for i, ticket in enumerate(tickets[:56]):
                name = "gpt-4o-mini" if i % 3 == 0 else "specialist"
                if i in (50, 53):
                    outcome: Any = ServerError("HTTP 503 from upstream", status=503)
                    out.append(router.decision(ticket, name, "seed", outcome, 30_000.0))
                    continue
                result = await router.backend(name).route(ticket, router.taxonomy)
                out.append(router.decision(ticket, name, "seed", result, result.total_ms or 0))
            return out

        decisions = asyncio.run(route())
        stamped = [
            d.model_copy(update={"created_at": BASE_TIME + timedelta(minutes=7 * i)})
            for i, d in enumerate(decisions)
        ]
        store.record_decisions(stamped)
        for i, ticket in enumerate(tickets[40:48]):
            source = "accept" if i % 3 else "correct"
            store.add_label(ticket.id, truth[ticket.id], agent="maria", source=source)
        store.conn.execute("UPDATE label_events SET created_at = ?", (BASE_TIME.isoformat(),))
        yield make_app(settings, store, build_router(settings, store))


async def loaded(pilot: Pilot[Any]) -> None:
    table = pilot.app.screen.query_one(TicketTable)
    await wait_until(pilot, lambda: table.total_rows == 60 and table.current is not None)
    await wait_until(
        pilot, lambda: "p50" in str(pilot.app.screen.query_one("#status-text").render())
    )
    await pilot.pause(0.3)


def test_inbox(snap_compare: Any, snapshot_app: TriageApp) -> None:
    assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=loaded)


def test_detail_of_a_labelled_ticket(snap_compare: Any, snapshot_app: TriageApp) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        pilot.app.screen.query_one(TicketTable).move_to("T-0041")
        await pilot.pause(0.5)

    assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=run_before)


def test_backend_picker(snap_compare: Any, snapshot_app: TriageApp) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, BackendPickerModal))
        grid = pilot.app.screen.query_one("#backends")
        await wait_until(
            pilot, lambda: all("answers" in str(grid.get_cell(n, "health")) for n in BACKENDS)
        )
        await wait_until(pilot, lambda: str(grid.get_cell("specialist", "p50")) != "…")
        await pilot.pause(0.3)

    assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=run_before)


def test_compare(snap_compare: Any, snapshot_app: TriageApp) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        pilot.app.screen.query_one(TicketTable).move_to("T-0057")
        await pilot.pause()
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, CompareModal))
        help_line = pilot.app.screen.query_one("#compare-help")
        await wait_until(pilot, lambda: "Done" in str(help_line.render()))
        # The stored answers reach the inbox behind the modal at its next poll: wait for that
        # settled state (the row and its detail), or the picture depends on the poll's timing.
        inbox = pilot.app.screen_stack[0]
        table = inbox.query_one(TicketTable)
        detail = inbox.query_one("#detail-decision-text")

        def settled() -> bool:
            row = next((r for r in table.window_rows if r.ticket_id == "T-0057"), None)
            return row is not None and row.predicted_label is not None

        await wait_until(pilot, settled)
        await wait_until(pilot, lambda: "earlier attempts" in str(detail.render()))
        await pilot.pause(0.3)

    assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=run_before)


def test_labeling(snap_compare: Any, snapshot_app: TriageApp) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, LabelPickerModal))
        pilot.app.screen.query_one(Input).cursor_blink = False
        await pilot.press("s")
        await pilot.pause(0.3)

    assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=run_before)


def test_stats(snap_compare: Any, snapshot_app: TriageApp) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, StatsScreen))
        grid = pilot.app.screen.query_one("#stats-table")
        await wait_until(pilot, lambda: grid.row_count == 2)
        await wait_until(
            pilot,
            lambda: not any(w.group == "curve" and not w.is_finished for w in pilot.app.workers),
        )
        await pilot.pause(0.5)

    assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=run_before)


def test_finetune_modal_without_torch(
    snap_compare: Any, snapshot_app: TriageApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The options modal as CI and a fresh install see it: torch missing, said in one line."""
    import sys

    from screens.finetune_modal import FinetuneModal

    monkeypatch.setitem(sys.modules, "torch", None)

    async def run_before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("F")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, FinetuneModal))
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False
        await pilot.pause(0.3)

    assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=run_before)


def test_finetune_progress_line(
    snap_compare: Any, snapshot_app: TriageApp, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The inbox while a fine-tune runs: a real child (scripted) at step 3 of 40."""
    import sys
    import types

    from screens.finetune_modal import FinetuneModal
    from screens.widgets.finetune_panel import FinetunePanel
    from tests.unit.test_finetune_job import SCRIPT
    from tui.core.learning.llm.base import KNOWN_BASES
    from tui.core.learning.llm.requirements import NEEDED_MODULES
    from tui.services.finetune_job import Launcher

    monkeypatch.setenv("TRIAGEDESK_HOME", str(tmp_path / "home"))
    for name in (*NEEDED_MODULES, *(known.module for known in KNOWN_BASES.values())):
        if name not in sys.modules:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))

    async def run_before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        panel = pilot.app.screen.query_one(FinetunePanel)
        panel.launcher = Launcher(None, None, command=(sys.executable, str(SCRIPT), "hang"))
        await pilot.press("F")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, FinetuneModal))
        await pilot.pause(0.2)
        await pilot.click("#finetune-start")
        await wait_until(pilot, lambda: "step 3/40" in str(panel.render()), timeout=30)
        await pilot.pause(0.3)

    assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=run_before)
