"""What changed in the store since the last look, whoever changed it (any process).

The inbox polls this every second so other processes' imports, decisions and labels show up
without a restart. It compares the store's high-water marks (newest ticket, newest decision,
label event count) with the previous poll's, and leaves out the decisions of the caller's own
runs, which it has shown already. Textual-free; the live feed widget only posts the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tui.core.models import Decision

if TYPE_CHECKING:
    from tui.core.store import Store

MAX_DECISIONS = 5000
"""Most new decisions one poll reads; a larger burst is caught up by the inbox reload."""


@dataclass(frozen=True, slots=True)
class StoreChange:
    """What one poll found."""

    new_tickets: int
    decisions: tuple[Decision, ...]
    """New decisions of other runs (not those whose run id has the caller's prefix)."""
    labels_changed: bool


class StoreChanges:
    """Polls one store; the first poll only takes the marks, later ones report changes."""

    def __init__(self, store: Store, *, own_run_prefix: str = "") -> None:
        self.store = store
        self.own_run_prefix = own_run_prefix
        """Decisions of runs with this prefix are the caller's own: it reported them already."""
        self._seen: tuple[int, int, int] | None = None
        """(max ticket seq, newest decision id, label event count) at the last poll."""

    def poll(self) -> StoreChange | None:
        """The change since the last poll, or None when nothing changed that the caller has
        not shown (or on the first poll): the caller's own decisions alone are no change, so
        a routing TUI does not reload its inbox every second for what it has drawn already."""
        store = self.store
        seq = store.max_seq()
        labels = store.label_event_count()
        if self._seen is None:
            self._seen = (seq, store.max_decision_id(), labels)
            return None
        old_seq, last_decision, old_labels = self._seen
        decisions = store.recent_decisions(after_id=last_decision, limit=MAX_DECISIONS)
        newest = decisions[-1].id if decisions else last_decision
        self._seen = (seq, newest or last_decision, labels)
        prefix = self.own_run_prefix
        foreign = tuple(d for d in decisions if not (prefix and d.run_id.startswith(prefix)))
        if seq == old_seq and not foreign and labels == old_labels:
            return None
        return StoreChange(seq - old_seq, foreign, labels != old_labels)


__all__ = ["MAX_DECISIONS", "StoreChange", "StoreChanges"]
