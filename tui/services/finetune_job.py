"""A fine-tune run as a background job: `triagedesk finetune --progress json` in a child process.

A child process, not a thread: torch's gigabytes (and its threads) stay out of the TUI and
are all given back when the child ends, and cancelling is killing its process group (the
converter it starts goes with it). The child's stdout is read line by line as hostile input:
what `tui.core.learning.llm.progress.parse_line` does not accept is handed to `on_noise` and
otherwise ignored. A job that did not end with a `done` line, exit 0 and its `backend.toml`
is never reported done; a cancelled or failed one removes the output folder it created, so
no half-written model is left looking like a finished one. Textual-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import time
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tui.core import paths
from tui.core.config import BackendConfig, load_settings
from tui.core.config_write import Scalar, append_backend
from tui.core.learning.llm.progress import DoneEvent, ErrorEvent, StageEvent, StepEvent, parse_line

Event = StageEvent | StepEvent | DoneEvent | ErrorEvent
EventCallback = Callable[[Event], None]
NoiseCallback = Callable[[str], None]
JobState = Literal["done", "failed", "cancelled"]

TERMINATE_GRACE_S = 5.0
"""How long a cancelled child has between SIGTERM and SIGKILL."""
READ_CHUNK = 65_536
MAX_LINE_CHARS = 64_000
"""Longer stdout lines are dropped unread (and reported as noise, cut)."""
STDERR_TAIL = 20
_SLUG = re.compile(r"[^a-z0-9]+")


class JobRequest(BaseModel):
    """What the fine-tune modal asks for: the `triagedesk finetune` options it offers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base: str = Field(default="gemma3-270m", min_length=1)
    method: Literal["lora", "full"] = "lora"
    objective: Literal["generate", "classify"] = "generate"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_steps: int | None = Field(default=None, ge=1)
    epochs: int = Field(default=1, ge=1)
    out: Path
    name: str | None = None
    data: Path | None = None
    """A labelled JSONL/CSV instead of the database's agent labels (scripts, tests)."""
    teacher: Path | None = None
    """classify: an encoder folder fine-tuned first as the teachers (`finetune --teacher`)."""

    @model_validator(mode="after")
    def _teacher_needs_classify(self) -> JobRequest:
        if self.teacher is not None and self.objective != "classify":
            raise ValueError("a teacher needs the classify objective")
        return self

    def options(self) -> list[str]:
        argv = ["--base", self.base, "--out", str(self.out), "--method", self.method]
        if self.data is not None:
            argv += ["--data", str(self.data)]
        argv += ["--objective", self.objective]
        argv += ["--device", self.device, "--epochs", str(self.epochs)]
        if self.max_steps is not None:
            argv += ["--max-steps", str(self.max_steps)]
        if self.name:
            argv += ["--name", self.name]
        if self.teacher is not None:
            argv += ["--teacher", str(self.teacher)]
        return argv


def default_out(base: str, now: float | None = None) -> Path:
    """A new folder per run in the models folder: `finetuned/<base>-<UTC time>`."""
    slug = _SLUG.sub("-", Path(base).name.lower()).strip("-") or "model"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return paths.models_dir() / "finetuned" / f"{slug}-{stamp}"


@dataclass(frozen=True, slots=True)
class Launcher:
    """How a job starts its child: the command prefix, the database and config it names.

    The default prefix is this interpreter running the package (`python -m tui`), so the child
    has the same installation as the app; tests give another real program.
    """

    db: Path | None
    config: Path | None
    command: tuple[str, ...] = (sys.executable, "-m", "tui")
    env: Mapping[str, str] | None = None
    """Extra environment for the child (on top of this process's)."""

    def argv(self, request: JobRequest) -> list[str]:
        argv = list(self.command)
        if self.db is not None:
            argv += ["--db", str(self.db)]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        return [*argv, "finetune", *request.options(), "--progress", "json"]


@dataclass(slots=True)
class JobOutcome:
    state: JobState
    message: str
    """One line: what was made, why it failed, or that it was cancelled."""
    exit_code: int | None = None
    done: DoneEvent | None = None


@dataclass(slots=True)
class FinetuneJob:
    """One run of the child; `run` once, `cancel` (or `kill_now`) from elsewhere any time."""

    request: JobRequest
    launcher: Launcher
    on_event: EventCallback | None = None
    on_noise: NoiseCallback | None = None
    last: Event | None = None
    """The latest valid event (what a progress display shows)."""
    _process: asyncio.subprocess.Process | None = None
    _cancelled: bool = False
    _created_out: bool = False
    _stderr: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL))

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def run(self) -> JobOutcome:
        """Start the child, follow it to its end, and say how it ended.

        Cancelling the task that awaits this kills the child's group at once (SIGKILL) and
        removes the output it created, then re-raises: quitting the app ends the job.
        """
        out = self.request.out
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            return JobOutcome("failed", f"{out}: already exists and is not empty")
        self._created_out = not out.exists()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.launcher.argv(self.request),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                env={**os.environ, **(self.launcher.env or {})},
            )
        except OSError as exc:
            return JobOutcome("failed", f"cannot start the fine-tune: {exc}")
        process = self._process
        assert process.stdout is not None and process.stderr is not None
        try:
            done = await self._follow(process.stdout, process.stderr)
            code = await process.wait()
        except asyncio.CancelledError:
            self.kill_now()
            raise
        return self._outcome(code, done)

    async def _follow(
        self, stdout: asyncio.StreamReader, stderr: asyncio.StreamReader
    ) -> DoneEvent | None:
        found: list[DoneEvent] = []

        def take(line: str) -> None:
            event = parse_line(line)
            if event is None:
                if line.strip() and self.on_noise is not None:
                    self.on_noise(line[:200])
                return
            self.last = event
            if isinstance(event, DoneEvent):
                found.append(event)
            if self.on_event is not None:
                self.on_event(event)

        await asyncio.gather(_lines(stdout, take), _lines(stderr, self._stderr.append))
        return found[-1] if found else None

    def _outcome(self, code: int, done: DoneEvent | None) -> JobOutcome:
        out = self.request.out
        if self._cancelled:
            self._remove_output()
            return JobOutcome("cancelled", "fine-tune cancelled; nothing was kept", code)
        toml = out / "backend.toml"
        if code == 0 and done is not None and Path(done.out) == out.resolve() and toml.is_file():
            return JobOutcome("done", f"fine-tuned into {out}", code, done)
        self._remove_output()
        error = self.last if isinstance(self.last, ErrorEvent) else None
        if error is not None:
            message = error.message.strip().splitlines()[0] if error.message.strip() else ""
        else:
            message = _last_error_line(self._stderr)
        if not message:
            message = f"the fine-tune ended with exit status {code} and no result"
        return JobOutcome("failed", message, code)

    async def cancel(self) -> None:
        """SIGTERM to the child's process group, SIGKILL after a grace period."""
        self._cancelled = True
        process = self._process
        if process is None or process.returncode is not None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), TERMINATE_GRACE_S)
        _signal_group(process.pid, signal.SIGKILL)  # and anything it started that lingers

    def kill_now(self) -> None:
        """SIGKILL the group and remove the output, without waiting (the app is quitting)."""
        self._cancelled = True
        if self._process is not None:
            _signal_group(self._process.pid, signal.SIGKILL)
        self._remove_output()

    def _remove_output(self) -> None:
        if self._created_out:
            shutil.rmtree(self.request.out, ignore_errors=True)


def read_backend_table(toml_path: Path) -> tuple[str, dict[str, Scalar]]:
    """The one `[backends.<name>]` table a finished job wrote, checked before it is used.

    Raises:
        ValueError: Not readable TOML, not exactly one backend table, or a value that is
            not a plain string, number or boolean.
    """
    try:
        raw = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{toml_path}: cannot read: {exc}") from None
    backends = raw.get("backends")
    if set(raw) != {"backends"} or not isinstance(backends, dict) or len(backends) != 1:
        raise ValueError(f"{toml_path}: expected one [backends.<name>] table")
    ((name, table),) = backends.items()
    if not isinstance(table, dict):
        raise ValueError(f"{toml_path}: backends.{name}: expected a table")
    values: dict[str, Scalar] = {}
    for key, value in table.items():
        if not isinstance(value, str | int | float | bool):
            raise ValueError(f"{toml_path}: backends.{name}.{key}: expected a plain value")
        values[key] = value
    return name, values


def install_backend(
    done: DoneEvent, config: Path, running: Iterable[str]
) -> tuple[str, BackendConfig]:
    """Append a finished job's table to the config and return it as the loader reads it.

    Runs off the event loop (file work). The name is the job's, or the first free `name-N`
    when the config or the running app (`running`) already has it.

    Raises:
        ValueError: The job's `backend.toml` is not one plain backend table.
        ConfigError: The config cannot be updated (left untouched), or the result does not
            load.
    """
    name, values = read_backend_table(Path(done.backend_toml))
    final = append_backend(config, name, values, taken=running)
    return final, load_settings(config, required=True).backend(final)


async def _lines(stream: asyncio.StreamReader, take: Callable[[str], None]) -> None:
    """Each line of the stream, decoded leniently; an over-long line is cut, never buffered."""
    pending = bytearray()
    overflow = False
    while chunk := await stream.read(READ_CHUNK):
        pending += chunk
        while (end := pending.find(b"\n")) >= 0:
            line, pending = bytes(pending[:end]), pending[end + 1 :]
            if not overflow:
                take(line.decode("utf-8", errors="replace"))
            overflow = False
        if len(pending) > MAX_LINE_CHARS:
            if not overflow:
                take(bytes(pending[:200]).decode("utf-8", errors="replace"))
            pending.clear()
            overflow = True
    if pending and not overflow:
        take(bytes(pending).decode("utf-8", errors="replace"))


def _last_error_line(tail: Sequence[str]) -> str:
    """The child's `triagedesk: error:` line (a usage error has no JSON), else its last line."""
    lines = [line.strip() for line in tail if line.strip()]
    for line in reversed(lines):
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    return lines[-1][:300] if lines else ""


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
