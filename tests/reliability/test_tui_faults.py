"""The TUI keeps answering keys while a backend hangs, then shows the failures as error rows.

The real app (`make_app`) routes every unrouted ticket against a loopback OpenAI server whose
streams stall after the first tokens. While the tickets are in flight the agent moves the
cursor and opens and closes the filter picker; afterwards every ticket is an error row, and
no screen ever shows the API key.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from screens.filter_picker import FilterPickerModal
from screens.inbox import InboxScreen
from screens.widgets.ticket_table import TicketTable
from tests.reliability.fault_servers import FaultyOpenAIServer, Plan
from tests.reliability.test_fault_matrix import backend_block, make_settings, make_tickets
from tui.app import make_app
from tui.core.store import Store
from tui.services.routing import Router

SENTINEL = "sk-SENTINEL-tui-5c1e8a9d"
KEY_ENV = "TRIAGEDESK_TUI_TEST_KEY"
TICKETS = 6


async def test_keys_answer_while_the_backend_hangs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, SENTINEL)
    server = FaultyOpenAIServer(Plan("stalled_stream")).start()
    block = backend_block(
        "openai-stream", server.root, timeout_s=3.0, max_retries=0, api_key_env=KEY_ENV
    )
    settings = make_settings({"hanging": block}, "hanging")
    taxonomy = settings.taxonomy()
    assert taxonomy is not None
    store = Store(tmp_path / "tui.db")
    store.import_tickets(make_tickets(TICKETS))
    router = Router(settings, taxonomy, store)
    app = make_app(settings, store, router)
    try:
        async with app.run_test(size=(140, 40)) as pilot:

            async def wait_for(condition: object, seconds: float, what: str) -> None:
                deadline = time.monotonic() + seconds
                while not condition():  # type: ignore[operator]
                    assert time.monotonic() < deadline, f"timed out waiting for {what}"
                    await pilot.pause(0.05)

            await wait_for(
                lambda: len(app.screen.query_one(TicketTable).window_rows) == TICKETS,
                10,
                "the inbox",
            )
            table = app.screen.query_one(TicketTable)
            await pilot.press("R")
            await wait_for(lambda: app.desk.engine.in_flight > 0, 10, "tickets in flight")
            started = time.monotonic()

            before = table.cursor_row
            await pilot.press("j")
            await wait_for(lambda: table.cursor_row == before + 1, 1.0, "the cursor to move")
            await pilot.press("down")
            await wait_for(lambda: table.cursor_row == before + 2, 1.0, "the cursor to move")
            await pilot.press("f")
            await wait_for(lambda: isinstance(app.screen, FilterPickerModal), 1.0, "the picker")
            await pilot.press("escape")
            await wait_for(lambda: isinstance(app.screen, InboxScreen), 1.0, "the inbox back")
            assert app.desk.engine.in_flight > 0, "the keys were not handled while tickets hung"
            assert time.monotonic() - started < 3.0, "key handling waited for the backend"

            await wait_for(lambda: store.decision_count() == TICKETS, 20, "the error decisions")
            await wait_for(
                lambda: all(r.error_class == "Timeout" for r in table.window_rows),
                10,
                "error rows in the table",
            )
            assert len(table.window_rows) == TICKETS
            screenshot = app.export_screenshot()
            assert "Timeout" in screenshot or "error" in screenshot.lower()
            assert SENTINEL not in screenshot
    finally:
        await router.aclose()
        store.close()
        server.stop()
    assert any(SENTINEL in str(r.headers) for r in server.requests), "the key was never sent"
