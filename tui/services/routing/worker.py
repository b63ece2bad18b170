"""Routing in a worker process: the TUI's side of it (`worker_run` is the child's).

`RoutingEngine` moved routing off the UI's event loop onto a thread, but at 1,000 tickets in
flight the engine's thread keeps a core busy and the UI thread waits for the GIL behind it
(CHANGES.md items 13 and 16: in a real terminal p95 296 ms from key to screen).
`RoutingWorker` offers the screens the same interface (`call`, `route`, `in_flight`,
`concurrency_limit`, `warm`, `aclose`) but routes runs in a child process with a GIL of its own,
which writes the decisions to the store itself: the TUI only plans runs (a read), reads the
store, and gets small events (`wire`): decisions already stored, a few lines a second.

What is not a run (compare's answers, health checks, shadow changes: one ticket or one call
at a time) still goes to an in-thread `RoutingEngine` through `call`, so those keep their
backends' connections in one loop of this process.

The child is started by `warm` (the inbox calls it once its first window is painted) or the
first run, and lives until `aclose` (the app's unmount). It
dies with the parent (EOF on its stdin, and `PR_SET_PDEATHSIG` on Linux). When it dies or
breaks the protocol, every run it had fails with `WorkerFailed` (the inbox shows the error,
the app stays up) and the next run starts a new child. Textual-free, like `tui.services`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from backends.retry import RetryWait
from tui.core.backend import BackendError
from tui.core.backend_types import BUILTIN
from tui.core.config import Settings
from tui.core.models import Decision
from tui.core.store import Store
from tui.services.routing.engine import CLOSE_TIMEOUT_S, RoutingEngine
from tui.services.routing.router import Router
from tui.services.routing.summary import RunSummary
from tui.services.runs import PlannedRun, RunOutcome, RunService

if TYPE_CHECKING:  # the wire's models load with the first child (8 ms off the first frame)
    from tui.services.routing import wire

T = TypeVar("T")

ENV = "TRIAGEDESK_ROUTING_WORKER"
"""`1` routes the TUI's runs in a worker process, `0` in a thread of its own; unset (or
`auto`): a worker when some backend may have `WORKER_FROM` calls in flight."""
WORKER_FROM = 128
"""The `max_concurrency` from which `auto` picks the worker. Measured (RESULTS.md 3b): at
128 and 1,000 in flight the worker's keys were faster (p95 1.7x and 3.4x); below, it would
cost a second process and seconds of start-up for nothing measured (with it for every test
app, the TUI tests took 1.8x as long on the shared machine, and timed out)."""
SWAP_POLL_S = 0.1
"""How often a run waiting on the child checks for a hot swap or a config change to pass on
(`_pass_on_changes`)."""
LINE_LIMIT = 64 * 1024 * 1024
STDERR_TAIL = 2000
"""How much of a dead child's stderr its error shows."""


def worker_wanted(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the TUI routes in a worker process: `TRIAGEDESK_ROUTING_WORKER` says so
    (`1`/`0`), else (`auto`, unset) when a backend allows `WORKER_FROM` calls at once."""
    value = (os.environ if environ is None else environ).get(ENV, "auto").strip().lower()
    if value in ("1", "true", "yes", "on", "worker"):
        return True
    if value in ("0", "false", "no", "off", "thread"):
        return False
    limits = (c.max_concurrency for c in settings.backends.values())
    return max(limits, default=0) >= WORKER_FROM


class WorkerFailed(RuntimeError):
    """The routing worker failed a run, died, or wrote something that is not the protocol."""


class RelayedError(BackendError):
    """A backend error that happened in the child, as the retry toast needs it: its
    `error_class` is the child's `reason` line, which `backends.retry.reason` falls back on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def error_class(self) -> str:
        return self.reason


@dataclass(slots=True)
class _Waiter:
    outcome: asyncio.Future[RunOutcome]
    on_decision: Callable[[Decision], None] | None


class RoutingWorker:
    """Routes runs in a child process; everything else on an in-thread `RoutingEngine`."""

    def __init__(self, router: Router, store: Store) -> None:
        self.router = router
        self.store = store
        self.engine = RoutingEngine(router)
        """For `call`: compare, health checks, shadow changes."""
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: IO[bytes] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._runs: dict[str, _Waiter] = {}
        self._figures: wire.Figures | None = None
        """The child's last figures (None: no child, or none reported yet)."""
        self._sent_settings: Settings | None = None
        self._sent_active = ""
        self._starting: asyncio.Lock | None = None
        self._closed = False
        """`aclose` was called (a run after it starts a new child, a warm-up does not)."""

    # The interface the screens use (the same as RoutingEngine's) -----------------------

    @property
    def running(self) -> bool:
        """A child is alive, or the in-thread engine has started."""
        alive = self._proc is not None and self._proc.returncode is None
        return alive or self.engine.running

    @property
    def pid(self) -> int | None:
        """The child's process id while one runs."""
        return None if self._proc is None else self._proc.pid

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` (not a run: compare, a health check) on the in-thread engine."""
        return await self.engine.call(coro)

    @property
    def in_flight(self) -> int:
        """Tickets in flight now: the child's (as last reported) and this process's."""
        child = 0 if self._figures is None else self._figures.in_flight
        return child + self.router.in_flight

    def concurrency_limit(self, name: str) -> tuple[int, int] | None:
        """(calls allowed now, `max_concurrency`) of a backend, the child's where it called
        the backend (as last reported), else this process's router's."""
        found = None if self._figures is None else self._figures.limits.get(name)
        return found or self.router.concurrency_limit(name)

    async def route(
        self,
        service: RunService,
        plan: PlannedRun,
        *,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> RunOutcome:
        """Route a planned run in the child; `on_decision` is told each decision once the
        child has stored it (on this loop, in batches). Cancelling this stops the run there
        (what was decided is stored, the claims released) and waits for that, then raises.

        Raises:
            WorkerFailed: The run raised in the child, or the child died.
        """
        from tui.services.routing import wire

        del service  # the child has its own, over its own store connection
        self._closed = False
        await self._ensure_started()
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), on_decision)
        self._runs[plan.run_id] = waiter
        selection = plan.selection
        settings = self.router.settings
        self._sent_active = self.router.active
        self._send(
            wire.StartRun(
                run_id=plan.run_id,
                selection=selection.kind,
                ids=selection.ids,
                limit=selection.limit,
                backend=plan.backend,
                recorded=plan.recorded,
                resumed=plan.resumed,
                lease_s=plan.lease_s,
                active=self._sent_active,
                settings=None if settings is self._sent_settings else _settings_json(settings),
            )
        )
        self._sent_settings = settings
        try:
            while not waiter.outcome.done():
                await asyncio.wait({waiter.outcome}, timeout=SWAP_POLL_S)
                self._pass_on_changes()
            return waiter.outcome.result()
        except asyncio.CancelledError:
            if not waiter.outcome.done():
                self._send(wire.Cancel(run_id=plan.run_id))
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(waiter.outcome), CLOSE_TIMEOUT_S)
            raise
        finally:
            self._runs.pop(plan.run_id, None)

    def _pass_on_changes(self) -> None:
        """Tell the child of a hot swap or a config change (a shadow promoted, a backend
        added) made while its runs go: the app sets `Router.active` and `Router.settings`
        as plain attributes, so they are compared with what was sent."""
        from tui.services.routing import wire

        router = self.router
        changed = router.settings is not self._sent_settings
        if self._proc is None or (router.active == self._sent_active and not changed):
            return
        self._sent_active = router.active
        settings = _settings_json(router.settings) if changed else None
        self._send(wire.Swap(active=router.active, settings=settings))
        self._sent_settings = router.settings

    async def warm(self) -> None:
        """Start the child now, so the first run does not wait for it: starting Python, the
        imports and the active backend (the specialist loads its model) took 3.5-4.3 s on
        the shared machine, against 0.03 s for a first run in a thread."""
        if not self._closed:  # a warm-up that comes after the app closed starts nothing
            await self._ensure_started()

    async def aclose(self) -> None:
        """Stop the child (its runs store what they decided) and the in-thread engine."""
        self._closed = True
        if self._starting is not None:
            async with self._starting:  # a child being started is stopped, not left behind
                await self._close_child()
        else:
            await self._close_child()
        await self.engine.aclose()

    async def _close_child(self) -> None:
        from tui.services.routing import wire

        proc = self._proc
        if proc is not None and proc.returncode is None:
            self._send(wire.Shutdown())
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), CLOSE_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, CLOSE_TIMEOUT_S)
        self._lost("the routing worker was closed")
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # The child -----------------------------------------------------------------------------

    async def _ensure_started(self) -> None:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._proc is not None and self._proc.returncode is None:
                return
            await self._start()

    async def _start(self) -> None:
        from tui.services.routing import wire

        root = str(Path(__file__).resolve().parents[3])  # the folder holding `tui`
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        if self._stderr is not None:  # the last child's, read already if it died
            self._stderr.close()
        self._stderr = tempfile.TemporaryFile(prefix="triagedesk-worker-")  # noqa: SIM115
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tui.services.routing.worker_run",
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            limit=LINE_LIMIT,
        )
        self._figures = None
        settings = self.router.settings
        self._send(
            wire.Hello(
                db=str(self.store.path),
                settings=_settings_json(settings),
                taxonomy=self.router.taxonomy.model_dump(mode="json"),
                active=self.router.active,
                backend_types=dict(BUILTIN),
            )
        )
        self._sent_settings = settings
        self._reader = asyncio.create_task(self._read(self._proc))

    def _send(self, message: wire.ToChild) -> None:
        from tui.services.routing import wire

        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            proc.stdin.write(wire.encode(message))

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        """Hand each of the child's messages on until it exits; then fail what it had."""
        from tui.services.routing import wire

        assert proc.stdout is not None
        broken: str | None = None
        try:
            while line := await proc.stdout.readline():
                try:
                    message = wire.FROM_CHILD.validate_json(line)
                except ValidationError as exc:
                    broken = f"the routing worker wrote a bad message: {exc.errors()[0]['msg']}"
                    proc.kill()
                    break
                try:
                    self._handle(message)
                except Exception as exc:  # a message that does not fit: end, never hang
                    broken = f"the routing worker's {message.kind} message failed: {exc}"
                    proc.kill()
                    break
        except (ValueError, ConnectionError) as exc:  # a line over the limit, a broken pipe
            broken = f"the routing worker's pipe broke: {exc}"
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        status = await proc.wait()
        if proc is self._proc:
            self._proc = None
            self._figures = None
        self._lost(broken or f"the routing worker exited with status {status}{self._tail()}")

    def _handle(self, message: wire.FromChild) -> None:
        from tui.services.routing import wire

        if isinstance(message, wire.Decided):
            waiter = self._runs.get(message.run_id)
            if waiter is not None and waiter.on_decision is not None:
                try:
                    for decision in message.decisions:
                        waiter.on_decision(decision)
                except Exception as exc:  # the caller's callback: stop its run, keep reading
                    self._send(wire.Cancel(run_id=message.run_id))
                    if not waiter.outcome.done():
                        waiter.outcome.set_exception(exc)
        elif isinstance(message, wire.Figures):
            self._figures = message
        elif isinstance(message, wire.Waiting):
            on_wait = self.router.on_wait
            if on_wait is not None:
                wait = RetryWait(
                    RelayedError(message.reason, message.message),
                    message.delay_s,
                    message.retry,
                    message.max_retries,
                    message.giving_up,
                    message.at,
                )
                on_wait(message.backend, wait)
        elif isinstance(message, wire.Finished):
            waiter = self._runs.get(message.run_id)
            if waiter is not None and not waiter.outcome.done():
                summary = RunSummary(
                    message.run_id,
                    message.routed,
                    message.errors,
                    message.elapsed_s,
                    Counter(message.labels),
                    Counter(message.error_classes),
                    Counter(message.skipped),
                )
                waiter.outcome.set_result(
                    RunOutcome(summary, stopped=message.stopped, finished=message.finished)
                )
        elif isinstance(message, wire.Failed):
            waiter = self._runs.get(message.run_id)
            if waiter is not None and not waiter.outcome.done():
                waiter.outcome.set_exception(WorkerFailed(message.error))

    def _lost(self, why: str) -> None:
        """Fail every run still waiting: the child that had them is gone."""
        for waiter in self._runs.values():
            if not waiter.outcome.done():
                waiter.outcome.set_exception(WorkerFailed(why))

    def _tail(self) -> str:
        """The end of the dead child's stderr, for its error line."""
        err = self._stderr
        if err is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            err.seek(0, os.SEEK_END)
            size = err.tell()
            err.seek(max(0, size - STDERR_TAIL))
            text = err.read().decode(errors="replace").strip()
            if text:
                return ": " + text.splitlines()[-1]
        return ""


def _settings_json(settings: Settings) -> dict[str, Any]:
    """The settings as given, not as defaulted: validating a default (the built-in
    `reference_backend`) as if it had been written would refuse a config that defines its own
    backends, so the child validates exactly what the parent did."""
    return settings.model_dump(mode="json", exclude_unset=True)


__all__ = ["ENV", "RelayedError", "RoutingWorker", "WorkerFailed", "worker_wanted"]
