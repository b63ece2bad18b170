"""Shadow mode in the TUI: routing in the app feeds the shadow, the stats screen compares it
with the active backend, and the palette's "Promote a shadow backend…" promotes it (config
rewritten, event recorded, backend hot-swapped in, the old one now a shadow)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from screens.promote_shadow import PromoteShadowModal
from screens.stats import StatsScreen
from screens.widgets.ticket_table import TicketTable
from tests.screens.helpers import LABELS, build_router, seed, wait_until
from tui.app import make_app
from tui.core.config import load_settings
from tui.core.store import Store
from tui.services.routing.worker import ENV

SIZE = (130, 40)


def config_file(tmp_path: Path, specialist: Path) -> Path:
    labels = "\n".join(f'{k} = "{v}"' for k, v in LABELS.items())
    path = tmp_path / "config.toml"
    path.write_text(
        f'[labels]\n{labels}\n\n[routing]\nbackend = "specialist"\nshadow = ["candidate"]\n\n'
        f'[backends.specialist]\ntype = "specialist"\npath = "{specialist}"\n\n'
        '[backends.candidate]\ntype = "hash"\n'
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("worker", ["1", "0"])
async def test_routing_feeds_the_shadow_and_the_palette_promotes_it(
    tmp_path: Path, store: Store, specialist: Path, worker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a worker process (1) or the engine's thread (0); the shadows of a run are the
    child's in the first case, so only the second can watch this process's pool."""
    monkeypatch.setenv(ENV, worker)
    seed(store, 30, labelled=20)
    config = config_file(tmp_path, specialist)
    settings = load_settings(config)
    router = build_router(settings, store)
    app = make_app(settings, store, router)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.current is not None)
        await pilot.press("R")  # route every unrouted ticket with the active backend
        # a worker process imports the specialist's stack cold: 7 s alone, over 20 s in a fresh
        # clone's first suite on two busy cores; this waits for an outcome, it times nothing
        await wait_until(
            pilot, lambda: store.shadow_counts("candidate", "specialist").routed == 30, timeout=90
        )
        assert store.count_unrouted() == 0
        assert {s.backend for s in store.backend_stats()} == {"specialist"}

        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, StatsScreen))
        panel = app.screen.query_one("#shadow-compare")
        await wait_until(pilot, lambda: panel.display)
        assert str(panel.render()).startswith("candidate: 30 both answered")
        await pilot.press("escape")

        await pilot.press("ctrl+p")
        await pilot.press(*"promote")
        commands = app.screen.query_one("CommandList")
        await wait_until(pilot, lambda: commands.option_count > 0)  # type: ignore[attr-defined]
        assert "Promote" in str(commands.get_option_at_index(0).prompt)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PromoteShadowModal))
        grid = app.screen.query_one("#shadows")
        await wait_until(pilot, lambda: grid.row_count == 1)  # type: ignore[attr-defined]
        assert str(grid.get_cell("candidate", "answered")) == "30"  # type: ignore[attr-defined]
        # The seeded tickets are the specialist's own training texts, so none of their labels
        # is evidence (every accuracy leaves out what the answering model learnt): force it.
        await pilot.press("f")
        await wait_until(pilot, lambda: router.active == "candidate", timeout=10)
        assert app.active_backend == "candidate"
        assert router.shadows.names == ("specialist",)
        assert not isinstance(app.screen, PromoteShadowModal)
        routing = tomllib.loads(config.read_text())["routing"]
        assert routing == {"backend": "candidate", "shadow": ["specialist"]}
        assert config.stat().st_mode & 0o777 == 0o600
        (event,) = store.promotions()
        assert event.backend == "candidate" and event.agent == "maria"
        assert event.evidence["compared"] == 30 and event.evidence["labelled"] == 0
        assert worker == "1" or router.shadows.running > 0
    assert router.shadows.running == 0  # the app closed its router, and the shadows with it


async def test_a_new_backend_offered_as_a_shadow_is_written_and_shadowed(
    tmp_path: Path, store: Store, specialist: Path
) -> None:
    """What "Shadow it" after a fine-tune calls: the config's shadow list gains the backend,
    and the next routed tickets are also answered by it."""
    seed(store, 12, labelled=4)
    config = config_file(tmp_path, specialist)
    config.write_text(config.read_text().replace('shadow = ["candidate"]\n', ""))
    settings = load_settings(config)
    router = build_router(settings, store)
    app = make_app(settings, store, router)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.current is not None)
        assert router.shadows.names == ()
        app.shadow_backend("candidate")
        await wait_until(pilot, lambda: router.shadows.names == ("candidate",), timeout=10)
        routing = tomllib.loads(config.read_text())["routing"]
        assert routing == {"backend": "specialist", "shadow": ["candidate"]}
        assert config.stat().st_mode & 0o777 == 0o600
        await pilot.press("R")
        await wait_until(
            pilot, lambda: store.shadow_counts("candidate", "specialist").routed == 12, timeout=90
        )
        app.shadow_backend("specialist")  # the active backend cannot shadow itself
        await pilot.pause(0.2)
        assert router.shadows.names == ("candidate",)
