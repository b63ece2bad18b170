"""Team mode in the TUI, on both engines: the open ticket is the agent's, `N` claims the next
free one, other agents' holds show in the inbox, and quitting gives the lease back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from screens.widgets import inbox_data
from screens.widgets.ticket_table import TicketTable
from tests.screens.helpers import seed, wait_until
from tui.core.database_url import PgTarget
from tui.core.store import Store

SIZE = (120, 40)
BO = "far-away-host:7:bo"


@pytest.fixture
def store(db_target: Path | PgTarget) -> Iterator[Store]:
    """The screens' store, here on both engines (tests/conftest.py `db_target`)."""
    with Store(db_target) as opened:
        yield opened


async def test_the_open_ticket_is_leased_and_claim_next_skips_held_ones(
    store: Store, app_for
) -> None:
    seed(store, 10)
    assert store.claim_for_agent("bo", BO, lease_s=600, ids=["T-0000"]) == ["T-0000"]
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.total_rows == 10)
        await wait_until(pilot, lambda: store.agent_leases().get("T-0009") == "maria")
        held = table.row_for("T-0000")
        assert held is not None and held.held_by == "bo"
        assert "◆ bo" in table.cells(held)[-1].plain
        await pilot.press("N")  # the newest free ticket but the open one; T-0009 given back
        await wait_until(pilot, lambda: table.current.ticket_id == "T-0008")
        await wait_until(pilot, lambda: store.agent_leases() == {"T-0000": "bo", "T-0008": "maria"})
        await pilot.press("l")
        await pilot.pause()
        await pilot.press("enter")  # the picker's first label: T-0008 labelled, lease ended
        await wait_until(pilot, lambda: store.inbox_row("T-0008").label is not None)
        assert store.label_history("T-0008")[-1].agent == "maria"
        await wait_until(pilot, lambda: "T-0008" not in store.agent_leases())
    assert store.agent_leases() == {"T-0000": "bo"}  # quitting gave the open ticket back


async def test_a_redraw_while_claiming_next_keeps_the_claimed_ticket(
    store: Store, app_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inbox redraws its window (another desk's label, new tickets) and highlights the
    row under the cursor again. One that lands after "next" has claimed a ticket, before the
    cursor moves there, leased the row being left and gave the claimed ticket back, free for
    another desk to take while this one had it open."""
    seed(store, 10)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        leases = app.screen.data.leases
        await wait_until(pilot, lambda: store.agent_leases() == {"T-0009": "maria"})
        opened: list[str] = []
        released: list[str] = []
        in_flight = [0]
        claim_next, lease, release = leases.next, leases.open, store.release_agent_claims

        def next_then_redraw() -> str | None:
            got = claim_next()
            app.call_from_thread(  # the window read again, as a page load shows it
                table.show_window,
                table.window_rows,
                offset=table.window_offset,
                total=table.total_rows,
                keep_ticket="T-0009",
            )
            return got

        def counted_open(ticket_id: str) -> bool:
            in_flight[0] += 1
            opened.append(ticket_id)
            try:
                return lease(ticket_id)
            finally:
                in_flight[0] -= 1

        def spied_release(*args: Any, ids: list[str] | None = None, **kwargs: Any) -> int:
            released.extend(ids or ["*"])
            return release(*args, ids=ids, **kwargs)

        monkeypatch.setattr(leases, "next", next_then_redraw)
        monkeypatch.setattr(leases, "open", counted_open)
        monkeypatch.setattr(store, "release_agent_claims", spied_release)
        await pilot.press("N")
        await wait_until(
            pilot,
            lambda: table.current.ticket_id == "T-0008" and "T-0008" in opened and not in_flight[0],
        )
        assert "T-0009" not in opened and "T-0008" not in released
        assert leases.held == "T-0008"
        assert store.agent_leases() == {"T-0008": "maria"}


async def test_a_reload_asked_before_next_keeps_the_cursor_on_the_claimed_ticket(
    store: Store, app_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window reload asked for while T-0009 was open, and shown after "next" moved the
    cursor to T-0008, put the cursor back on T-0009: the desk leased it again and gave the
    claimed ticket back."""
    seed(store, 10)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        table = screen.query_one(TicketTable)
        await wait_until(pilot, lambda: store.agent_leases() == {"T-0009": "maria"})
        read, show = threading.Event(), threading.Event()
        shown: list[str | None] = []
        reload, show_window = inbox_data.reload_window, table.show_window

        def held_reload(*args: Any, **kwargs: Any) -> Any:
            found = reload(*args, **kwargs)
            read.set()
            show.wait(30)
            return found

        def spied_show(*args: Any, **kwargs: Any) -> None:
            show_window(*args, **kwargs)
            shown.append(table.current.ticket_id if table.current else None)

        monkeypatch.setattr(inbox_data, "reload_window", held_reload)
        monkeypatch.setattr(table, "show_window", spied_show)
        screen.load_window()  # as another desk's label asks for, with T-0009 under the cursor
        await wait_until(pilot, read.is_set)
        await pilot.press("N")
        await wait_until(pilot, lambda: store.agent_leases() == {"T-0008": "maria"})
        await wait_until(pilot, lambda: table.current.ticket_id == "T-0008")
        show.set()
        await wait_until(pilot, lambda: bool(shown))
        assert shown == ["T-0008"]
        await pilot.pause()
        assert store.agent_leases() == {"T-0008": "maria"}


async def test_another_desks_label_shows_in_the_open_inbox(
    store: Store, app_for, db_target: Path | PgTarget
) -> None:
    """On PostgreSQL through LISTEN/NOTIFY, on SQLite through the poll."""
    seed(store, 5)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.total_rows == 5)
        with Store(db_target) as other:
            other.add_label("T-0002", "billing", agent="bo", source="correct")
        await wait_until(pilot, lambda: table.row_for("T-0002").label == "billing")
