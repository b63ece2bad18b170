"""The routing worker process: routes the TUI's runs and writes their decisions to the store.

Started by `tui.services.routing.worker.RoutingWorker` as
`python -m tui.services.routing.worker_run PARENT_PID`, it reads `wire` messages on stdin and
writes them on stdout (the real stdout: anything else printed goes to stderr, so a chatty
library cannot break the framing). It builds its own store connection and router from what
the parent sends (`Hello`), routes each `StartRun` with the same `RunService` as the CLI and
the in-thread engine, and tells the parent what was decided (already stored), in batches.

It dies with the parent: EOF on stdin (the parent closed the pipe or exited) shuts it down
like `Shutdown` does, storing what was decided; on Linux the kernel also sends it SIGTERM
when the parent dies (`PR_SET_PDEATHSIG`), for a parent killed before its pipes close.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from pydantic import ValidationError

from backends.retry import RetryWait, reason
from tui.core.backend_types import BUILTIN
from tui.core.config import Settings
from tui.core.models import Decision, Taxonomy
from tui.core.store import Store
from tui.services.routing import Router
from tui.services.routing.wire import (
    TO_CHILD,
    Cancel,
    Decided,
    Failed,
    Figures,
    Finished,
    Hello,
    Ready,
    Shutdown,
    StartRun,
    Swap,
    Waiting,
    encode,
)
from tui.services.runs import PlannedRun, RunService, Selection

FLUSH_S = 0.05
"""Decisions wait at most this long in the child before they are sent (20 Hz): a burst of a
hundred answers crosses the pipe as one line, and the TUI redraws once for it."""
FIGURES_S = 0.25
"""How often the status bar's figures (in flight, the adaptive limits) are sent."""
SHUTDOWN_S = 10.0
"""How long a shutdown waits for stopped runs to store what they decided."""
LINE_LIMIT = 64 * 1024 * 1024
"""Longest line read from the pipe (a config with many backends is a few KB)."""
PR_SET_PDEATHSIG = 1
NICE = 5
"""The child's scheduling priority below the TUI's: when the two want the CPU at once (a
thousand replies to parse while a key waits), the kernel lets the TUI go first. Routing
loses little: it waits on the network most of the time."""


@dataclass(slots=True)
class _Run:
    stop: asyncio.Event
    task: asyncio.Task[None] | None = None
    buffer: list[Decision] = field(default_factory=list)


class Child:
    """The child's state: one store, one router, the runs going on."""

    def __init__(self, out: asyncio.WriteTransport) -> None:
        self.out = out
        self.store: Store | None = None
        self.router: Router | None = None
        self.service: RunService | None = None
        self.runs: dict[str, _Run] = {}
        self._settings_json: dict[str, object] | None = None

    def send(self, message: Decided | Figures | Waiting | Finished | Failed | Ready) -> None:
        if not self.out.is_closing():
            self.out.write(encode(message))

    def hello(self, message: Hello) -> None:
        BUILTIN.update(message.backend_types)
        settings = Settings.model_validate(message.settings)
        self._settings_json = message.settings
        self.store = Store(message.db, create=False)
        taxonomy = Taxonomy.model_validate(message.taxonomy)
        self.router = Router(settings, taxonomy, self.store)
        self.router.swap(message.active)
        self.router.on_wait = self._waiting
        self.service = RunService(self.store, self.router)
        with contextlib.suppress(Exception):  # a backend that cannot be built fails its run
            self.router.backend(message.active)  # built (a model loaded) before the first run
        self.send(Ready(pid=os.getpid()))

    def _waiting(self, backend: str, wait: RetryWait) -> None:
        self.send(
            Waiting(
                backend=backend,
                reason=reason(wait.error),
                message=str(wait.error),
                delay_s=wait.delay_s,
                retry=wait.retry,
                max_retries=wait.max_retries,
                giving_up=wait.giving_up,
                at=wait.at,
            )
        )

    async def configure(self, settings_json: dict[str, object] | None, active: str) -> None:
        """The parent's config, when it sent a changed one, and its active backend."""
        router = self.router
        assert router is not None, "a run or a swap before Hello"
        if settings_json is not None and settings_json != self._settings_json:
            settings = Settings.model_validate(settings_json)
            self._settings_json = settings_json
            router.settings = settings
            if tuple(settings.routing.shadow) != tuple(router.shadows.names):
                await router.shadows.set_names(tuple(settings.routing.shadow))
        router.swap(active)

    async def start(self, message: StartRun) -> None:
        await self.configure(message.settings, message.active)
        service = self.service
        assert service is not None
        selection = Selection(message.selection, message.ids, message.limit)
        plan = PlannedRun(
            message.run_id,
            selection,
            message.backend,
            message.recorded,
            message.resumed,
            lease_s=message.lease_s,
        )
        run = _Run(asyncio.Event())
        self.runs[message.run_id] = run
        run.task = asyncio.create_task(self._route(service, plan, run))

    async def _route(self, service: RunService, plan: PlannedRun, run: _Run) -> None:
        def collect(decision: Decision) -> None:
            run.buffer.append(decision.model_copy(update={"raw_output": None}))

        try:
            outcome = await service.route(plan, on_decision=collect, stop=run.stop)
        except Exception as exc:  # the store or the router failed: the parent says so
            self._flush(plan.run_id, run)
            self.send(Failed(run_id=plan.run_id, error=f"{type(exc).__name__}: {exc}"))
            return
        finally:
            self.runs.pop(plan.run_id, None)
        self._flush(plan.run_id, run)
        summary = outcome.summary
        self.send(
            Finished(
                run_id=plan.run_id,
                routed=summary.routed,
                errors=summary.errors,
                elapsed_s=summary.elapsed_s,
                labels=dict(summary.labels),
                error_classes=dict(summary.error_classes),
                skipped=dict(summary.skipped),
                stopped=outcome.stopped,
                finished=outcome.finished,
            )
        )

    def _flush(self, run_id: str, run: _Run) -> None:
        if run.buffer:
            batch, run.buffer = tuple(run.buffer), []
            self.send(Decided(run_id=run_id, decisions=batch))

    def figures(self) -> Figures:
        router = self.router
        if router is None:
            return Figures(in_flight=0)
        limits = {
            name: found
            for name in router.settings.backends
            if (found := router.concurrency_limit(name)) is not None
        }
        return Figures(in_flight=router.in_flight, limits=limits)

    async def pump(self) -> None:
        """Send the buffered decisions every `FLUSH_S` and the figures every `FIGURES_S`
        while runs go (and once more when the last one ends, so the bar shows 0)."""
        last_figures = 0.0
        was_busy = False
        while True:
            await asyncio.sleep(FLUSH_S)
            for run_id, run in list(self.runs.items()):
                self._flush(run_id, run)
            busy = bool(self.runs)
            now = time.monotonic()
            if (busy and now - last_figures >= FIGURES_S) or (was_busy and not busy):
                self.send(self.figures())
                last_figures = now
            was_busy = busy

    async def shut_down(self) -> None:
        """Stop every run (each stores what it decided and releases its claims), then close
        the backends and the store."""
        for run in self.runs.values():
            run.stop.set()
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.router is not None:
            with contextlib.suppress(Exception):
                await self.router.aclose()
        if self.store is not None:
            self.store.close()


async def serve(stdin: int, stdout: int) -> int:
    """Read messages until `Shutdown` or EOF; returns the exit status."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(stdin, "rb", buffering=0)
    )
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(stdout, "wb", buffering=0))
    child = Child(out)
    stopping = asyncio.Event()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
    pump = asyncio.create_task(child.pump())
    status = 0
    try:
        while not stopping.is_set():
            line = await _next_line(reader, stopping)
            if not line:
                break
            try:
                message = TO_CHILD.validate_json(line)
            except ValidationError as exc:
                print(f"routing worker: bad message: {exc}", file=sys.stderr)
                status = 2
                break
            if isinstance(message, Hello):
                child.hello(message)
            elif isinstance(message, StartRun):
                await child.start(message)
            elif isinstance(message, Cancel):
                run = child.runs.get(message.run_id)
                if run is not None:
                    run.stop.set()
            elif isinstance(message, Swap):
                await child.configure(message.settings, message.active)
            elif isinstance(message, Shutdown):
                break
    finally:
        await child.shut_down()
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        for run_id, run in list(child.runs.items()):
            child._flush(run_id, run)
        out.close()
    return status


async def _next_line(reader: asyncio.StreamReader, stopping: asyncio.Event) -> bytes:
    """The next line, or b"" at EOF or once `stopping` is set (SIGTERM)."""
    reading = asyncio.ensure_future(reader.readline())
    stopped = asyncio.ensure_future(stopping.wait())
    done, _ = await asyncio.wait({reading, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if reading in done:
        return reading.result()
    reading.cancel()
    return b""


def _die_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM when the parent dies (Linux), and leave at once if it
    is gone already (it died before the call)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        sys.exit(0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    _die_with_parent(int(args[0]) if args else os.getppid())
    with contextlib.suppress(OSError):
        os.nice(NICE)
    stdout = os.dup(1)
    os.dup2(2, 1)  # print() and stray library output go to stderr, never onto the pipe
    return asyncio.run(serve(os.dup(0), stdout))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["FIGURES_S", "FLUSH_S", "Child", "main", "serve"]
