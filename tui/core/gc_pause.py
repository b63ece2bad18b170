"""Holding off Python's cycle collector while a bulk step builds objects that all stay alive."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cycle collector for the block; resume it afterwards if it was on.

    An import of a large file makes millions of objects that stay alive until it ends
    (records, tickets, their field dicts, the rows for SQLite), and every few thousand
    allocations the collector walks the ever larger heap again: a third of the parse time of
    300,000 tickets, and as much again in building their rows. None of these objects form
    cycles, and reference counting still frees whatever is dropped. A block that finds the
    collector already paused (another thread's import) leaves it to that thread to resume.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
