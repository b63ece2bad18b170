"""The inbox: windowed paging, filters, live arrivals from other processes and --watch."""

from __future__ import annotations

import json
from pathlib import Path

from screens.filter_picker import FilterPickerModal
from screens.widgets.ticket_table import TicketTable
from tests.screens.helpers import make_tickets, seed, wait_until
from tui.core.inbox_window import WINDOW
from tui.core.models import Decision
from tui.core.store import Store

SIZE = (120, 40)


async def test_table_holds_a_window_and_pages_by_keyset(store: Store, app_for) -> None:
    seed(store, 1000)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.total_rows == 1000)
        assert table.row_count <= WINDOW
        assert table.current.ticket_id == "T-0999"
        for _ in range(60):
            await pilot.press("pagedown")
            await pilot.pause()
            if table.window_offset > 0:
                break
        assert table.window_offset > 0
        assert table.row_count <= WINDOW
        position = table.position
        expected = f"T-{999 - position:04d}"
        assert table.current.ticket_id == expected
        assert f"{position + 1:,} of 1,000" in str(table.border_subtitle)
        for _ in range(60):
            await pilot.press("pageup")
            await pilot.pause()
        await wait_until(pilot, lambda: table.window_offset == 0 and table.cursor_row == 0)
        assert table.current.ticket_id == "T-0999"


async def test_filters_list_only_matching_tickets(store: Store, app_for) -> None:
    seed(store, 20, labelled=5)
    store.record_decisions(
        [
            Decision(
                ticket_id="T-0010",
                run_id="x",
                backend="b",
                backend_type="hash",
                error_class="Timeout",
            )
        ]
    )
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.total_rows == 20)
        await pilot.press("f")
        await wait_until(pilot, lambda: isinstance(app.screen, FilterPickerModal))
        await pilot.press("down", "enter")  # unlabelled
        await wait_until(pilot, lambda: table.total_rows == 15)
        assert all(r.label is None for r in table.window_rows)
        await pilot.press("f")
        await wait_until(pilot, lambda: isinstance(app.screen, FilterPickerModal))
        await pilot.press("down", "down", "down", "enter")  # errors
        await wait_until(pilot, lambda: table.total_rows == 1)
        assert table.current.ticket_id == "T-0010"
        assert "Errors" in str(table.border_title)


async def test_tickets_imported_by_another_process_appear(
    store: Store, app_for, tmp_path: Path
) -> None:
    seed(store, 10)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.total_rows == 10)
        tickets, _ = make_tickets(15)
        with Store(store.path) as other:
            other.import_tickets(tickets[10:], source="other")
        await wait_until(pilot, lambda: table.total_rows == 15, timeout=5)
        assert table.current.ticket_id == "T-0009"
        assert table.window_rows[0].ticket_id == "T-0014"


async def test_auto_route_routes_arrivals(store: Store, app_for) -> None:
    seed(store, 5)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await wait_until(pilot, lambda: store.count_unrouted() == 0)
        tickets, _ = make_tickets(8)
        with Store(store.path) as other:
            other.import_tickets(tickets[5:], source="other")
        await wait_until(
            pilot, lambda: store.ticket_count() == 8 and store.count_unrouted() == 0, timeout=6
        )
        assert "on" in str(app.screen.query_one("#auto-route").render())


async def test_watch_folder_imports_and_moves_files(store: Store, app_for, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    app = app_for(watch=drop)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        good = drop / "new.jsonl"
        good.write_text(
            "\n".join(json.dumps({"id": f"W-{i}", "text": f"parcel {i} late"}) for i in range(3))
        )
        bad = drop / "bad.jsonl"
        bad.write_text('{"id": "W-9", "text": "ok"}\nnot json\n')
        await wait_until(pilot, lambda: (drop / "imported" / "new.jsonl").exists(), timeout=6)
        await wait_until(pilot, lambda: (drop / "rejected" / "bad.jsonl").exists(), timeout=6)
        assert (drop / "rejected" / "bad.jsonl.errors.txt").read_text().startswith("bad.jsonl:2:")
        await wait_until(pilot, lambda: table.total_rows == 3, timeout=5)
        assert store.get_ticket("W-9") is None


async def test_palette_lists_the_commands(store: Store, app_for) -> None:
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        titles = [command.title for command in app.get_system_commands(app.screen)]
        for title in (
            "Route (r)",
            "Route all (R)",
            "Backend (b)",
            "Compare (c)",
            "Stats (s)",
            "Retrain (t)",
        ):
            assert title in titles
        ids = {binding.id for (_, binding, _, _) in app.screen.active_bindings.values()}
        assert {"ticket.route", "label.accept", "label.correct", "inbox.filter"} <= ids
