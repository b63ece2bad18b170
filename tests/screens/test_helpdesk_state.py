"""The helpdesk sync's state in the TUI: the ticket's helpdesk id and push state in the detail
pane, each helpdesk's last pull and pending/failed/conflicting pushes on the stats screen."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from screens.stats import StatsScreen
from screens.widgets.ticket_table import TicketTable
from tests.screens.helpers import LABELS, build_router, wait_until
from tui.app import make_app
from tui.core.config import Settings
from tui.core.helpdesk.wire import RemoteTicket
from tui.core.store import PulledTicket, Store

SIZE = (120, 40)


def _settings(specialist: Path) -> Settings:
    return Settings.model_validate(
        {
            "labels": LABELS,
            "routing": {"backend": "specialist", "reference_backend": None},
            "backends": {
                "specialist": {"type": "specialist", "path": str(specialist), "name": "specialist"}
            },
            "helpdesk": {
                "zd": {
                    "name": "zd",
                    "type": "zendesk",
                    "base_url": "https://acme.zendesk.test",
                    "email": "bot@acme.test",
                    "token_env": "ZD_TOKEN",
                    "writeback": "apply",
                }
            },
        }
    )


async def test_detail_and_stats_show_the_sync(store: Store, specialist: Path) -> None:
    stamp = "2026-01-02T03:04:05Z"
    pulled = [
        PulledTicket(
            RemoteTicket(
                i, f"refund {i}", "charged twice", "a@b.c", "email", stamp, stamp, (), "open", None
            ).ticket("zd"),
            i,
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        )
        for i in (5, 6)
    ]
    store.store_pull_page("zd", pulled, "cursor-1")
    store.add_label("zd-5", "billing", agent="maria")
    store.add_label("zd-6", "shipping", agent="maria")
    assert store.queue_pushes("zd") == 2
    first, second = store.open_pushes("zd")
    store.finish_push(first.push_id, "conflict", error="changed in the helpdesk")
    store.finish_push(second.push_id, "done")
    settings = _settings(specialist)
    app = make_app(settings, store, build_router(settings, store))
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.current is not None)
        pane = app.screen.query_one("#detail-ticket-text")
        shown = table.current.ticket_id
        want = (
            "zd #5 · push conflict (billing)" if shown == "zd-5" else "zd #6 · push done (shipping)"
        )
        await wait_until(pilot, lambda: want in str(pane.render()))
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, StatsScreen))
        panel = app.screen.query_one("#break-even")
        await wait_until(pilot, lambda: "Helpdesk sync" in str(panel.render()))
        assert "zd: pulled" in str(panel.render()) and "0 pending, 1 conflicts" in str(
            panel.render()
        )
