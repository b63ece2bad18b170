"""The messages between the TUI and its routing worker process, one JSON object a line.

Why a process and a wire: with 1,000 tickets in flight the routing engine keeps a core busy
parsing replies, pricing and storing decisions, and in a thread of the TUI's own process it
holds the interpreter (the GIL) the UI thread needs to answer a key (p50 3.1 s, CHANGES.md
item 13). In a child process it holds only its own. The child writes every decision to the
store itself; what crosses the pipe is small: what to route, and what happened (decisions
without their raw model output, figures for the status bar, the end of a run).

Every message is a pydantic model with a `kind` tag, so each side validates what it reads: a
line that is not one of these is a broken child, reported as such, never guessed at.
Textual-free, like the rest of `tui.services`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from tui.core.models import Decision


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# The parent's messages --------------------------------------------------------------------


class Hello(_Message):
    """The first line the parent writes: what the child builds its router and store from."""

    kind: Literal["hello"] = "hello"
    db: str
    """The store's SQLite path or PostgreSQL URL (the child opens its own connection)."""
    settings: dict[str, Any]
    """`Settings.model_dump(mode="json")`: the config as the parent holds it now (a config
    built in memory, by the tests or the benchmarks, has no file to read again)."""
    taxonomy: dict[str, Any]
    """The parent's resolved taxonomy, so both route with the same labels."""
    active: str
    backend_types: dict[str, str] = Field(default_factory=dict)
    """The parent's backend registry (`tui.core.backend_types.BUILTIN`: type -> class path),
    so a type registered in the parent at run time resolves to the same class here."""


class StartRun(_Message):
    """Route a planned run (`tui.services.runs.PlannedRun`, planned in the parent)."""

    kind: Literal["start"] = "start"
    run_id: str
    selection: Literal["ids", "unrouted", "all", "errors"]
    ids: tuple[str, ...] = ()
    limit: int | None = None
    backend: str | None = None
    """None follows the active backend at each dispatch (the TUI's hot swap)."""
    recorded: bool = False
    resumed: bool = False
    lease_s: float | None = None
    active: str
    settings: dict[str, Any] | None = None
    """The config, when it changed since the last run (a fine-tune added a backend, a shadow
    was added): the child's router reads it from this run on."""


class Cancel(_Message):
    """Stop a run: tickets in flight are abandoned, what was decided is stored."""

    kind: Literal["cancel"] = "cancel"
    run_id: str


class Swap(_Message):
    """The hot swap: tickets dispatched from now on go to `active` (and, when the config
    changed mid-run, a shadow promoted or a backend added, with `settings`)."""

    kind: Literal["swap"] = "swap"
    active: str
    settings: dict[str, Any] | None = None


class Shutdown(_Message):
    """Cancel every run, close the backends and the store, exit (EOF on stdin does too)."""

    kind: Literal["shutdown"] = "shutdown"


ToChild = Annotated[StartRun | Cancel | Swap | Shutdown | Hello, Field(discriminator="kind")]


# The child's messages ---------------------------------------------------------------------


class Ready(_Message):
    """The child built its store and router and reads runs."""

    kind: Literal["ready"] = "ready"
    pid: int


class Decided(_Message):
    """Decisions of one run, stored already, in the order they were (at most every
    `worker_run.FLUSH_S`). `raw_output` is left off: the detail pane reads it from the store."""

    kind: Literal["decided"] = "decided"
    run_id: str
    decisions: tuple[Decision, ...]


class Figures(_Message):
    """What the status bar shows of routing, sent a few times a second while runs go."""

    kind: Literal["figures"] = "figures"
    in_flight: int
    limits: dict[str, tuple[int, int]] = Field(default_factory=dict)
    """Backend -> (calls allowed now, `max_concurrency`), for backends the child called."""


class Waiting(_Message):
    """A backend's retry loop waits (a rate limit above all): the TUI shows a toast."""

    kind: Literal["waiting"] = "waiting"
    backend: str
    reason: str
    """`backends.retry.reason` of the error: `rate limited (HTTP 429)`."""
    message: str
    delay_s: float
    retry: int
    max_retries: int
    giving_up: bool
    at: float


class Finished(_Message):
    """A run ended (its selection exhausted, or stopped by `Cancel`): its summary."""

    kind: Literal["finished"] = "finished"
    run_id: str
    routed: int
    errors: int
    elapsed_s: float
    labels: dict[str, int]
    error_classes: dict[str, int]
    skipped: dict[str, int]
    stopped: bool
    finished: bool


class Failed(_Message):
    """A run raised (the store or the router failed, not a backend: a backend's failure is
    an error decision like any other)."""

    kind: Literal["failed"] = "failed"
    run_id: str
    error: str
    """`Type: message`, to show as it is."""


FromChild = Annotated[
    Ready | Decided | Figures | Waiting | Finished | Failed, Field(discriminator="kind")
]

TO_CHILD: TypeAdapter[ToChild] = TypeAdapter(ToChild)
FROM_CHILD: TypeAdapter[FromChild] = TypeAdapter(FromChild)


def encode(message: _Message) -> bytes:
    """One line of JSON (the pipe's framing is the newline: JSON strings escape theirs)."""
    return message.model_dump_json().encode() + b"\n"


__all__ = [
    "FROM_CHILD",
    "TO_CHILD",
    "Cancel",
    "Decided",
    "Failed",
    "Figures",
    "Finished",
    "FromChild",
    "Hello",
    "Ready",
    "Shutdown",
    "StartRun",
    "Swap",
    "ToChild",
    "Waiting",
    "encode",
]
