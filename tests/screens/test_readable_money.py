"""No scientific notation anywhere a person reads money: every main screen and the `stats`
and `backends` text, on a store whose costs span a specialist's $0.0000000076 a ticket to a
hosted model's fractions of a cent (issue 18)."""

from __future__ import annotations

import html
import io
import re
from pathlib import Path

from screens.backend_picker import BackendPickerModal
from screens.compare import CompareModal
from screens.stats import StatsScreen
from screens.widgets.ticket_table import TicketTable
from tests.screens.helpers import seed, wait_until
from tui.cli import run
from tui.core.store import Store

SIZE = (140, 45)
SCIENTIFIC = re.compile(r"\d(\.\d+)?[eE][-+]?\d")
TEXT = re.compile(r"<text[^>]*>([^<]*)</text>")


def screen_text(svg: str) -> str:
    """The characters on screen, from Textual's SVG export."""
    return html.unescape("".join(TEXT.findall(svg))).replace("\xa0", " ")


MODEL_ID = re.compile(r"@[0-9a-f]{8,}\b")
"""A model's identity ends in a hex hash (`tfidf:40ex@7596bd8e241d`): not a number shown."""


def assert_readable(where: str, text: str) -> None:
    found = SCIENTIFIC.search(MODEL_ID.sub("@<model id>", text))
    assert found is None, f"{where}: scientific notation {found.group()!r} in {text!r}"


async def test_no_screen_shows_scientific_notation(
    store: Store, app_for, specialist: Path, tmp_path: Path
) -> None:
    seed(store, 30, labelled=10)
    app = app_for(
        {
            "specialist": {"type": "specialist", "path": str(specialist)},
            # 100 tokens in, 10 out: $0.00000007 a ticket, below any fixed decimal format
            "cheap": {"type": "hash", "input_usd_per_mtok": 0.0005, "output_usd_per_mtok": 0.002},
            "gpt": {"type": "hash", "input_usd_per_mtok": 0.15, "output_usd_per_mtok": 0.6},
            "llama": {"type": "hash", "gpu_usd_per_hour": 1.1},
        },
        reference_backend="gpt",
    )
    seen: dict[str, str] = {}
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.current is not None)
        await pilot.press("R")
        await wait_until(pilot, lambda: store.count_unrouted() == 0, timeout=30)
        await wait_until(pilot, lambda: not app.screen.batch_running, timeout=30)
        await pilot.press("c")  # every backend on the current ticket: tiny costs side by side
        await wait_until(pilot, lambda: isinstance(app.screen, CompareModal))
        modal = app.screen
        help_line = modal.query_one("#compare-help")
        await wait_until(pilot, lambda: "Done" in str(help_line.render()), timeout=30)
        seen["compare"] = screen_text(app.export_screenshot())
        assert "$" in seen["compare"]
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, CompareModal))
        await pilot.pause(0.5)
        seen["inbox, detail and status bar"] = screen_text(app.export_screenshot())
        assert "/1k" in seen["inbox, detail and status bar"]
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, BackendPickerModal))
        await pilot.pause(0.5)
        seen["backend picker"] = screen_text(app.export_screenshot())
        assert "per Mtok" in seen["backend picker"]
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, BackendPickerModal))
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, StatsScreen))
        grid = app.screen.query_one("#stats-table")
        await wait_until(pilot, lambda: grid.row_count == 4, timeout=20)
        await pilot.pause(1.0)
        seen["stats"] = screen_text(app.export_screenshot())
        assert "/mo" in seen["stats"] and "Latency per ticket" in seen["stats"]
    for where, text in seen.items():
        assert_readable(where, text)

    out = io.StringIO()
    assert run(["--db", str(store.path), "stats"], out=out, err=io.StringIO()) == 0
    assert "cheap" in out.getvalue()
    assert_readable("stats (CLI)", out.getvalue())
