"""A widget with no looks: it follows the store (and the watched folder) so that other
processes' imports, decisions and labels, and dropped files, show up within a second or two.
What changed is computed by `tui.core.store_changes`; this only schedules and posts.

On SQLite it polls every `interval`. On PostgreSQL it listens (`Store.wait_for_change`,
LISTEN/NOTIFY): a commit by any desk wakes it at once, and it looks anyway every
`LISTEN_FALLBACK_S`, so a missed notification costs seconds, not the update."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.widget import Widget
from textual.worker import get_current_worker

from screens.messages import StoreChanged, TicketsImported
from tui.core.store import Store
from tui.core.store_changes import StoreChanges

if TYPE_CHECKING:  # the importers load with --watch only, not with every start
    from tui.core.watch_folder import WatchFolder

LISTEN_FALLBACK_S = 5.0


class LiveFeed(Widget):
    """Polls every `interval` seconds in a thread worker and posts what changed."""

    DEFAULT_CSS = "LiveFeed { display: none; }"

    def __init__(
        self,
        store: Store,
        *,
        watch: Path | None = None,
        interval: float = 1.0,
        own_run_prefix: str = "",
    ) -> None:
        super().__init__()
        self.changes = StoreChanges(store, own_run_prefix=own_run_prefix)
        """Decisions of runs with `own_run_prefix` are this app's own: reported already."""
        self.watch_dir = watch
        self.watcher: WatchFolder | None = None
        """Imports the dropped files (tui.core.watch_folder): links, FIFOs and files still being
        written are never taken."""
        if watch is not None:
            from tui.core.watch_folder import WatchFolder

            self.watcher = WatchFolder(watch, store)
        self.interval = interval
        self.store = store

    def on_mount(self) -> None:
        if self.store.pushes_changes:
            self.listen_store()
        else:
            self.poll_store()
            self.set_interval(self.interval, self.poll_store)
        if self.watch_dir is not None:
            self.set_interval(1.0, self.poll_folder)

    @work(thread=True, exclusive=True, group="live", exit_on_error=False)
    def poll_store(self) -> None:
        """Compare the store's high-water marks with the last poll's."""
        change = self.changes.poll()
        if change is not None:
            self.post_message(
                StoreChanged(change.new_tickets, change.decisions, change.labels_changed)
            )

    @work(thread=True, exclusive=True, group="live", exit_on_error=False)
    def listen_store(self) -> None:
        """PostgreSQL: report a change as soon as another desk's commit is notified."""
        worker = get_current_worker()
        self.changes.poll()  # the first look only takes the marks
        while not worker.is_cancelled:
            self.store.wait_for_change(LISTEN_FALLBACK_S)
            if worker.is_cancelled:
                return
            change = self.changes.poll()
            if change is not None:
                self.post_message(
                    StoreChanged(change.new_tickets, change.decisions, change.labels_changed)
                )

    @work(thread=True, exclusive=True, group="watch", exit_on_error=False)
    def poll_folder(self) -> None:
        """Import the files dropped into the watched folder that have stopped changing."""
        if self.watcher is None:
            return
        for outcome in self.watcher.poll():
            self.post_message(TicketsImported(outcome.name, outcome.inserted, outcome.error))
