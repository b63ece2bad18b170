"""Team mode on PostgreSQL: `--db URL`, password hygiene, `db upgrade`, `db copy --to URL`.

Against a real throwaway PostgreSQL cluster (tests/conftest.py `pg_url`), through the real
command line in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_cli import LABELLED, run
from tui.core.database_url import PgTarget, database_target
from tui.core.models import Decision, Ticket
from tui.core.store import SCHEMA_VERSION, Store, StoreError


def _labelled(tmp_path: Path) -> Path:
    path = tmp_path / "labelled.jsonl"
    rows = [{"id": f"L{i}", "text": t, "label": lab} for i, (t, lab) in enumerate(LABELLED * 2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_password_in_the_url_is_refused_and_never_shown(isolated_home: Path, pg_url: str) -> None:
    secret = "hunter2-secret"
    with_password = pg_url.replace("postgres@", f"postgres:{secret}@")
    with pytest.raises(StoreError) as caught:
        PgTarget(with_password)
    assert secret not in str(caught.value) and "PGPASSWORD" in str(caught.value)
    with pytest.raises(StoreError, match="password"):
        PgTarget(pg_url + "?password=" + secret)
    r = run(isolated_home, "--db", with_password, "stats")
    assert r.returncode == 2 and secret not in r.stderr + r.stdout and "***" in r.stderr
    assert database_target(Path("x.db")) == Path("x.db")


def test_import_label_and_stats_on_postgresql(
    isolated_home: Path, tmp_path: Path, pg_url: str
) -> None:
    r = run(isolated_home, "--db", pg_url, "import", str(_labelled(tmp_path)))
    assert r.returncode == 0, r.stderr
    assert "imported 24 tickets" in r.stdout
    r = run(isolated_home, "--db", pg_url, "label", "L0", "billing", "--agent", "ana")
    assert r.returncode == 0, r.stderr
    with Store(pg_url) as store:
        assert store.ticket_count() == 24
        assert store.label_history("L0")[-1].agent == "ana"


def test_db_upgrade_reports_the_version(isolated_home: Path, tmp_path: Path, pg_url: str) -> None:
    r = run(isolated_home, "--db", pg_url, "db", "upgrade")
    assert r.returncode == 0, r.stderr
    assert f"upgraded from version 0 to {SCHEMA_VERSION}" in r.stdout
    r = run(isolated_home, "--db", pg_url, "db", "upgrade")
    assert f"at version {SCHEMA_VERSION}, nothing to do" in r.stdout


def test_db_copy_moves_everything_resumably_and_checks_counts(
    isolated_home: Path, tmp_path: Path, pg_url: str
) -> None:
    src = tmp_path / "desk.db"
    with Store(src) as store:
        store.import_tickets(
            [Ticket(id=f"T{i}", text=f"text {i}") for i in range(30)], {"T1": "billing"}
        )
        run_info = store.open_run("b", "all")
        store.record_decisions(
            [
                Decision(
                    ticket_id=f"T{i}",
                    run_id=run_info.id,
                    backend="b",
                    backend_type="x",
                    label="billing" if i % 2 else "returns",
                    confidence=0.5,
                    cost_usd=0.01,
                    total_ms=10.0 + i,
                )
                for i in range(20)
            ]
        )
        store.add_label("T2", "returns", agent="ana", source="correct")
        expected_stats = [s.model_dump() for s in store.backend_stats()]
        expected_page = store.inbox_page("all", limit=50)
    r = run(isolated_home, "--db", str(src), "db", "copy", "--to", pg_url)
    assert r.returncode == 0, r.stderr
    assert "copied 30 tickets, 20 decisions, 2 label events, 1 runs" in r.stdout
    r = run(isolated_home, "--db", str(src), "db", "copy", "--to", pg_url)  # a rerun resumes
    assert r.returncode == 0 and "counts checked" in r.stdout
    with Store(pg_url) as copied:
        assert [s.model_dump() for s in copied.backend_stats()] == expected_stats
        assert copied.inbox_page("all", limit=50) == expected_page
        event = copied.add_label("T3", "billing", agent="bo")  # identities continue
        assert event.id == 3
    other = tmp_path / "other.db"
    with Store(other) as store:
        store.import_tickets([Ticket(id="X", text="x")])
    r = run(isolated_home, "--db", str(other), "db", "copy", "--to", pg_url)
    assert r.returncode == 2 and "is a copy of" in r.stderr


def test_a_commit_by_another_desk_is_heard_at_once(pg_url: str) -> None:
    """LISTEN/NOTIFY: a write that changed rows wakes every listening store; nothing else
    does, and SQLite (no signal) says "look" after each wait."""
    import threading
    import time

    with Store(pg_url) as mine, Store(pg_url) as theirs:
        mine.import_tickets([Ticket(id="A", text="a")])
        assert mine.pushes_changes
        assert not mine.wait_for_change(0.2)  # LISTEN starts here; nothing since
        heard: list[float] = []

        def listen() -> None:
            start = time.monotonic()
            if mine.wait_for_change(10):
                heard.append(time.monotonic() - start)

        waiter = threading.Thread(target=listen)
        waiter.start()
        time.sleep(0.3)
        theirs.add_label("A", "billing", agent="bo")
        waiter.join(15)
        assert heard and heard[0] < 5
        theirs.release_agent_claims("nobody")  # changed no row: no notification
        assert not mine.wait_for_change(0.3)
