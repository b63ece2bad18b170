"""The database file on disk (issue 12, items 4, 17 and 19): private, created only where asked,
and clear about disks that refuse writes.

- The database, its -wal and -shm files are 0600 and the folders made for it 0700, whatever
  the umask; an existing database that other users could read is tightened on open.
- Only commands that write create a database, and only in a folder that exists, except our
  own default data dir: `--db typo/sub/x.db stats` creates nothing and exits 2. A path named
  by `TRIAGEDESK_CONFIG` or `TRIAGEDESK_DB` that leads nowhere fails as the flags do.
- A read-only or full disk says "read-only" / "disk full" and names the path, exit 2, and
  nothing stored before is lost. Read-only and full disks are real: a tmpfs remounted
  read-only or filled up (root can mount one; without root the read-only case uses file
  modes, which bind a non-root user), and SQLite's own page limit for a full database in
  process, which is SQLITE_FULL exactly as a full disk gives it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui.core.models import Ticket
from tui.core.store import Store, StoreError

ROOT = Path(__file__).resolve().parents[2]
SEED = 3


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def companions(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


def tickets(prefix: str, n: int, words: int = 3) -> list[Ticket]:
    return [Ticket(id=f"{prefix}{i}", text=f"{'word ' * words}{prefix} {i}") for i in range(n)]


def seeded(db: Path) -> Path:
    with Store(db) as store:
        store.import_tickets(tickets("seed-", SEED))
    return db


def count(db: Path) -> int:
    with Store(db) as store:
        assert store.integrity_ok()
        return store.ticket_count()


def cli(
    home: Path,
    *argv: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    umask: int | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "TRIAGEDESK_HOME": str(home), "PYTHONPATH": str(ROOT)}
    for var in ("TRIAGEDESK_DB", "TRIAGEDESK_CONFIG"):
        full.pop(var, None)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tui", *argv],
        capture_output=True,
        text=True,
        env=full,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),  # noqa: PLW1509
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# Permissions ---------------------------------------------------------------------------------


def test_database_wal_and_shm_are_private(tmp_path: Path, umask: int) -> None:
    db = tmp_path / "t.db"
    with Store(db) as store:
        store.import_tickets(tickets("T", 5))
        # -wal and -shm exist while a connection is open; SQLite deletes them at the end
        assert {p.name: mode(p) for p in companions(db)} == {p.name: 0o600 for p in companions(db)}


def test_the_data_dir_and_database_made_by_a_command_are_private(
    tmp_path: Path, umask: int
) -> None:
    home = tmp_path / "fresh-home"  # nothing exists yet: our default folders may be created
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "a", "text": "where is my parcel"}) + "\n")
    done = cli(home, "import", str(source), umask=umask)
    assert done.returncode == 0, done.stderr
    assert mode(home) == 0o700 and mode(home / "data") == 0o700
    assert mode(home / "data" / "triagedesk.db") == 0o600


def test_an_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    db = seeded(tmp_path / "t.db")
    os.chmod(db, 0o644)  # as an older version left it under umask 022
    with Store(db) as store:
        store.import_tickets(tickets("more-", 2))
        assert [mode(p) for p in companions(db)] == [0o640, 0o640, 0o640]


# Where a database may be created ------------------------------------------------------------


def test_a_read_only_command_on_a_typo_path_creates_nothing(
    tmp_path: Path, isolated_home: Path
) -> None:
    line = one_error_line(cli(isolated_home, "--db", "typo/sub/x.db", "stats", cwd=tmp_path))
    assert (
        line
        == "triagedesk: error: no database at typo/sub/x.db (`triagedesk import FILE` creates one)"
    )
    assert not (tmp_path / "typo").exists()


def test_a_writing_command_needs_the_folder_the_user_named(
    tmp_path: Path, isolated_home: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "a", "text": "refund please"}) + "\n")
    line = one_error_line(
        cli(isolated_home, "--db", "typo/sub/x.db", "import", str(source), cwd=tmp_path)
    )
    assert "typo/sub/x.db: folder typo/sub does not exist" in line
    assert not (tmp_path / "typo").exists()
    # an existing folder is enough: the database itself is created there
    assert cli(isolated_home, "--db", "x.db", "import", str(source), cwd=tmp_path).returncode == 0
    assert count(tmp_path / "x.db") == 1


@pytest.mark.parametrize("command", ["stats", "export", "label", "route", "train"])
def test_commands_that_read_refuse_a_missing_default_database(
    isolated_home: Path, tmp_path: Path, command: str
) -> None:
    argv = {
        "export": ["export", "--format", "csv", "--out", str(tmp_path / "out")],
        "label": ["label", "T-1", "billing"],
    }.get(command, [command])
    line = one_error_line(cli(isolated_home, *argv))
    assert f"no database at {isolated_home / 'data' / 'triagedesk.db'}" in line
    assert not (isolated_home / "data").exists()
    assert not (tmp_path / "out").exists()


def test_the_tui_on_a_missing_folder_exits_2(tmp_path: Path, isolated_home: Path) -> None:
    done = cli(isolated_home, "--db", str(tmp_path / "typo" / "x.db"), timeout=120)
    assert f"{tmp_path / 'typo'} does not exist" in one_error_line(done)
    assert not (tmp_path / "typo").exists()


def test_triagedesk_db_pointing_into_a_missing_folder_fails(
    tmp_path: Path, isolated_home: Path
) -> None:
    target = tmp_path / "gone" / "x.db"
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "a", "text": "refund please"}) + "\n")
    line = one_error_line(
        cli(isolated_home, "import", str(source), env={"TRIAGEDESK_DB": str(target)})
    )
    assert str(target) in line and "does not exist" in line and "TRIAGEDESK_DB" in line
    line = one_error_line(cli(isolated_home, "stats", env={"TRIAGEDESK_DB": str(target)}))
    assert f"no database at {target}" in line and "TRIAGEDESK_DB" in line
    assert not (tmp_path / "gone").exists()
    assert not (isolated_home / "data").exists()  # not replaced by the default either


def test_triagedesk_config_pointing_at_nothing_fails_like_the_flag(
    tmp_path: Path, isolated_home: Path
) -> None:
    missing = tmp_path / "nope.toml"
    by_variable = one_error_line(
        cli(isolated_home, "backends", env={"TRIAGEDESK_CONFIG": str(missing)})
    )
    assert (
        by_variable
        == f"triagedesk: error: {missing}: config file not found (from TRIAGEDESK_CONFIG)"
    )
    by_flag = one_error_line(cli(isolated_home, "--config", str(missing), "backends"))
    assert by_flag == f"triagedesk: error: {missing}: config file not found"


# Read-only and full disks -------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB file system of our own, so it can be filled or made read-only."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    point = tmp_path / "mnt"
    point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture
def read_only_db(tmp_path: Path) -> Iterator[Path]:
    """A seeded database on a disk that refuses writes, for real: a tmpfs remounted
    read-only when root can mount one; otherwise file modes, which bind a non-root user."""
    if os.geteuid() == 0:
        if shutil.which("mount") is None:
            pytest.skip("root without mount(8): file modes do not bind root")
        point = tmp_path / "ro"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"root cannot mount a tmpfs here: {done.stderr.strip()}")
        try:
            db = seeded(point / "t.db")
            subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
            yield db
        finally:
            subprocess.run(["umount", "-l", str(point)], capture_output=True)
        return
    folder = tmp_path / "ro"
    folder.mkdir()
    db = seeded(folder / "t.db")
    db.chmod(0o400)
    folder.chmod(0o500)
    try:
        yield db
    finally:
        folder.chmod(0o700)
        db.chmod(0o600)


@pytest.mark.parametrize("command", ["stats", "import"])
def test_a_read_only_database_says_read_only(
    read_only_db: Path, tmp_path: Path, isolated_home: Path, command: str
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "new", "text": "refund please"}) + "\n")
    argv = ["import", str(source)] if command == "import" else ["stats"]
    line = one_error_line(cli(isolated_home, "--db", str(read_only_db), *argv))
    assert f"{read_only_db}: database is read-only" in line, line
    assert "not a triagedesk database" not in line


def test_a_new_database_on_a_read_only_disk_says_read_only(
    read_only_db: Path, tmp_path: Path, isolated_home: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "new", "text": "refund please"}) + "\n")
    new = read_only_db.with_name("new.db")
    line = one_error_line(cli(isolated_home, "--db", str(new), "import", str(source)))
    assert f"{new}: database is read-only" in line, line
    assert not new.exists()


def fill(folder: Path, leave: int) -> Path:
    """Fill the file system of `folder` up, then free about `leave` bytes again."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = b"\0" * 65536
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_during_an_import_says_disk_full_and_keeps_what_was_stored(
    tmpfs: Path, tmp_path: Path, isolated_home: Path
) -> None:
    db = seeded(tmpfs / "t.db")
    big = tmp_path / "big.jsonl"
    with big.open("w") as handle:
        for i in range(2000):
            handle.write(json.dumps({"id": f"B{i}", "text": f"{'word ' * 200}{i}"}) + "\n")
    filler = fill(tmpfs, leave=256 * 1024)  # room to open the database, not for 2 MB more
    line = one_error_line(cli(isolated_home, "--db", str(db), "import", str(big)))
    assert f"{db}: disk full" in line, line
    assert "everything stored before is intact" in line
    filler.unlink()
    assert count(db) == SEED


def test_a_full_database_fails_cleanly_and_stays_usable(tmp_path: Path) -> None:
    """SQLite's page limit gives the same SQLITE_FULL as a full disk, on any machine."""
    db = seeded(tmp_path / "t.db")
    with Store(db) as store:
        pages = int(store.conn.execute("PRAGMA page_count").fetchone()[0])
        store.conn.execute(f"PRAGMA max_page_count = {pages + 3}")
        with pytest.raises(StoreError) as caught:
            store.import_tickets(tickets("big-", 400, words=300))
        assert str(caught.value).startswith(f"{db}: disk full"), caught.value
        assert store.ticket_count() == SEED and store.integrity_ok()
        store.import_tickets(tickets("small-", 1))  # a write that fits still works
        assert store.ticket_count() == SEED + 1
