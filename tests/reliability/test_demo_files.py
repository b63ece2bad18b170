"""`demo` works on its own files only: a real database or config given to it is refused
(exit 2) and left exactly as it was; `--fresh` deletes nothing but a demo database."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tui.core.models import Ticket
from tui.core.store import Store

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRIAGEDESK_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("TRIAGEDESK_DB", None)
    env.pop("TRIAGEDESK_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "tui", *args], env=env, capture_output=True, text=True, timeout=300
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def real_inbox(path: Path) -> Path:
    """A user's database: 3 real tickets, one of them labelled, checkpointed into one file."""
    with Store(path) as store:
        store.import_tickets(
            [Ticket(id=f"CUST-{i}", text=f"real customer text {i}") for i in range(3)],
            {"CUST-0": "billing"},
            source="crm.csv",
        )
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def tickets_in(path: Path) -> list[tuple[str, str | None]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, source FROM tickets ORDER BY seq").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("fresh", [True, False])
def test_a_real_database_is_refused_and_untouched(
    isolated_home: Path, tmp_path: Path, fresh: bool
) -> None:
    db = real_inbox(tmp_path / "real.db")
    before = digest(db)
    flags = ["--fresh"] if fresh else []
    r = cli(isolated_home, "--db", str(db), "demo", *flags, "--no-tui", "--size", "100")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"--db {db}: not a demo database (it holds 3 tickets the demo did not make)" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert digest(db) == before  # not deleted, not a demo ticket mixed in, not even migrated
    assert [tid for tid, _ in tickets_in(db)] == ["CUST-0", "CUST-1", "CUST-2"]


def test_other_files_and_empty_databases_are_refused(isolated_home: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, not a database\n" * 50)
    r = cli(isolated_home, "--db", str(notes), "demo", "--fresh", "--no-tui", "--size", "100")
    assert r.returncode == 2 and "not a triagedesk database" in r.stderr, r.stderr
    assert notes.read_text() == "my notes, not a database\n" * 50

    empty = tmp_path / "mine.db"
    Store(empty).close()  # the user's own new database, nothing in it yet
    r = cli(isolated_home, "--db", str(empty), "demo", "--fresh", "--no-tui", "--size", "100")
    assert r.returncode == 2 and "an empty database the demo did not make" in r.stderr
    assert empty.exists() and tickets_in(empty) == []

    config = tmp_path / "config.toml"
    config.write_text('[routing]\nbackend = "specialist"\n# my settings\n')
    r = cli(isolated_home, "--config", str(config), "demo", "--fresh", "--no-tui", "--size", "100")
    assert r.returncode == 2 and f"--config {config}: not a config the demo wrote" in r.stderr
    assert config.read_text() == '[routing]\nbackend = "specialist"\n# my settings\n'
    assert not (isolated_home / "data" / "demo.db").exists()


def test_a_demo_database_elsewhere_is_built_marked_and_rebuilt(
    isolated_home: Path, tmp_path: Path
) -> None:
    db = tmp_path / "elsewhere" / "demo-copy.db"
    db.parent.mkdir()
    r = cli(isolated_home, "--db", str(db), "demo", "--no-tui", "--size", "100")
    assert r.returncode == 0, r.stderr
    with Store(db) as store:
        assert store.get_meta("demo") is not None and store.ticket_count() == 100
    again = cli(isolated_home, "--db", str(db), "demo", "--fresh", "--no-tui", "--size", "120")
    assert again.returncode == 0, again.stderr
    assert "generating 120 demo tickets" in again.stderr
    assert len(tickets_in(db)) == 120  # rebuilt, not 220

    with Store(db) as store:  # someone tries their own file in the demo inbox
        store.import_tickets([Ticket(id="MINE-1", text="a real ticket")], source="mine.csv")
    kept = cli(isolated_home, "--db", str(db), "demo", "--fresh", "--no-tui", "--size", "100")
    assert kept.returncode == 2 and "it holds 1 ticket the demo did not make" in kept.stderr
    assert ("MINE-1", "mine.csv") in tickets_in(db) and len(tickets_in(db)) == 121


def test_an_unmarked_demo_database_from_before_the_mark_is_still_the_demos(
    isolated_home: Path,
) -> None:
    db = isolated_home / "data" / "demo.db"
    db.parent.mkdir(parents=True)
    with Store(db) as store:  # as an older version built it: demo tickets, no mark
        store.import_tickets(
            [Ticket(id=f"DEMO-{i:06d}", text=f"t {i}") for i in range(5)], source="demo"
        )
    r = cli(isolated_home, "demo", "--fresh", "--no-tui", "--size", "100")
    assert r.returncode == 0, r.stderr
    assert len(tickets_in(db)) == 100
    with Store(db) as store:
        assert store.get_meta("demo") is not None
