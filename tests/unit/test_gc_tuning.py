"""The collector tuning of a headless run: start-up frozen, young passes rarer, all undone."""

from __future__ import annotations

import gc
import weakref

from tui.core.gc_pause import YOUNG_COLLECTION_EVERY, collector_tuned_for_a_run


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_run_tuning_is_undone_and_still_collects_cycles() -> None:
    before_threshold = gc.get_threshold()
    before_frozen = gc.get_freeze_count()
    collected: list[bool] = []
    with collector_tuned_for_a_run():
        assert gc.get_threshold()[0] == YOUNG_COLLECTION_EVERY
        assert gc.get_threshold()[1:] == before_threshold[1:]
        assert gc.get_freeze_count() > before_frozen
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        weakref.finalize(a, collected.append, True)
        del a, b
        kept = [[i] for i in range(YOUNG_COLLECTION_EVERY * 30)]  # no explicit collect
        assert collected == [True], "a garbage cycle outlived many young collections"
        del kept
    assert gc.get_threshold() == before_threshold
    assert gc.get_freeze_count() == before_frozen
