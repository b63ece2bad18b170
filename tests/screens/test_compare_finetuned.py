"""A fine-tuned GGUF served in process and through a llama.cpp server, beside the specialist on
the compare screen: both answer a label of the taxonomy with a measured confidence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from screens.compare import CompareModal
from screens.widgets.ticket_table import TicketTable
from tests.screens.helpers import LABELS, seed, wait_until
from tests.servers.llamacpp_server import LlamaCppServer
from tests.servers.ollama_server import Reply
from tui.core.store import Store

pytest.importorskip("llama_cpp", reason="llama-cpp-python (dev group) runs the model")

GGUF = Path(__file__).parents[1] / "data" / "tiny_finetuned.gguf"
SIZE = (120, 40)


@pytest.fixture
def llama_server() -> Iterator[LlamaCppServer]:
    server = LlamaCppServer().start()
    server.default = Reply.text(" returns", token_probs=[1.0, 0.5, 0.5])
    yield server
    server.stop()


@pytest.mark.slow
async def test_compare_shows_finetuned_backends_beside_the_others(
    store: Store, app_for, specialist: Path, llama_server: LlamaCppServer
) -> None:
    seed(store, 3)
    app = app_for(
        {
            "specialist": {"type": "specialist", "path": str(specialist)},
            "ft-local": {
                "type": "llamacpp-local",
                "model_path": str(GGUF),
                "n_ctx": 512,
                "n_threads": 1,
                "prompt": "finetuned",
            },
            "ft-server": {"type": "llamacpp", "base_url": llama_server.url, "prompt": "finetuned"},
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
        await wait_until(pilot, lambda: "Done" in str(help_line.render()), timeout=60)
        grid = modal.query_one("#compare-table")
        assert grid.row_count == 3
        assert str(grid.get_cell("ft-server", "label")) == "returns"
        assert str(grid.get_cell("ft-server", "source")) == "logprob"
        assert str(grid.get_cell("ft-local", "source")) == "probability"
        decisions = {d.backend: d for d in store.decisions_for(ticket_id)}
        for name in ("ft-local", "ft-server"):
            decision = decisions[name]
            assert decision.ok and decision.label in LABELS
            assert decision.prompt_version is not None
            assert decision.prompt_version.startswith("ft-")
        assert decisions["ft-server"].confidence == pytest.approx(0.25)
        await pilot.press("escape")
