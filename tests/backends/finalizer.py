"""Which async generators the running event loop's finalizer hook is handed: a backend's
stream readers must be closed where the answer ends, not left to the garbage collector."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def finalized() -> Iterator[list[str]]:
    """The async generators the running loop's finalizer hook is handed meanwhile.

    Each one costs the loop a `call_soon_threadsafe` (a self-pipe write), a task and a loop
    turn; a streamed reply's readers used to leave eight per ticket. Entered inside the test's
    coroutine: the loop installs its own hooks when it starts running.
    """
    firstiter, finalizer = sys.get_asyncgen_hooks()
    assert finalizer is not None
    seen: list[str] = []

    def counting(agen: Any) -> None:
        seen.append(agen.__qualname__)
        finalizer(agen)

    sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=counting)
    try:
        yield seen
    finally:
        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)
