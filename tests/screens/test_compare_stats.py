"""Compare every backend on one ticket; the statistics screen against the store's numbers."""

from __future__ import annotations

from pathlib import Path

from screens.compare import CompareModal
from screens.stats import StatsScreen
from screens.widgets.ticket_table import TicketTable
from tests.screens.helpers import seed, wait_until
from tui.core.intervals import accuracy_text
from tui.core.store import Store

SIZE = (120, 40)


async def test_compare_runs_every_backend_side_by_side(
    store: Store, app_for, specialist: Path
) -> None:
    seed(store, 5)
    app = app_for(
        {
            "specialist": {"type": "specialist", "path": str(specialist)},
            "hash": {"type": "hash", "input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0},
            "broken": {"type": "hash", "delay_s": 0.01},
        }
    )
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.current is not None)
        ticket_id = table.current.ticket_id
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareModal))
        modal = app.screen
        help_line = modal.query_one("#compare-help")  # the verdict: every answer is drawn
        await wait_until(pilot, lambda: "Done" in str(help_line.render()))
        grid = modal.query_one("#compare-table")
        assert grid.row_count == 3
        cost = str(grid.get_cell("hash", "cost"))
        assert cost == "$0.00012"  # 100 tokens in at $1/M + 10 out at $2/M
        decisions = store.decisions_for(ticket_id)
        assert sorted(d.backend for d in decisions) == ["broken", "hash", "specialist"]
        assert store.latest_decision(ticket_id).backend == "specialist"  # the active one
        await pilot.press("escape")
        await wait_until(pilot, lambda: table.row_for(ticket_id).backend == "specialist")


async def test_stats_screen_shows_the_store_figures(
    store: Store, app_for, specialist: Path
) -> None:
    seed(store, 60, labelled=50)  # the specialist trained on the first 40 (their texts)
    app = app_for(
        {
            "specialist": {"type": "specialist", "path": str(specialist)},
            "gpt": {"type": "hash", "input_usd_per_mtok": 0.15, "output_usd_per_mtok": 0.6},
            "llama": {"type": "hash", "gpu_usd_per_hour": 1.1},
        },
        reference_backend="gpt",
    )
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("R")
        await wait_until(pilot, lambda: store.count_unrouted() == 0)
        await wait_until(pilot, lambda: not app.screen.batch_running)
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, StatsScreen))
        screen = app.screen
        grid = screen.query_one("#stats-table")
        await wait_until(pilot, lambda: grid.row_count == 1)
        (expected,) = store.backend_stats(daily_volume=10_000)
        assert (expected.labelled, expected.excluded_trained, expected.scored_on) == (50, 40, 10)
        row = [str(cell) for cell in grid.get_row("specialist")]
        assert row[2] == f"{expected.n:,}"
        assert row[3] == str(expected.errors)
        assert expected.accuracy is not None and expected.macro_f1 is not None
        low, high = expected.accuracy_low, expected.accuracy_high
        assert row[4] == accuracy_text(expected.accuracy, low, high, 10)
        assert row[4].startswith(f"{expected.accuracy * 100:.1f}% (") and "n=10)" in row[4]
        assert row[5] == f"{expected.macro_f1 * 100:.1f}%"
        assert "specialist 40" in str(grid.border_subtitle)  # the labels left out, said
        text = str(screen.query_one("#break-even").render())
        assert "gpt" in text and "llama" in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, StatsScreen))


async def test_stats_screen_says_when_no_label_is_held_out(
    store: Store, app_for, specialist: Path
) -> None:
    seed(store, 40, labelled=20)  # every label is one the specialist trained on
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("R")
        await wait_until(pilot, lambda: store.count_unrouted() == 0)
        await wait_until(pilot, lambda: not app.screen.batch_running)
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, StatsScreen))
        grid = app.screen.query_one("#stats-table")
        await wait_until(pilot, lambda: grid.row_count == 1)
        row = [str(cell) for cell in grid.get_row("specialist")]
        assert row[4] == "no held-out labels yet"
        assert "specialist 20" in str(grid.border_subtitle)


async def test_compare_says_why_a_backend_cannot_answer_instead_of_failing(
    store: Store, app_for, specialist: Path, monkeypatch
) -> None:
    monkeypatch.delenv("TRIAGEDESK_TEST_NO_KEY", raising=False)
    seed(store, 3)
    app = app_for(
        {
            "specialist": {"type": "specialist", "path": str(specialist)},
            "hosted": {
                "type": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "model": "gpt-4o-mini",
                "api_key_env": "TRIAGEDESK_TEST_NO_KEY",
            },
        }
    )
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.current is not None)
        ticket_id = table.current.ticket_id
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareModal))
        modal = app.screen
        help_line = modal.query_one("#compare-help")
        # the verdict is drawn by the message posted once the answers are stored
        await wait_until(pilot, lambda: modal.stored and "Done" in str(help_line.render()))
        grid = modal.query_one("#compare-table")
        assert str(grid.get_cell("hosted", "label")) == "unavailable"
        assert "TRIAGEDESK_TEST_NO_KEY is not set" in str(grid.get_cell("hosted", "source"))
        assert "1 unavailable" in str(modal.query_one("#compare-help").render())
        # routed only where it can answer: no error decision stored for the hosted one
        assert [d.backend for d in store.decisions_for(ticket_id)] == ["specialist"]
