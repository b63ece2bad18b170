"""One thread that writes a run's decisions, so the event loop never waits for SQLite.

`Router.run` used to write each batch through `asyncio.to_thread`: a batch of 64 on whichever
of the default executor's threads was free (four or five of them in a run), the worker that
filled it waiting for the write. Here one thread per run owns the writes: the loop hands it
batches without waiting, the thread takes everything queued at once (a deep queue makes one
larger transaction rather than several), and the stored decisions come back to the loop in
order, where `on_decision` is told of them. The guarantees stay those of the awaited write:
`finish` returns only once every handed batch is stored, so a run reports done with every
decision persisted; a failed write is raised in the loop (by `check`, at the next hand-over,
and by `finish`); a run killed outright loses only what was not yet stored, whose tickets a
resumed run routes (claims are released in the transaction that stores their decision).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable

from tui.core.models import Decision

MAX_BATCH = 1024
"""Most decisions one transaction takes from a deep queue."""
MAX_BACKLOG = 8192
"""Decisions handed over and not yet stored past which the loop waits for the writer."""

Record = Callable[[list[Decision]], list[Decision]]
"""Stores a batch and returns the decisions stored (`Router._record` with its owner)."""
Stored = Callable[[list[Decision]], None]


class DecisionWriter:
    """The writer thread of one run: `submit` batches, `finish` to wait for all of them.

    Args:
        record: Stores one batch (called on the writer thread only).
        on_stored: Told each stored batch, on the event loop, in the order handed over.
    """

    def __init__(self, record: Record, on_stored: Stored) -> None:
        self._record = record
        self._on_stored = on_stored
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[list[Decision] | None] = queue.SimpleQueue()
        self._backlog = 0
        self._room: asyncio.Future[None] | None = None
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self.failure: BaseException | None = None
        """The first failed write; nothing handed over after it is written."""
        self._thread = threading.Thread(target=self._run, name="decision-writer", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise the failed write, if one failed (the run stops as an awaited write stopped it)."""
        if self.failure is not None:
            raise self.failure

    def submit(self, batch: list[Decision]) -> None:
        """Hand a batch to the thread; never waits (see `room` for the backlog's bound)."""
        self.check()
        if batch:
            self._backlog += len(batch)
            self._queue.put(batch)

    async def room(self) -> None:
        """Wait while the writer is more than `MAX_BACKLOG` decisions behind."""
        while self._backlog > MAX_BACKLOG and self.failure is None:
            if self._room is None or self._room.done():
                self._room = self._loop.create_future()
            await asyncio.shield(self._room)
        self.check()

    async def finish(self) -> None:
        """Wait until everything handed over is stored, stop the thread; raise a failed write."""
        self._queue.put(None)
        await asyncio.shield(self._finished)
        self._thread.join()  # it told us its last word: only its return is left
        self.check()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._tell(self._end)
                return
            batch, closing = self._gathered(first)
            if self.failure is None:
                try:
                    stored = self._record(batch)
                except BaseException as exc:  # the store itself failed: the run stops
                    self._tell(self._failed, exc, len(batch))
                else:
                    self._tell(self._stored, stored, len(batch))
            if closing:
                self._tell(self._end)
                return

    def _gathered(self, first: list[Decision]) -> tuple[list[Decision], bool]:
        """`first` and whatever else is queued now, up to `MAX_BATCH`; True when the end
        marker was among them."""
        batch = list(first)
        while len(batch) < MAX_BATCH:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return batch, True
            batch += more
        return batch, False

    def _tell(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _stored(self, stored: list[Decision], handed: int) -> None:
        self._written(handed)
        try:
            self._on_stored(stored)
        except Exception as exc:  # the caller's callback failed: the run stops, as it did
            if self.failure is None:
                self.failure = exc

    def _failed(self, exc: BaseException, handed: int) -> None:
        if self.failure is None:
            self.failure = exc
        self._written(handed)

    def _written(self, handed: int) -> None:
        self._backlog -= handed
        if self._room is not None and not self._room.done() and self._backlog <= MAX_BACKLOG:
            self._room.set_result(None)

    def _end(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        if not self._finished.done():
            self._finished.set_result(None)
