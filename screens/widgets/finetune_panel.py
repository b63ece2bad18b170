"""One line above the status bar while a fine-tune runs: its phase, step, loss and ETA.

The panel owns the job (`tui.services.finetune_job.FinetuneJob`, a child process) and its
async worker: the UI never waits on it, progress comes back as `Progressed` messages and the
end as one `Finished`. One job at a time; the panel hides itself when none runs. When the
panel goes (the app quits), the child's process group is killed and its output removed.

It also carries the inbox's fine-tune actions (`open`, `cancel`): the options modal before,
and after, the new backend added to the desk and offered in `FinetuneDoneModal`, whose
"route with it now" is the backend picker's hot swap (`app.swap_backend`).

The panel is composed into the inbox but hidden until a job starts, so the job, its progress
events and the modals are imported when first used, not with the inbox (11 of the panel's
17 ms of import, `-X importtime`); the types stay for the checker only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.content import Content
from textual.message import Message
from textual.widgets import Static

from tui.core import paths
from tui.core.config import BackendConfig, ConfigError
from tui.services.desk import Desk

if TYPE_CHECKING:
    from screens.finetune_modal import DoneChoice
    from tui.core.learning.llm.progress import DoneEvent
    from tui.services.finetune_job import Event, FinetuneJob, JobOutcome, JobRequest, Launcher


@dataclass(frozen=True, slots=True)
class Installed:
    """The backend a finished job added to the config, as the loader read it back."""

    name: str
    config: BackendConfig
    config_path: Path


def progress_line(base: str, event: Event | None) -> Content:
    """What the panel says for the latest event."""
    from tui.core.learning.llm.progress import DoneEvent, ErrorEvent, StageEvent, StepEvent

    head = Content.assemble((" ◆ fine-tune ", "bold $accent"), (base, "$text"))
    if isinstance(event, StepEvent):
        loss = "–" if event.loss is None else f"{event.loss:.4f}"
        return Content.assemble(
            head,
            f" │ training step {event.step}/{event.total}",
            f" │ loss {loss}",
            f" │ ETA {_duration(event.eta_s)}",
        )
    if isinstance(event, StageEvent):
        return Content.assemble(head, f" │ {event.phase}…")
    if isinstance(event, DoneEvent):
        return Content.assemble(head, " │ adding the backend…")
    if isinstance(event, ErrorEvent):
        return Content.assemble(head, " │ failed")
    return Content.assemble(head, " │ starting…")


def _duration(seconds: float) -> str:
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class FinetunePanel(Static):
    """Shows the running job; `start` and `cancel` it; says `Finished` once at its end."""

    DEFAULT_CSS = "FinetunePanel { display: none; }"

    class Progressed(Message):
        def __init__(self, event: Event) -> None:
            super().__init__()
            self.event = event

    class Finished(Message):
        """The job ended; `installed` is set when its backend was added to the config."""

        def __init__(
            self, outcome: JobOutcome, installed: Installed | None, install_error: str | None
        ) -> None:
            super().__init__()
            self.outcome = outcome
            self.installed = installed
            self.install_error = install_error

    def __init__(self, desk: Desk, *, widget_id: str | None = None) -> None:
        super().__init__(id=widget_id)
        self.desk = desk
        source = desk.settings.source
        self._launcher: Launcher | None = None
        self.config_path = source or paths.default_config_path()
        """Where a finished job's backend table is appended."""
        self.job: FinetuneJob | None = None

    @property
    def launcher(self) -> Launcher:
        """How the child starts (this database and config); tests give a scripted one.
        Made on first use, so that the job's module loads with the first job."""
        if self._launcher is None:
            from tui.services.finetune_job import Launcher

            source = self.desk.settings.source
            self._launcher = Launcher(db=getattr(self.desk.store, "path", None), config=source)
        return self._launcher

    @launcher.setter
    def launcher(self, launcher: Launcher) -> None:
        self._launcher = launcher

    @property
    def running(self) -> bool:
        return self.job is not None

    @property
    def line_text(self) -> str:
        """The panel's line as plain text ("" when idle): what the palette's notice repeats."""
        job = self.job
        return progress_line(job.request.base, job.last).plain if job else ""

    def start(self, request: JobRequest, running_backends: tuple[str, ...]) -> bool:
        """Start a job; False (and nothing started) while another one runs."""
        if self.job is not None:
            return False
        from tui.services.finetune_job import FinetuneJob

        self.job = FinetuneJob(request, self.launcher, on_event=self._event, on_noise=self._noise)
        self.update(progress_line(request.base, None))
        self.display = True
        self._follow(self.job, running_backends)
        return True

    def cancel(self) -> bool:
        """Stop the running job (SIGTERM, then SIGKILL); False when none runs."""
        if self.job is None:
            return False
        self.update(Content.assemble(progress_line(self.job.request.base, None), " cancelling…"))
        self.run_worker(self.job.cancel(), group="finetune-cancel", exit_on_error=False)
        return True

    def _event(self, event: Event) -> None:
        self.post_message(self.Progressed(event))

    def _noise(self, line: str) -> None:
        self.log.warning(f"fine-tune: not a progress line: {line!r}")

    def on_finetune_panel_progressed(self, message: FinetunePanel.Progressed) -> None:
        if self.job is not None:
            self.update(progress_line(self.job.request.base, message.event))

    @work(group="finetune", exit_on_error=False)
    async def _follow(self, job: FinetuneJob, running_backends: tuple[str, ...]) -> None:
        from tui.services.finetune_job import JobOutcome, install_backend

        installed: Installed | None = None
        problem: str | None = None
        try:
            outcome = await job.run()
        except Exception as exc:  # a broken job is shown, never raised into the app
            outcome = JobOutcome("failed", f"{type(exc).__name__}: {exc}")
        if outcome.state == "done" and outcome.done is not None:
            try:
                name, config = await asyncio.to_thread(
                    install_backend, outcome.done, self.config_path, running_backends
                )
                installed = Installed(name, config, self.config_path)
            except (ValueError, ConfigError, OSError) as exc:
                problem = str(exc)
        self.job = None
        self.display = False
        self.post_message(self.Finished(outcome, installed, problem))

    def open(self) -> None:
        """The options modal, then the job; while one runs, say how far it is instead."""
        if self.job is not None:
            self.notify(f"A fine-tune is already running: {self.line_text.strip()}")
            return

        def picked(request: JobRequest | None) -> None:
            if request is not None:
                self.start(request, tuple(self.desk.settings.backends))

        from screens.finetune_modal import FinetuneModal

        self.app.push_screen(FinetuneModal(), picked)

    def on_finetune_panel_finished(self, message: FinetunePanel.Finished) -> None:
        outcome, installed = message.outcome, message.installed
        if outcome.state == "cancelled":
            self.notify(outcome.message, title="Fine-tune")
        elif outcome.state == "failed":
            self.notify(outcome.message, title="Fine-tune failed", severity="error", timeout=20)
        elif installed is None or outcome.done is None:
            problem = message.install_error or "no backend table"
            self.notify(
                f"Fine-tuned into {outcome.done.out if outcome.done else '?'}, but the backend"
                f" was not added: {problem}",
                title="Fine-tune",
                severity="error",
                timeout=20,
            )
        else:
            self.offer(installed, outcome.done)

    def offer(self, installed: Installed, done: DoneEvent) -> None:
        """Add the backend to the desk and ask what to do with it."""
        try:
            self.desk.add_backend(installed.name, installed.config)
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        name = installed.name
        from screens.finetune_modal import SHADOW_HOOK, FinetuneDoneModal

        def chosen(choice: DoneChoice | None) -> None:
            if choice == "swap":
                swap = getattr(self.app, "swap_backend", None)
                if swap is not None:
                    swap(name)
            elif choice == "shadow":
                shadow = getattr(self.app, SHADOW_HOOK, None)
                if shadow is None:
                    self.notify("Shadow mode is not part of this build", severity="warning")
                else:
                    shadow(name)
            else:
                self.notify(f"Backend {name} kept: pick it any time with b")

        modal = FinetuneDoneModal(name, done, str(installed.config_path))
        self.app.push_screen(modal, chosen)

    def on_unmount(self) -> None:
        if self.job is not None:
            self.job.kill_now()
