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

    On resuming, what the block made that is still alive (the parsed file, while it is being
    stored) is moved straight to the oldest generation (`gc.freeze` then `gc.unfreeze`)
    instead of being walked by the next young collections as if it were new: at 300,000
    tickets that walk cost 0.3 CPU-s after every paused block. Garbage cycles made before the
    block are still found, by the next full collection.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


YOUNG_COLLECTION_EVERY = 7_000
"""Net allocations between young collections during a run (CPython's default is 700)."""


@contextmanager
def collector_tuned_for_a_run() -> Iterator[None]:
    """The cycle collector set for a long headless run, as it was again afterwards.

    What start-up made (modules, classes, pydantic's validators: never garbage) is frozen
    out of the collector's walks, and the young generation is collected every 7,000 net
    allocations rather than 700: a routing run makes and drops a few objects per event, which
    reference counting frees, and the collector's passes over what was left cost 0.25 CPU-s
    of an 8,000-ticket `route` (5 %) against 0.07 CPU-s so tuned (benchmarks/RESULTS.md §1
    "Whole runs"). Cycles are still collected, ten times less often.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
