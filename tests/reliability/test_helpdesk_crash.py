"""kill -9 `triagedesk sync` mid-pull and mid-push: the rerun imports every ticket once and
writes every decision to the helpdesk once; the token never reaches the database or output."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.helpdesk_server import FakeHelpdesk, Fault, freshdesk, zendesk
from tui.core.learning.model import SpecialistModel
from tui.core.store import Store

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "zd-secret-token"
N = 24

pytestmark = pytest.mark.slow


def _setup(tmp_path: Path, server: FakeHelpdesk, kind: str = "zendesk") -> tuple[Path, Path]:
    model = tmp_path / "spec.joblib"
    texts = [f"refund my card charge {i}" for i in range(10)]
    texts += [f"where is my parcel {i}" for i in range(10)]
    SpecialistModel.train(texts, ["billing"] * 10 + ["shipping"] * 10).save(model)  # type: ignore[misc]
    config = tmp_path / "c.toml"
    config.write_text(
        f"""[labels]
billing = "money"
shipping = "parcels"
[routing]
backend = "specialist"
reference_backend = ""
[backends.specialist]
type = "specialist"
path = "{model}"
[helpdesk.zd]
type = "{kind}"
base_url = "{server.url}"
{'email = "bot@acme.test"' if kind == "zendesk" else ""}
token_env = "ZD_TOKEN"
writeback = "apply"
requests_per_minute = 100000
page_size = 5
max_retries = 1
start_time = 2020-01-01T00:00:00Z
"""
    )
    for i in range(1, N + 1):
        server.add(
            i, age_s=5000 - i, description=f"where is my parcel {i}" if i % 2 else f"refund {i}"
        )
    return config, tmp_path / "t.db"


def _cmd(config: Path, db: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tui",
        "--db",
        str(db),
        "--config",
        str(config),
        "sync",
        "zd",
        "--once",
    ]


def _env(tmp_path: Path, token: str = TOKEN) -> dict[str, str]:
    """The environment of a `triagedesk` process; the Freshdesk tests use the same variable."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {**os.environ, "PYTHONPATH": str(ROOT), "ZD_TOKEN": token, "TRIAGEDESK_HOME": str(home)}


def _kill_when_stalled(server: FakeHelpdesk, proc: subprocess.Popen[bytes]) -> None:
    assert server.stalled.wait(60), proc.communicate(timeout=5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    server.stall_on = None
    server.release.set()


def _final_run(config: Path, db: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        _cmd(config, db), env=_env(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done


def _assert_once(server: FakeHelpdesk, db: Path) -> None:
    with Store(db) as store:
        assert store.ticket_count() == N
        assert all(store.get_ticket(f"zd-{i}") is not None for i in range(1, N + 1))
        records = store.push_records("zd")
        assert {r.state for r in records} == {"done"} and len(records) == N
    for i in range(1, N + 1):
        assert len(server.notes[i]) == 1, f"ticket {i}: {len(server.notes[i])} notes"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM decisions").fetchone()[0] == N
    finally:
        conn.close()


def test_kill_9_mid_pull_then_rerun(tmp_path: Path) -> None:
    with zendesk() as server:
        config, db = _setup(tmp_path, server)
        server.stall_on = ("GET", "incremental", 3)  # pages 1 and 2 stored, page 3 held
        proc = subprocess.Popen(
            _cmd(config, db), env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        _kill_when_stalled(server, proc)
        with Store(db) as store:
            assert store.ticket_count() == 10
            cursor = store.pull_cursor("zd")
        before = len(server.requests)
        _final_run(config, db, tmp_path)
        resumed = [r for r in server.requests[before:] if "incremental" in r.path]
        assert resumed[0].query.get("cursor") == cursor, "resumes at the stored cursor"
        _assert_once(server, db)


def test_kill_9_mid_push_then_rerun(tmp_path: Path) -> None:
    with zendesk() as server:
        config, db = _setup(tmp_path, server)
        server.stall_on = ("PUT", "/api/v2/tickets/", 4)  # written, the answer held
        proc = subprocess.Popen(
            _cmd(config, db), env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        _kill_when_stalled(server, proc)
        with Store(db) as store:
            assert len(store.push_records("zd", state="done")) == 3
            assert len(store.push_records("zd", state="sending")) == 1
        done = _final_run(config, db, tmp_path)
        assert "found already written" in done.stdout
        _assert_once(server, db)
        assert "triagedesk_" in " ".join(server.tickets[1]["tags"])


def test_token_never_in_database_or_output(tmp_path: Path) -> None:
    with zendesk() as server:
        config, db = _setup(tmp_path, server)
        server.faults.append(Fault(1, 500, body=f'{{"echo": "Basic {TOKEN}"}}', path="incremental"))
        ok = _final_run(config, db, tmp_path)
        bad = subprocess.run(
            _cmd(config, db),
            env=_env(tmp_path, "other-secret-value"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert bad.returncode == 2 and "ZD_TOKEN" in bad.stderr
        assert bad.stderr.count("\n") == 1, bad.stderr
        for text in (ok.stdout, ok.stderr, bad.stdout, bad.stderr):
            assert TOKEN not in text and "other-secret-value" not in text
        for path in db.parent.glob("t.db*"):
            data = path.read_bytes()
            assert TOKEN.encode() not in data and b"other-secret-value" not in data


def test_kill_9_between_the_freshdesk_update_and_its_note(tmp_path: Path) -> None:
    with freshdesk(key=TOKEN) as server:
        config, db = _setup(tmp_path, server, "freshdesk")
        server.stall_on = ("PUT", "/api/v2/tickets/", 2)  # updated, the note not yet written
        proc = subprocess.Popen(
            _cmd(config, db), env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        _kill_when_stalled(server, proc)
        _final_run(config, db, tmp_path)
        _assert_once(server, db)
