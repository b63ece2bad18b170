"""A widget with no looks: it polls the store (and the watched folder) so that other
processes' imports, decisions and labels, and dropped files, show up within a second or two."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.widget import Widget

from screens.messages import StoreChanged, TicketsImported
from tui.core.store import Store
from tui.core.watch_folder import WatchFolder


class LiveFeed(Widget):
    """Polls every `interval` seconds in a thread worker and posts what changed."""

    DEFAULT_CSS = "LiveFeed { display: none; }"

    def __init__(self, store: Store, *, watch: Path | None = None, interval: float = 1.0) -> None:
        super().__init__()
        self.store = store
        self.watch_dir = watch
        self.watcher = WatchFolder(watch, store) if watch is not None else None
        """Imports the dropped files (tui.core.watch_folder): links, FIFOs and files still being
        written are never taken."""
        self.interval = interval
        self._seen: tuple[int, int, int] | None = None
        """(max ticket seq, newest decision id, label event count) at the last poll."""
        self.own_run_prefix = ""
        """Decisions of runs with this prefix are this app's own: they are reported already."""

    def on_mount(self) -> None:
        self.poll_store()
        self.set_interval(self.interval, self.poll_store)
        if self.watch_dir is not None:
            self.set_interval(1.0, self.poll_folder)

    @work(thread=True, exclusive=True, group="live", exit_on_error=False)
    def poll_store(self) -> None:
        """Compare the store's high-water marks with the last poll's."""
        seq = self.store.max_seq()
        labels = self.store.label_event_count()
        if self._seen is None:
            self._seen = (seq, self.store.max_decision_id(), labels)
            return
        old_seq, last_decision, old_labels = self._seen
        decisions = self.store.recent_decisions(after_id=last_decision, limit=5000)
        newest = decisions[-1].id if decisions else last_decision
        self._seen = (seq, newest or last_decision, labels)
        if seq == old_seq and not decisions and labels == old_labels:
            return
        prefix = self.own_run_prefix
        foreign = tuple(d for d in decisions if not (prefix and d.run_id.startswith(prefix)))
        self.post_message(
            StoreChanged(
                new_tickets=seq - old_seq,
                decisions=foreign,
                labels_changed=labels != old_labels,
            )
        )

    @work(thread=True, exclusive=True, group="watch", exit_on_error=False)
    def poll_folder(self) -> None:
        """Import the files dropped into the watched folder that have stopped changing."""
        if self.watcher is None:
            return
        for outcome in self.watcher.poll():
            self.post_message(TicketsImported(outcome.name, outcome.inserted, outcome.error))
