"""Labeling from the inbox: accept, correct with the fuzzy picker, undo, next ticket."""

from __future__ import annotations

from screens.label_picker import LabelPickerModal, ranked
from screens.widgets.ticket_table import TicketTable
from tests.screens.helpers import LABELS, seed, wait_until
from tui.core.store import Store

SIZE = (120, 40)


async def routed_app(store: Store, app_for, n: int = 20):
    seed(store, n)
    app = app_for()
    return app


async def test_accept_correct_and_undo_record_store_events(store: Store, app_for) -> None:
    app = await routed_app(store, app_for)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await pilot.press("R")
        await wait_until(pilot, lambda: store.count_unrouted() == 0)
        await wait_until(pilot, lambda: table.current is not None and table.current.predicted_label)
        first = table.current
        await pilot.press("enter")
        await wait_until(pilot, lambda: store.label_history(first.ticket_id) != [])
        (accepted,) = store.label_history(first.ticket_id)
        assert (accepted.label, accepted.source, accepted.agent) == (
            first.predicted_label,
            "accept",
            "maria",
        )
        await wait_until(pilot, lambda: table.current.ticket_id != first.ticket_id)
        second = table.current
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LabelPickerModal))
        wrong = next(name for name in LABELS if name != second.predicted_label)
        await pilot.press(*wrong[:4], "enter")
        await wait_until(pilot, lambda: store.label_history(second.ticket_id) != [])
        (corrected,) = store.label_history(second.ticket_id)
        assert (corrected.label, corrected.source) == (wrong, "correct")
        await wait_until(pilot, lambda: table.row_for(second.ticket_id).label == wrong)
        await pilot.press("u")
        await wait_until(pilot, lambda: len(store.label_history(second.ticket_id)) == 2)
        undo = store.label_history(second.ticket_id)[-1]
        assert (undo.source, undo.label) == ("undo", None)
        await wait_until(pilot, lambda: table.row_for(second.ticket_id).label is None)
        assert table.current.ticket_id == second.ticket_id
        assert store.inbox_row(first.ticket_id).label == first.predicted_label


async def test_next_jumps_to_a_ticket_needing_attention(store: Store, app_for) -> None:
    seed(store, 12, labelled=0)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.total_rows == 12)
        await pilot.press("n")  # every ticket is unrouted, so the next row needs attention
        await wait_until(pilot, lambda: table.cursor_row == 1)


def test_fuzzy_ranking_handles_a_large_taxonomy() -> None:
    choices = tuple(
        (f"label_{i:02d}_{word}", "") for i, word in enumerate(["card"] * 76 + ["refund"])
    )
    best = ranked("refnd", choices)
    assert best[0][0] == "label_76_refund"
    assert len(ranked("", choices)) == 77
