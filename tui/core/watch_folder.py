"""The watch folder (`triagedesk --watch DIR`): a drop box that other people and systems write to.

A file is taken only when it is a regular file, not a link, and has stopped changing: its size
and mtime must be the same at two scans `settle_s` apart, and the bytes imported are the bytes
of that unchanged file (checked again after reading). Writers that cannot promise to finish
within that interval write under a name that is never taken (a leading `.`, or `.tmp`,
`.part`, `.partial`, `.crdownload`) and rename the file when it is complete. Each file is
imported all-or-nothing, then moved to `imported/` or, with a private `.errors.txt` report,
to `rejected/`; a file whose import failed for another reason (a locked or full database)
stays where it is and is tried again.

Nothing here follows a symbolic link: the file is read through an O_NOFOLLOW descriptor that
fstat confirms is a regular file, `imported/` and `rejected/` must be real folders (0700), a
file is moved only to a name where nothing exists, and reports are written under a fresh
temporary name and renamed into place. Reports and messages quote only short excerpts of a
file's content, with control characters escaped, so neither can echo a secret or forge lines.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tui.core.ingest import IngestError, detect_format, parse_bytes
from tui.core.safe_files import (
    NotRegularFile,
    kind_of,
    open_private_subdir,
    open_regular_nofollow,
    read_fd,
    write_private,
)
from tui.core.safe_text import printable
from tui.core.store import ImportRejected, Store

SETTLE_S = 1.0
"""How long a dropped file's size and mtime must stay unchanged before it is imported."""
IGNORED_PREFIXES = (".",)
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".errors.txt")
"""Names never taken: files still being written under a temporary name, and our reports."""
IMPORTED = "imported"
REJECTED = "rejected"
REPORT_SUFFIX = ".errors.txt"
REPORT_LINES = 200
"""Bad rows listed in a report; the rest are counted."""
NAME_CHARS = 120
"""Longest file name shown in a message (escaped)."""

_Signature = tuple[int, int, int, int]
"""(st_dev, st_ino, st_size, st_mtime_ns): a file is stable while this stays the same."""


class DropOutcome(BaseModel):
    """What became of one entry of the watch folder, for a notification."""

    model_config = ConfigDict(frozen=True)

    name: str
    """The file's name with control characters escaped (still user text: render it plain)."""
    inserted: int = 0
    error: str | None = None
    """One short line when the file was refused, skipped or could not be moved."""
    moved_to: str | None = None
    """`imported/NAME` or `rejected/NAME`, once moved."""


@dataclass(frozen=True, slots=True)
class _Seen:
    signature: _Signature
    since: float
    """Clock reading when this signature was first observed."""


def _signature(found: os.stat_result) -> _Signature:
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


def _ignored(name: str) -> bool:
    return name.startswith(IGNORED_PREFIXES) or name.endswith(IGNORED_SUFFIXES)


def _format_of(name: str, data: bytes) -> str:
    """The import format from the name's extension, or mbox for a `From ` line; never reads
    the path itself (that would follow a link swapped in after the descriptor was opened)."""
    suffix = os.path.splitext(name)[1]
    if suffix:
        with contextlib.suppress(IngestError):
            return detect_format(Path(name), suffix)
    if data.startswith(b"From "):
        return "mbox"
    shown = suffix or "no extension"
    raise IngestError(
        f"{name}: cannot tell the format from {shown!r}; use .jsonl, .csv, .eml or .mbox"
    )


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _candidates(name: str, mtime_ns: int) -> list[str]:
    stem, suffix = os.path.splitext(name)
    return [name, *(f"{stem}-{mtime_ns}{'-' + str(i) if i else ''}{suffix}" for i in range(100))]


def report_text(lines: list[str]) -> str:
    """The `.errors.txt` report: one escaped, length-capped line per bad row."""
    shown = [printable(line) for line in lines[:REPORT_LINES]]
    if len(lines) > REPORT_LINES:
        shown.append(f"(and {len(lines) - REPORT_LINES} more bad rows)")
    return "\n".join(shown) + "\n"


class WatchFolder:
    """Imports files dropped into one folder; `poll` is called from a thread, repeatedly."""

    def __init__(
        self,
        folder: Path,
        store: Store,
        *,
        settle_s: float = SETTLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = folder
        self.store = store
        self.settle_s = settle_s
        self._clock = clock
        self._seen: dict[str, _Seen] = {}
        self._handled: dict[str, _Signature] = {}
        """Files left in place after being dealt with (e.g. imported/ is a link): not retaken
        until they change."""
        self._reported: set[tuple[str, int, int]] = set()
        """Skipped entries (name, dev, ino) already reported, so each is reported once."""
        self._retrying: dict[str, _Signature] = {}
        """Files whose import failed in the store; reported once, retried after a settle."""
        self._lock = threading.Lock()

    def poll(self) -> list[DropOutcome]:
        """Scan once; import every file that has been stable for `settle_s`, oldest first.

        A poll that overlaps a running one returns at once: two imports of one file at the
        same time would race to move it.
        """
        if not self._lock.acquire(blocking=False):
            return []
        try:
            try:
                folder_fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except OSError:
                return []
            try:
                return self._poll(folder_fd)
            finally:
                os.close(folder_fd)
        finally:
            self._lock.release()

    def _poll(self, folder_fd: int) -> list[DropOutcome]:
        now = self._clock()
        outcomes: list[DropOutcome] = []
        ready: list[tuple[int, str, _Signature]] = []
        present: set[str] = set()
        with os.scandir(folder_fd) as entries:
            for entry in entries:
                name = entry.name
                if _ignored(name):
                    continue
                try:
                    found = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                present.add(name)
                if stat.S_ISDIR(found.st_mode):
                    continue
                if not stat.S_ISREG(found.st_mode) or found.st_nlink > 1:
                    skipped = self._skip(name, found)
                    if skipped is not None:
                        outcomes.append(skipped)
                    continue
                signature = _signature(found)
                if self._handled.get(name) == signature:
                    continue
                seen = self._seen.get(name)
                if seen is None or seen.signature != signature:
                    self._seen[name] = _Seen(signature, now)
                elif now - seen.since >= self.settle_s:
                    ready.append((found.st_mtime_ns, name, signature))
        for table in (self._seen, self._handled, self._retrying):
            for gone in set(table) - present:
                del table[gone]
        self._reported = {key for key in self._reported if key[0] in present}
        for _, name, signature in sorted(ready):
            try:
                outcome = self._take(folder_fd, name, signature)
            except Exception as exc:  # one unexpected failure must not stop the other files
                self._handled[name] = signature
                reason = printable(f"{type(exc).__name__}: {exc}", 200)
                outcome = DropOutcome(name=printable(name, NAME_CHARS), error=reason)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def _skip(self, name: str, found: os.stat_result) -> DropOutcome | None:
        """Report a link, FIFO, device or hard-linked file once; it is never opened."""
        key = (name, found.st_dev, found.st_ino)
        if key in self._reported:
            return None
        self._reported.add(key)
        what = (
            "a file with other hard links"
            if stat.S_ISREG(found.st_mode)
            else kind_of(found.st_mode)
        )
        return DropOutcome(
            name=printable(name, NAME_CHARS),
            error=f"left alone: it is {what}, and only regular files are imported",
        )

    def _take(self, folder_fd: int, name: str, signature: _Signature) -> DropOutcome | None:
        """Read, import and move one stable file; None when it turned out to be changing."""
        shown = printable(name, NAME_CHARS)
        try:
            fd, found = open_regular_nofollow(name, dir_fd=folder_fd)
        except (NotRegularFile, FileNotFoundError):
            self._seen.pop(name, None)  # replaced or gone since the scan: the next scan decides
            return None
        except OSError as exc:
            self._handled[name] = signature
            return DropOutcome(name=shown, error=f"cannot read it: {exc.strerror or exc}")
        try:
            data = read_fd(fd) if _signature(found) == signature else None
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if data is None or _signature(after) != signature or len(data) != after.st_size:
            self._seen.pop(name, None)  # still being written: wait for it to settle again
            return None
        rows: list[str] = []
        inserted = 0
        try:
            parsed = parse_bytes(data, _format_of(name, data), name=name)
        except IngestError as exc:  # its text already starts with the file's name
            rows = [str(exc)]
            summary = str(exc).removeprefix(f"{printable(name, len(name) * 10)}: ")
        else:
            bad = list(parsed.errors)
            if not bad:
                try:
                    result = self.store.import_tickets(
                        parsed.tickets,
                        parsed.labels,
                        source=str(self.folder / name),
                        lines=parsed.lines,
                    )
                except ImportRejected as exc:  # ids imported before with other content
                    bad = list(exc.errors)
                except Exception as exc:  # a locked or full database: keep the file, retry
                    return self._retry_later(name, signature, shown, exc)
                else:
                    inserted = result.inserted
            rows = [f"{name}:{row.line}: {row.reason}" for row in bad]
            summary = f"{len(bad)} bad rows; nothing imported"
        self._retrying.pop(name, None)
        return self._move(folder_fd, name, signature, shown, inserted, rows, summary)

    def _retry_later(
        self, name: str, signature: _Signature, shown: str, exc: Exception
    ) -> DropOutcome | None:
        self._seen[name] = _Seen(signature, self._clock())
        if self._retrying.get(name) == signature:
            return None
        self._retrying[name] = signature
        reason = printable(f"{type(exc).__name__}: {exc}", 200)
        return DropOutcome(name=shown, error=f"not imported yet, left in place: {reason}")

    def _move(
        self,
        folder_fd: int,
        name: str,
        signature: _Signature,
        shown: str,
        inserted: int,
        rows: list[str],
        summary: str,
    ) -> DropOutcome:
        """Move the file to imported/ or rejected/ (with its report), never onto anything."""
        target = REJECTED if rows else IMPORTED
        done = summary if rows else f"imported {inserted} tickets"

        def unmoved(why: str) -> DropOutcome:
            """The file stays where it is, once: it is not taken again until it changes."""
            self._handled[name] = signature
            return DropOutcome(name=shown, inserted=inserted, error=f"{done}, but {why}")

        try:
            sub_fd = open_private_subdir(folder_fd, target)
        except OSError as exc:
            why = exc.kind if isinstance(exc, NotRegularFile) else (exc.strerror or str(exc))
            return unmoved(f"the file stays here: {target}/ is unusable ({why})")
        try:
            report = report_text(rows) if rows else None
            placed = self._rename_into(folder_fd, name, signature, sub_fd, report=report)
            if placed is None:
                return unmoved(f"the file stays here: no free name in {target}/")
            moved, report_error = placed
            if not rows:
                return DropOutcome(
                    name=shown, inserted=inserted, moved_to=f"{target}/{printable(moved)}"
                )
            if report_error:
                summary += f" (report not written: {report_error})"
            else:
                summary += f"; see {target}/{printable(moved + REPORT_SUFFIX, NAME_CHARS)}"
            return DropOutcome(name=shown, error=summary, moved_to=f"{target}/{printable(moved)}")
        except OSError as exc:
            return unmoved(f"the file could not be moved: {exc.strerror or exc}")
        finally:
            os.close(sub_fd)

    @staticmethod
    def _rename_into(
        folder_fd: int, name: str, signature: _Signature, sub_fd: int, *, report: str | None
    ) -> tuple[str, str] | None:
        """Rename the file to the first name free in the subfolder (and free for its report),
        writing the report first, so a file seen in `rejected/` always has its report beside
        it. Returns the new name and why the report could not be written ("" if it was).

        rename(2) never follows a link; checking first means nothing planted is replaced.
        """
        for candidate in _candidates(name, signature[3]):
            report_name = candidate + REPORT_SUFFIX
            if _exists(candidate, sub_fd) or (report is not None and _exists(report_name, sub_fd)):
                continue
            current = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            if not stat.S_ISREG(current.st_mode) or _signature(current)[:2] != signature[:2]:
                raise FileNotFoundError(2, "replaced while it was imported", name)
            report_error = ""
            if report is not None:
                try:
                    write_private(report_name, report, dir_fd=sub_fd)
                except OSError as exc:
                    report_error = str(exc.strerror or exc)
            try:
                os.rename(name, candidate, src_dir_fd=folder_fd, dst_dir_fd=sub_fd)
            except OSError:
                if report is not None and not report_error:
                    with contextlib.suppress(OSError):
                        os.unlink(report_name, dir_fd=sub_fd)
                raise
            return candidate, report_error
        return None
