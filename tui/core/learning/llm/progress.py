"""`triagedesk finetune --progress json`: the progress lines, written and read in one place.

The TUI runs a fine-tune as a child process and learns how it goes from these lines only, so
the writer (the CLI) and the reader (`tui.services.finetune_job`) share the models below and
cannot drift. Each line on stdout is one JSON object with an `event`:

- `stage`: `phase` (what starts: "loading the base model", "training", ...);
- `step`: `phase` "training", `step`, `total`, `loss` (null if not finite), `elapsed_s`,
  `eta_s`;
- `done`: `out` (the folder), `backend` (the name in its `backend.toml`), `backend_toml`,
  `validation_accuracy`, `gguf_validation_accuracy`, `zero_shot_accuracy` (or null), `steps`,
  `total_seconds`;
- `error`: `message` (the same text as the `triagedesk: error:` line) and `exit` (the status).

A reader treats every line as hostile until checked: `parse_line` returns None for anything
that is not one of these objects (a library printing to stdout, a cut line), never raises.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

if TYPE_CHECKING:
    from tui.core.learning.llm.pipeline import FinetuneReport
    from tui.core.learning.llm.train import Progress

MAX_LINE_CHARS = 64_000
"""Longer lines are not parsed (an error message with a converter's tail stays far below)."""


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class StageEvent(_Event):
    event: Literal["stage"]
    phase: str = Field(max_length=200)


class StepEvent(_Event):
    event: Literal["step"]
    phase: Literal["training"] = "training"
    step: int = Field(ge=0)
    total: int = Field(ge=1)
    loss: float | None
    """None when the step's loss was not a finite number (a diverging run says so)."""
    elapsed_s: float = Field(ge=0)
    eta_s: float = Field(ge=0)


class DoneEvent(_Event):
    event: Literal["done"]
    out: str
    backend: str
    backend_toml: str
    validation_accuracy: float = Field(ge=0, le=1)
    gguf_validation_accuracy: float = Field(ge=0, le=1)
    zero_shot_accuracy: float | None = Field(default=None, ge=0, le=1)
    steps: int = Field(ge=0)
    total_seconds: float = Field(ge=0)


class ErrorEvent(_Event):
    event: Literal["error"]
    message: str
    exit: int


Event = Annotated[StageEvent | StepEvent | DoneEvent | ErrorEvent, Field(discriminator="event")]
_EVENT: TypeAdapter[StageEvent | StepEvent | DoneEvent | ErrorEvent] = TypeAdapter(Event)


def parse_line(line: str) -> StageEvent | StepEvent | DoneEvent | ErrorEvent | None:
    """The event a line carries, or None when it is not a valid progress line."""
    text = line.strip()
    if not text.startswith("{") or len(text) > MAX_LINE_CHARS:
        return None
    try:
        return _EVENT.validate_json(text)
    except (ValidationError, ValueError):
        return None


class Emitter:
    """Writes the events as JSON lines, flushed one by one (a reader shows them live)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def _write(self, event: _Event) -> None:
        print(event.model_dump_json(), file=self.out, flush=True)

    def stage(self, phase: str) -> None:
        self._write(StageEvent(event="stage", phase=phase[:200]))

    def step(self, progress: Progress) -> None:
        self._write(
            StepEvent(
                event="step",
                step=progress.step,
                total=max(1, progress.total_steps),
                loss=round(progress.loss, 6) if math.isfinite(progress.loss) else None,
                elapsed_s=round(progress.elapsed_s, 2),
                eta_s=round(progress.eta_s, 2),
            )
        )

    def done(self, out: Path, report: FinetuneReport) -> None:
        self._write(
            DoneEvent(
                event="done",
                out=str(out.resolve()),
                backend=report.backend,
                backend_toml=str((out / "backend.toml").resolve()),
                validation_accuracy=report.validation_accuracy,
                gguf_validation_accuracy=report.gguf_validation_accuracy,
                zero_shot_accuracy=report.zero_shot_accuracy,
                steps=report.steps,
                total_seconds=report.total_seconds,
            )
        )

    def error(self, message: str, exit_status: int) -> None:
        """One line; a message that is not JSON-safe text is still written (json escapes it)."""
        text = json.dumps({"event": "error", "message": message, "exit": exit_status})
        print(text, file=self.out, flush=True)
