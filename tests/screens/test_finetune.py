"""Fine-tuning from the inbox: the palette action, the options modal, live progress from a real
child process, cancel, the one-line failure when torch is missing (CI), and a whole run on
the tiny random Gemma 3 that ends in a hot swap (skipped without torch and the converter)."""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandPalette
from textual.widgets import Button, Input, Select

from screens.backend_picker import BackendPickerModal
from screens.finetune_modal import FinetuneDoneModal, FinetuneModal, shadow_supported
from screens.widgets.finetune_panel import FinetunePanel, Installed
from screens.widgets.ticket_table import TicketTable
from tests.screens.helpers import seed, settings_for, wait_until
from tests.unit.test_finetune_job import SCRIPT, _blocked_torch, _gone, _group_gone
from tests.unit.test_llm_finetune import (  # noqa: F401  (fixtures)
    heavy,
    llama_converter,
    tiny_base,
)
from tui.core import paths
from tui.core.config import load_settings
from tui.core.learning.llm.base import KNOWN_BASES
from tui.core.learning.llm.errors import FINETUNE_EXTRA
from tui.core.learning.llm.progress import DoneEvent, StepEvent
from tui.core.learning.llm.requirements import NEEDED_MODULES
from tui.core.store import Store
from tui.services.finetune_job import Launcher

SIZE = (120, 40)


@pytest.fixture
def training_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process sees the training modules and the base's package as installed (the child,
    a real process, is what needs them)."""
    for name in (*NEEDED_MODULES, *(known.module for known in KNOWN_BASES.values())):
        if name not in sys.modules:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))


def _panel(app: Any) -> FinetunePanel:
    return app.screen_stack[0].query_one(FinetunePanel)


def _panel_text(app: Any) -> str:
    return str(_panel(app).render())


async def _open_from_palette(pilot: Any) -> None:
    await pilot.press("ctrl+p")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, CommandPalette))
    await pilot.press(*"fine-tune an open")
    await pilot.pause(0.5)
    await pilot.press("enter")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, FinetuneModal))


async def test_palette_opens_the_modal_and_missing_torch_is_the_clis_line(
    store: Store, app_for: Any, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as in CI, where torch is not installed
    seed(store, 10)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await _open_from_palette(pilot)
        modal = app.screen
        problem = modal.query_one("#finetune-problem")
        assert str(problem.render()) == (
            f"torch is not installed; fine-tuning needs {FINETUNE_EXTRA}"
        )
        assert modal.query_one("#finetune-start", Button).disabled
        await pilot.press("enter")  # submitting the base field starts nothing
        await pilot.pause(0.2)
        assert isinstance(app.screen, FinetuneModal) and not _panel(app).running
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, FinetuneModal))
        assert not _panel(app).display


async def test_bad_options_are_said_in_the_modal(
    store: Store, app_for: Any, isolated_home: Path, training_modules: None
) -> None:
    seed(store, 5)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("F")
        await wait_until(pilot, lambda: isinstance(app.screen, FinetuneModal))
        app.screen.query_one("#finetune-base", Input).value = "/models/tiny"
        await pilot.pause()
        assert not app.screen.query_one("#finetune-start", Button).disabled
        app.screen.query_one("#finetune-epochs", Input).value = "0"
        await pilot.click("#finetune-start")
        await pilot.pause(0.2)
        assert isinstance(app.screen, FinetuneModal)
        said = str(app.screen.query_one("#finetune-problem").render())
        assert said.startswith("epochs: ") and "greater than or equal to 1" in said
        app.screen.query_one("#finetune-epochs", Input).value = "1"
        app.screen.query_one("#finetune-teacher", Input).value = str(isolated_home)
        await pilot.click("#finetune-start")
        await pilot.pause(0.2)
        said = str(app.screen.query_one("#finetune-problem").render())
        assert said == "options: a teacher needs the classify objective"
        app.screen.query_one("#finetune-objective", Select).value = "classify"
        await pilot.click("#finetune-start")
        await pilot.pause(0.2)
        said = str(app.screen.query_one("#finetune-problem").render())
        assert said.startswith(f"--teacher {isolated_home}: no config.json there")
        assert isinstance(app.screen, FinetuneModal) and not _panel(app).running


async def test_progress_shows_live_and_cancel_leaves_nothing(
    store: Store, app_for: Any, isolated_home: Path, training_modules: None
) -> None:
    seed(store, 40)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        panel = _panel(app)
        panel.launcher = Launcher(None, None, command=(sys.executable, str(SCRIPT), "hang"))
        await pilot.press("F")
        await wait_until(pilot, lambda: isinstance(app.screen, FinetuneModal))
        await pilot.click("#finetune-start")
        step = "training step 3/40 │ loss 0.6667 │ ETA 18 s"
        await wait_until(pilot, lambda: step in _panel_text(app), timeout=30)
        assert panel.display
        job = panel.job
        assert job is not None and job.pid is not None
        pid, out = job.pid, job.request.out
        assert out.parent == paths.models_dir() / "finetuned" and out.is_dir()
        # the UI answers while the job runs
        table = app.screen.query_one(TicketTable)
        before = table.cursor_row
        await pilot.press("down")
        await wait_until(pilot, lambda: table.cursor_row == before + 1)
        await pilot.press("F")  # one job at a time
        await pilot.pause(0.2)
        assert not isinstance(app.screen, FinetuneModal)
        assert any("already running" in n.message for n in app._notifications)
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"cancel the fine")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_until(pilot, lambda: not panel.running, timeout=20)
        assert any("cancelled" in n.message for n in app._notifications)
        assert _group_gone(pid)
        assert not out.exists()
        assert not panel.display


async def test_quitting_the_app_kills_the_job_and_removes_its_output(
    store: Store, app_for: Any, isolated_home: Path, training_modules: None
) -> None:
    seed(store, 5)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        panel = _panel(app)
        panel.launcher = Launcher(None, None, command=(sys.executable, str(SCRIPT), "hang"))
        await pilot.press("F")
        await wait_until(pilot, lambda: isinstance(app.screen, FinetuneModal))
        await pilot.click("#finetune-start")
        await wait_until(pilot, lambda: "step 3/40" in _panel_text(app), timeout=30)
        job = panel.job
        assert job is not None and job.pid is not None
        pid, out = job.pid, job.request.out
        grandchild = int((out / "grandchild.pid").read_text())
        await pilot.press("q")
    for _ in range(100):
        if _group_gone(pid) and _gone(grandchild):
            break
        time.sleep(0.05)
    assert _group_gone(pid) and _gone(grandchild)
    assert not out.exists()


async def test_an_error_line_is_one_notification_and_the_panel_hides(
    store: Store, app_for: Any, isolated_home: Path, training_modules: None
) -> None:
    seed(store, 5)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        panel = _panel(app)
        panel.launcher = Launcher(None, None, command=(sys.executable, str(SCRIPT), "fail"))
        await pilot.press("F")
        await wait_until(pilot, lambda: isinstance(app.screen, FinetuneModal))
        await pilot.click("#finetune-start")
        await wait_until(pilot, lambda: not panel.running, timeout=30)
        assert not panel.display
        assert not any((paths.models_dir() / "finetuned").iterdir())
        failed = [n for n in app._notifications if n.title == "Fine-tune failed"]
        assert [n.message for n in failed] == ["the base model went away"]


async def test_real_cli_without_torch_fails_in_one_line_and_the_app_lives(
    store: Store,
    app_for: Any,
    isolated_home: Path,
    training_modules: None,
    tmp_path: Path,
) -> None:
    seed(store, 30, labelled=30)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        panel = _panel(app)
        panel.launcher = Launcher(store.path, None, env=_blocked_torch(tmp_path))
        await pilot.press("F")
        await wait_until(pilot, lambda: isinstance(app.screen, FinetuneModal))
        await pilot.click("#finetune-start")
        await wait_until(pilot, lambda: not panel.running, timeout=60)
        failed = [n.message for n in app._notifications if n.title == "Fine-tune failed"]
        assert failed == [f"torch is not installed; fine-tuning needs {FINETUNE_EXTRA}"]
        assert not (paths.models_dir() / "finetuned").exists() or not any(
            (paths.models_dir() / "finetuned").iterdir()
        )
        await pilot.press("down")  # still answering
        assert app.is_running


async def test_tiny_model_from_the_tui_adds_the_backend_and_hot_swaps(
    store: Store,
    app_for: Any,
    isolated_home: Path,
    tiny_base: Path,  # noqa: F811  (the fixture imported above)
    llama_converter: Path,  # noqa: F811
) -> None:
    seed(store, 40, labelled=40)
    app = app_for()
    config = Path(os.environ["TRIAGEDESK_HOME"]) / "config.toml"
    config.write_text('[backends.specialist]\ntype = "specialist"\n')
    async with app.run_test(size=SIZE) as pilot:
        panel = _panel(app)
        env = {"TRIAGEDESK_LLAMA_CPP": str(llama_converter)}
        panel.launcher = Launcher(store.path, config, env=env)
        panel.config_path = config
        await pilot.press("F")
        await wait_until(pilot, lambda: isinstance(app.screen, FinetuneModal))
        modal = app.screen
        modal.query_one("#finetune-base", Input).value = str(tiny_base)
        modal.query_one("#finetune-method", Select).value = "full"
        modal.query_one("#finetune-device", Select).value = "cpu"
        modal.query_one("#finetune-max-steps", Input).value = "3"
        seen: list[object] = []
        forward = panel._event
        panel._event = lambda event: (seen.append(event), forward(event))  # type: ignore[method-assign]
        await pilot.click("#finetune-start")
        said = lambda: [f"{n.title}: {n.message}" for n in app._notifications]  # noqa: E731
        await wait_until(
            pilot, lambda: isinstance(app.screen, FinetuneDoneModal) or bool(said()), timeout=900
        )
        assert isinstance(app.screen, FinetuneDoneModal), said()
        # three steps of a tiny model pass in a blink: what the panel was told, not what it
        # happened to show at a poll
        steps = [(e.step, e.total) for e in seen if isinstance(e, StepEvent)]
        assert steps == [(1, 3), (2, 3), (3, 3)]
        name = app.screen.backend_name
        assert name.startswith("finetuned-")
        assert name in app.desk.settings.backends and name in app.router.settings.backends
        assert load_settings(config).backends[name].type == "llamacpp-local"
        await pilot.pause(0.3)
        await pilot.click("#finetune-swap")
        await wait_until(pilot, lambda: app.router.active == name)
        assert app.active_backend == name


DONE = DoneEvent(
    event="done",
    out="/models/finetuned/x",
    backend="ft",
    backend_toml="/models/finetuned/x/backend.toml",
    validation_accuracy=0.95,
    gguf_validation_accuracy=0.94,
    zero_shot_accuracy=0.1,
    steps=40,
    total_seconds=160,
)


@pytest.mark.parametrize(("button", "active"), [("#finetune-swap", "ft"), ("#finetune-keep", "a")])
async def test_the_finished_model_is_listed_and_offered_for_a_hot_swap(
    store: Store, app_for: Any, isolated_home: Path, button: str, active: str
) -> None:
    seed(store, 5)
    app = app_for({"a": {"type": "hash"}})
    ft = settings_for({"ft": {"type": "hash"}}).backends["ft"]
    async with app.run_test(size=SIZE) as pilot:
        _panel(app).offer(Installed("ft", ft, isolated_home / "config.toml"), DONE)
        await wait_until(pilot, lambda: isinstance(app.screen, FinetuneDoneModal))
        await pilot.pause(0.3)
        figures = str(app.screen.query_one("#finetune-done-figures").render())
        assert figures.startswith("Validation 95.0% (the base, untrained: 10.0%)")
        assert bool(app.screen.query("#finetune-shadow")) == shadow_supported()
        await pilot.click(button)
        await wait_until(pilot, lambda: not isinstance(app.screen, FinetuneDoneModal))
        assert app.router.active == active and app.active_backend == active
        assert "ft" in app.desk.settings.backends
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, BackendPickerModal))
        assert app.screen.query_one("#backends").get_row("ft")


async def test_the_objective_chosen_in_the_modal_reaches_the_command(
    store: Store, app_for: Any, isolated_home: Path, training_modules: None
) -> None:
    """classify in the modal is `--objective classify` on the job's command line."""
    from textual.widgets import Select

    seed(store, 5)
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("F")
        await wait_until(pilot, lambda: isinstance(app.screen, FinetuneModal))
        modal = app.screen
        assert isinstance(modal, FinetuneModal)
        options = modal.request().options()
        assert options[options.index("--objective") + 1] == "generate"
        modal.query_one("#finetune-objective", Select).value = "classify"
        await pilot.pause()
        options = modal.request().options()
        assert options[options.index("--objective") + 1] == "classify"
