"""Routing from the inbox: all unrouted, hot swap mid-run, errors and retry, a hanging backend."""

from __future__ import annotations

from screens.backend_picker import BackendPickerModal
from screens.filter_picker import FilterPickerModal
from screens.messages import InboxPageLoaded, TicketsRouted
from screens.widgets.ticket_table import TicketTable
from tests.screens.helpers import LABELS, seed, wait_until
from tui.core.models import Decision
from tui.core.store import Store

SIZE = (120, 40)


async def test_route_all_routes_every_unrouted_ticket(store: Store, app_for) -> None:
    seed(store, 120)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.total_rows == 120)
        await pilot.press("R")
        await wait_until(pilot, lambda: store.count_unrouted() == 0)
        await wait_until(pilot, lambda: all(r.predicted_label for r in table.window_rows))
        assert {r.backend for r in table.window_rows} == {"specialist"}
        assert store.decision_count() == 120


async def test_hot_swap_mid_run_applies_to_the_next_tickets(store: Store, app_for) -> None:
    seed(store, 300)
    app = app_for(
        {
            "slow": {"type": "hash", "delay_s": 0.05, "max_concurrency": 2},
            "fast": {"type": "hash", "max_concurrency": 2},
        }
    )
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("R")
        await wait_until(pilot, lambda: store.decision_count() >= 6)
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, BackendPickerModal))
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: app.router.active == "fast")
        swapped_at = store.decision_count()
        await wait_until(pilot, lambda: store.count_unrouted() == 0, timeout=60)
        await wait_until(pilot, lambda: not app.screen.batch_running)
        decisions = store.recent_decisions(limit=1000)
        by_backend = [d.backend for d in decisions]
        assert "slow" in by_backend and "fast" in by_backend
        # Only tickets already in flight (at most the concurrency) finish on the old backend.
        assert by_backend.count("slow") <= swapped_at + 16
        assert by_backend[-1] == "fast"
        assert app.active_backend == "fast"
        assert "fast" in str(app.screen.query_one("#status-text").render())


async def test_errors_show_on_the_row_and_r_retries(store: Store, app_for) -> None:
    seed(store, 8, fail_every=4)
    app = app_for({"hash": {"type": "hash"}, "ok": {"type": "hash"}})
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await pilot.press("R")
        await wait_until(pilot, lambda: store.count_unrouted() == 0)
        await wait_until(
            pilot, lambda: sum(r.error_class is not None for r in table.window_rows) == 2
        )
        failed = next(r for r in table.window_rows if r.error_class)
        assert "ServerError" in str(table.get_row(failed.ticket_id)[-1])
        table.move_to(failed.ticket_id)
        await pilot.press("r")
        await wait_until(pilot, lambda: len(store.decisions_for(failed.ticket_id)) == 2)
        assert store.latest_decision(failed.ticket_id).error_class == "ServerError"


async def test_a_hanging_backend_leaves_the_ui_answering(store: Store, app_for) -> None:
    seed(store, 30)
    stuck = {"type": "hash", "delay_s": 3600, "max_concurrency": 4, "adaptive_concurrency": False}
    app = app_for({"stuck": stuck})  # fixed: slow start sends a backend that never answers one
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.total_rows == 30)
        await pilot.press("R")
        await wait_until(pilot, lambda: app.desk.engine.in_flight == 4)  # a worker's, or ours
        before = table.cursor_row
        await pilot.press("down", "down")
        assert table.cursor_row == before + 2
        await pilot.press("f")
        await wait_until(pilot, lambda: isinstance(app.screen, FilterPickerModal))
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, FilterPickerModal))
        await wait_until(
            pilot, lambda: "4 in flight" in str(app.screen.query_one("#status-text").render())
        )
        assert store.decision_count() == 0


def _decided(ticket_id: str, label: str, run_id: str) -> Decision:
    return Decision(
        ticket_id=ticket_id,
        run_id=run_id,
        backend="specialist",
        backend_type="specialist",
        label=label,
        confidence=0.9,
        total_ms=3.0,
    )


async def test_a_batch_of_decisions_redraws_each_row_the_latest_winning(
    store: Store, app_for
) -> None:
    """Decisions reach the table in coalesced batches; within one, a ticket decided twice
    shows its latest decision, and every other ticket of the batch its own."""
    seed(store, 30)
    app = app_for()
    labels = sorted(LABELS)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.total_rows == 30)
        first, second, third = (row.ticket_id for row in table.window_rows[:3])
        batch = (
            _decided(first, labels[0], "tui-x-1"),
            _decided(second, labels[1], "tui-x-1"),
            _decided(first, labels[2], "tui-x-2"),
        )
        app.screen.post_message(TicketsRouted(batch))
        await wait_until(pilot, lambda: table.row_for(first).predicted_label == labels[2])
        assert table.row_for(second).predicted_label == labels[1]
        assert table.row_for(third).predicted_label is None


async def test_another_process_decisions_redraw_rows_without_a_reload(
    store: Store, app_for
) -> None:
    """The live feed's decisions of other runs update their rows in place: the inbox is not
    read again (a routing CLI beside the TUI once rebuilt its table every second)."""
    seed(store, 30)
    app = app_for()
    pages: list[InboxPageLoaded] = []

    def hook(message: object) -> None:
        if isinstance(message, InboxPageLoaded):
            pages.append(message)

    label = sorted(LABELS)[0]
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.total_rows == 30)
        await pilot.pause(1.5)  # the live feed's first poll has taken the marks
        ticket_id = table.window_rows[4].ticket_id
        loaded = len(pages)
        store.record_decisions([_decided(ticket_id, label, "cli-other-process")])
        await wait_until(pilot, lambda: table.row_for(ticket_id).predicted_label == label)
        assert len(pages) == loaded
