"""A widget with no looks: it polls the store (and the watched folder) so that other
processes' imports, decisions and labels, and dropped files, show up within a second or two."""

from __future__ import annotations

import shutil
from pathlib import Path

from textual import work
from textual.widget import Widget

from screens.messages import StoreChanged, TicketsImported
from tui.store import Store

IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".errors.txt")


def import_dropped_file(store: Store, path: Path, folder: Path) -> TicketsImported:
    """Import one dropped file all-or-nothing and move it to imported/ or rejected/."""
    from tui.ingest import IngestError, parse_file

    error: str | None = None
    lines: list[str] = []
    inserted = 0
    try:
        parsed = parse_file(path)
        if parsed.errors:
            lines = [f"{path.name}:{row.line}: {row.reason}" for row in parsed.errors]
            error = f"{len(parsed.errors)} bad rows; nothing imported"
        else:
            result = store.import_tickets(parsed.tickets, parsed.labels, source=str(path))
            inserted = result.inserted
    except IngestError as exc:
        error, lines = str(exc), [str(exc)]
    target = folder / ("rejected" if error else "imported")
    target.mkdir(exist_ok=True)
    moved = target / path.name
    if moved.exists():
        moved = target / f"{path.stem}-{int(path.stat().st_mtime_ns)}{path.suffix}"
    shutil.move(str(path), moved)
    if error:
        moved.with_name(moved.name + ".errors.txt").write_text("\n".join(lines) + "\n")
    return TicketsImported(path.name, inserted, error)


class LiveFeed(Widget):
    """Polls every `interval` seconds in a thread worker and posts what changed."""

    DEFAULT_CSS = "LiveFeed { display: none; }"

    def __init__(self, store: Store, *, watch: Path | None = None, interval: float = 1.0) -> None:
        super().__init__()
        self.store = store
        self.watch_dir = watch
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
        """Import files dropped into the watched folder, oldest first."""
        folder = self.watch_dir
        if folder is None or not folder.is_dir():
            return
        files = sorted(
            (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
        )
        for path in files:
            if path.name.endswith(IGNORED_SUFFIXES):
                continue
            try:
                message = import_dropped_file(self.store, path, folder)
            except Exception as exc:  # one bad file must not stop the watcher
                message = TicketsImported(path.name, 0, f"{type(exc).__name__}: {exc}")
            self.post_message(message)
