"""Fine-tuning from the TUI: the modal that starts a job, and the one that offers its result.

`FinetuneModal` asks for what `triagedesk finetune` takes from an agent (base, method,
objective, device, max steps, epochs, a teacher folder) and returns a `JobRequest`; the job
itself runs in the inbox's `FinetunePanel`. When a dependency or the base model's package is
missing it says what to install, in the CLI's words, on one line, and will not start.
`FinetuneDoneModal` says how the new model did and offers to route with it now (the backend
picker's hot swap) or keep it for later; a shadow button shows only where the settings know
`[routing] shadow`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from tui.core.config import RoutingConfig
from tui.core.learning.llm.progress import DoneEvent
from tui.core.learning.llm.requirements import missing_requirement
from tui.services.finetune_job import JobRequest, default_out

METHODS: tuple[tuple[str, str], ...] = (("LoRA adapter, merged", "lora"), ("full", "full"))
DEVICES: tuple[tuple[str, str], ...] = (("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda"))
OBJECTIVES: tuple[tuple[str, str], ...] = (
    ("write the label's name", "generate"),
    ("classify: one token a label", "classify"),
)
DoneChoice = Literal["swap", "shadow", "keep"]
SHADOW_HOOK = "shadow_backend"
"""The app method a shadow button calls, `app.shadow_backend(name)`; shadow mode brings it."""


def shadow_supported() -> bool:
    """Whether this build's settings have `[routing] shadow` (the shadow button's switch)."""
    return "shadow" in RoutingConfig.model_fields


class FinetuneModal(ModalScreen[JobRequest | None]):
    """Enter or Start starts the job with these options; escape cancels."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="finetune.cancel")]

    def __init__(self, base: str = "gemma3-270m") -> None:
        super().__init__()
        self.base = base

    def compose(self) -> ComposeResult:
        with Vertical(id="finetune-dialog"):
            yield Label("Fine-tune an open model on the agents' labels", id="finetune-title")
            with Horizontal(classes="finetune-row"):
                yield Label("Base model", classes="finetune-key")
                yield Input(self.base, compact=True, id="finetune-base")
            with Horizontal(classes="finetune-row"):
                yield Label("Method", classes="finetune-key")
                yield Select(
                    METHODS, value="lora", allow_blank=False, compact=True, id="finetune-method"
                )
            with Horizontal(classes="finetune-row"):
                yield Label("Objective", classes="finetune-key")
                yield Select(
                    OBJECTIVES,
                    value="generate",
                    allow_blank=False,
                    compact=True,
                    id="finetune-objective",
                )
            with Horizontal(classes="finetune-row"):
                yield Label("Device", classes="finetune-key")
                yield Select(
                    DEVICES, value="auto", allow_blank=False, compact=True, id="finetune-device"
                )
            with Horizontal(classes="finetune-row"):
                yield Label("Max steps", classes="finetune-key")
                yield Input(
                    placeholder="all (every epoch)",
                    type="integer",
                    compact=True,
                    id="finetune-max-steps",
                )
            with Horizontal(classes="finetune-row"):
                yield Label("Epochs", classes="finetune-key")
                yield Input("1", type="integer", compact=True, id="finetune-epochs")
            with Horizontal(classes="finetune-row"):
                yield Label("Teacher", classes="finetune-key")
                yield Input(
                    placeholder="none (classify: an encoder folder to learn from)",
                    compact=True,
                    id="finetune-teacher",
                )
            yield Label("", id="finetune-problem")
            yield Label(
                "Runs in the background: the inbox stays usable, progress shows above the"
                " status bar; the new model is offered when it is done.",
                id="finetune-help",
            )
            with Horizontal(id="finetune-buttons"):
                yield Button("Start", variant="primary", compact=True, id="finetune-start")
                yield Button("Cancel", compact=True, id="finetune-close")

    def on_mount(self) -> None:
        self._check()
        self.query_one("#finetune-base", Input).focus()

    @on(Input.Changed, "#finetune-base")
    def _check(self) -> None:
        """Say what is missing for this base; Start works only when nothing is."""
        missing = missing_requirement(self.query_one("#finetune-base", Input).value.strip())
        self._problem(missing)
        self.query_one("#finetune-start", Button).disabled = missing is not None

    def _problem(self, text: str | None) -> None:
        problem = self.query_one("#finetune-problem", Label)
        problem.update(Content.styled(text, "$error") if text else "")
        problem.display = bool(text)

    def request(self) -> JobRequest:
        """The options as a `JobRequest`, in a new folder under the models folder.

        Raises:
            ValueError: An option is not usable; the message names it.
        """
        base = self.query_one("#finetune-base", Input).value.strip()
        max_steps = self.query_one("#finetune-max-steps", Input).value.strip()
        epochs = self.query_one("#finetune-epochs", Input).value.strip()
        teacher = self.query_one("#finetune-teacher", Input).value.strip()
        try:
            request = JobRequest(
                base=base,
                method=self.query_one("#finetune-method", Select).value,  # type: ignore[arg-type]
                objective=self.query_one("#finetune-objective", Select).value,  # type: ignore[arg-type]
                device=self.query_one("#finetune-device", Select).value,  # type: ignore[arg-type]
                max_steps=int(max_steps) if max_steps else None,
                epochs=int(epochs) if epochs else 1,
                out=default_out(base),
                teacher=Path(teacher).expanduser() if teacher else None,
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            field = str(error["loc"][0]).replace("_", " ") if error["loc"] else "options"
            message = str(error["msg"]).removeprefix("Value error, ")
            raise ValueError(f"{field}: {message}") from None
        except ValueError as exc:  # int() of a lone "-": type="integer" lets it through
            raise ValueError(f"not a whole number: {exc}") from None
        if request.teacher is not None:
            _check_teacher(request.teacher)
        return request

    @on(Input.Submitted)
    @on(Button.Pressed, "#finetune-start")
    def start(self) -> None:
        if self.query_one("#finetune-start", Button).disabled:
            return
        try:
            request = self.request()
        except ValueError as exc:
            self._problem(str(exc))
            return
        self.dismiss(request)

    @on(Button.Pressed, "#finetune-close")
    def action_dismiss_none(self) -> None:
        self.dismiss(None)


def _check_teacher(folder: Path) -> None:
    """The teacher folder's files, checked before a job starts (the CLI checks again).

    Raises:
        ValueError: A file is missing, in the CLI's words.
    """
    from tui.core.learning.llm.errors import FinetuneError
    from tui.core.learning.llm.teacher import check_folder

    try:
        check_folder(folder)
    except FinetuneError as exc:
        raise ValueError(str(exc)) from None


class FinetuneDoneModal(ModalScreen[DoneChoice]):
    """The finished model's figures, and what to do with its backend."""

    BINDINGS = [Binding("escape", "keep", "Keep for later", id="finetune-done.keep")]

    def __init__(self, name: str, done: DoneEvent, config_path: str) -> None:
        super().__init__()
        self.backend_name = name
        self.done = done
        self.config_path = config_path

    def compose(self) -> ComposeResult:
        done = self.done
        zero = done.zero_shot_accuracy
        base = "" if zero is None else f" (the base, untrained: {zero:.1%})"
        with Vertical(id="finetune-done-dialog"):
            yield Label(
                Content.assemble(("Fine-tuned: ", "bold"), (self.backend_name, "bold $accent")),
                id="finetune-done-title",
            )
            yield Label(
                f"Validation {done.validation_accuracy:.1%}{base}; the GGUF answers"
                f" {done.gguf_validation_accuracy:.1%}. {done.steps} steps,"
                f" {done.total_seconds:.0f} s in all.",
                id="finetune-done-figures",
            )
            yield Label(
                f"Added to {self.config_path} and to the backend picker (b).",
                id="finetune-done-where",
            )
            with Horizontal(id="finetune-done-buttons"):
                yield Button(
                    "Route with it now", variant="primary", compact=True, id="finetune-swap"
                )
                if shadow_supported():
                    yield Button("Shadow it", compact=True, id="finetune-shadow")
                yield Button("Keep for later", compact=True, id="finetune-keep")

    def on_mount(self) -> None:
        self.query_one("#finetune-swap", Button).focus()

    @on(Button.Pressed, "#finetune-swap")
    def swap(self) -> None:
        self.dismiss("swap")

    @on(Button.Pressed, "#finetune-shadow")
    def shadow(self) -> None:
        self.dismiss("shadow")

    @on(Button.Pressed, "#finetune-keep")
    def action_keep(self) -> None:
        self.dismiss("keep")
