"""Agent leases (team mode), on both engines: the conformance suite (tests/conftest.py
`db_target`). Two agents never get one ticket, a label or release gives it back, an expired
lease or a dead desk's is taken over, and a lease never keeps a ticket from being routed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_claims import dead_owner
from tui.core.claims import AgentLeases, agent_name
from tui.core.config import ConfigError, Settings
from tui.core.database_url import PgTarget
from tui.core.models import Ticket
from tui.core.store import Store, StoreError, agent_owner

FAR_ANA = "far-away-host:99:aaaa"
FAR_BO = "far-away-host:100:bbbb"


@pytest.fixture
def store(db_target: Path | PgTarget) -> Iterator[Store]:
    with Store(db_target) as opened:
        opened.import_tickets(
            [Ticket(id=f"T{i:03d}", text=f"text {i}") for i in range(12)], {"T000": "billing"}
        )
        yield opened


def test_two_agents_never_get_one_ticket_and_labelled_ones_are_not_offered(store: Store) -> None:
    ana = store.claim_for_agent("ana", FAR_ANA, lease_s=60, n=3)
    bo = store.claim_for_agent("bo", FAR_BO, lease_s=60, n=3)
    assert ana == ["T001", "T002", "T003"] and bo == ["T004", "T005", "T006"]
    assert store.claim_for_agent("bo", FAR_BO, lease_s=60, ids=["T001", "T007"]) == ["T007"]
    assert store.agent_leases() == {
        **dict.fromkeys(ana, "ana"),
        **dict.fromkeys([*bo, "T007"], "bo"),
    }
    row = store.inbox_row("T002")
    assert row is not None and row.held_by == "ana"
    page = {r.ticket_id: r.held_by for r in store.inbox_page("all", limit=20)}
    assert page["T004"] == "bo" and page["T000"] is None


def test_label_and_release_give_tickets_back(store: Store) -> None:
    store.claim_for_agent("ana", FAR_ANA, lease_s=60, n=3)
    store.add_label("T001", "billing", agent="ana", source="correct")
    assert store.label_history("T001")[-1].agent == "ana"
    assert "T001" not in store.agent_leases()
    assert store.release_agent_claims("ana", ids=["T002"]) == 1
    assert store.claim_for_agent("bo", FAR_BO, lease_s=60, n=1) == ["T002"]
    assert store.release_agent_claims("ana") == 1  # T003
    assert store.release_agent_claims("ana") == 0


def test_an_expired_lease_is_taken_over(store: Store) -> None:
    assert store.claim_for_agent("ana", FAR_ANA, lease_s=0.05, n=1) == ["T001"]
    time.sleep(0.1)
    assert store.claim_for_agent("bo", FAR_BO, lease_s=60, ids=["T001"]) == ["T001"]
    assert store.agent_leases() == {"T001": "bo"}


def test_a_lease_does_not_keep_a_ticket_from_routing(store: Store) -> None:
    """The ticket an agent has open may be routed (its prediction shows up as they read);
    routing claims keep other runs out, leases keep other agents out."""
    assert store.claim_for_agent("ana", FAR_ANA, lease_s=60, n=2) == ["T001", "T002"]
    routed = store.claim_tickets(FAR_BO, "r1", ["T001", "T003"], lease_s=60)
    assert [t.id for _, t in routed.tickets] == ["T001", "T003"] and routed.held == {}
    assert store.claim_for_agent("ana", FAR_ANA, lease_s=60, ids=["T003"]) == ["T003"]
    assert store.claim_for_agent("bo", FAR_BO, lease_s=60, ids=["T001"]) == []


def test_a_killed_desk_gives_its_tickets_back_at_once(store: Store, tmp_path: Path) -> None:
    """A desk of this host whose process is gone (`kill -9`): its leases are void before they
    expire, so the next agent gets the tickets."""
    dead = dead_owner("dead")
    assert store.claim_for_agent("ana", dead, lease_s=3600, n=2) == ["T001", "T002"]
    assert store.agent_leases() == {}
    assert store.claim_for_agent("bo", FAR_BO, lease_s=60, n=2) == ["T001", "T002"]


def test_concurrent_claimers_get_distinct_tickets(store: Store) -> None:
    """Eight desks pressing "next" at once, 30 times each, over 11 free tickets."""
    got: list[str] = []
    lock = threading.Lock()

    def desk(i: int) -> None:
        for _ in range(30):
            ids = store.claim_for_agent(f"a{i}", f"far-away-host:{i}:x", lease_s=60, n=1)
            with lock:
                got.extend(ids)

    threads = [threading.Thread(target=desk, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == [f"T{i:03d}" for i in range(1, 12)]
    assert Counter(store.agent_leases().values()).total() == 11


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    with Store(pg_url) as opened:
        opened.import_tickets([Ticket(id=f"T{i:03d}", text=f"text {i}") for i in range(12)])
        yield opened


def test_a_ticket_another_transaction_references_is_not_held(pg_store: Store, pg_url: str) -> None:
    """PostgreSQL: a route run's open transaction that inserts rows referencing tickets (its
    claims here; decisions, training records and leases alike) holds a key-share lock on
    those ticket rows. That is no agent's lease: "next" still gets the newest free ticket,
    and opening one succeeds."""
    import psycopg

    with psycopg.connect(pg_url) as run:
        for ticket_id in ("T011", "T005"):
            run.execute(
                "INSERT INTO claims (ticket_id, owner, run_id, expires_at) VALUES (%s, %s, %s, %s)",
                (ticket_id, FAR_BO, "r1", "2999-01-01T00:00:00.000000+00:00"),
            )
        assert pg_store.claim_for_agent("ana", FAR_ANA, lease_s=60, newest_first=True) == ["T011"]
        assert pg_store.claim_for_agent("ana", FAR_ANA, lease_s=60, ids=["T005"]) == ["T005"]
        run.rollback()


def test_tickets_being_updated_are_still_leased(pg_store: Store, pg_url: str) -> None:
    """PostgreSQL: while another transaction updates every ticket row (a batch of decisions
    being stored), opening a ticket succeeds and "next" finds one rather than saying that
    nothing is free; the update waits on no lease, nor the lease on it."""
    import psycopg

    with psycopg.connect(pg_url) as run:
        run.execute("UPDATE tickets SET confidence = 0.5")
        assert pg_store.claim_for_agent("ana", FAR_ANA, lease_s=60, ids=["T004"]) == ["T004"]
        assert pg_store.claim_for_agent("bo", FAR_BO, lease_s=60, newest_first=True) == ["T011"]
        run.rollback()
    assert pg_store.agent_leases() == {"T004": "ana", "T011": "bo"}


def test_a_desk_holds_what_it_has_open(store: Store) -> None:
    desk = AgentLeases(store, "ana", lease_s=60)
    other = AgentLeases(store, "bo", lease_s=60)
    assert desk.next() == "T011" and other.next() == "T010"  # newest first, as the inbox
    assert desk.next() == "T009" and store.agent_leases().get("T011") is None
    assert not desk.open("T010") and desk.open("T003")
    assert store.agent_leases() == {"T003": "ana", "T010": "bo"}  # T009 given back
    assert desk.renew() == 1
    with pytest.raises(StoreError, match="worked on by bo"):
        store.add_label("T010", "billing", agent="ana", desk=desk.owner)
    store.add_label("T010", "billing", agent="bo", desk=other.owner)
    desk.release()
    assert store.agent_leases() == {}


def test_a_desks_steps_from_two_threads_run_one_after_the_other(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TUI leases from thread workers, and "next" may start while an older "open" is
    still in the store. Interleaved, the open's bookkeeping came last: the desk believed it
    held T005, which "next" had given back, and had given back T011, which it had open on
    screen, for another desk to take."""
    desk = AgentLeases(store, "ana", lease_s=60)
    assert desk.open("T005")
    in_store, resume = threading.Event(), threading.Event()
    claim = store.claim_for_agent

    def paused_claim(*args: Any, **kwargs: Any) -> list[str]:
        got = claim(*args, **kwargs)
        if threading.current_thread().name == "open":
            in_store.set()
            resume.wait(30)
        return got

    monkeypatch.setattr(store, "claim_for_agent", paused_claim)
    opener = threading.Thread(target=desk.open, args=("T005",), name="open")
    opener.start()
    assert in_store.wait(30)
    later = threading.Thread(target=desk.next, name="next")
    later.start()
    later.join(timeout=2)  # unserialised, "next" is done by now; serialised, it waits its turn
    resume.set()
    opener.join(30)
    later.join(30)
    assert desk.held == "T011"
    assert store.agent_leases() == {"T011": "ana"}


def test_agent_name_comes_from_flag_config_or_os(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.model_validate({"team": {"agent": "ana"}})
    assert agent_name(settings, "bo") == "bo" and agent_name(settings) == "ana"
    monkeypatch.setenv("USER", "carla")
    monkeypatch.setenv("LOGNAME", "carla")
    assert agent_name(Settings()) == "carla"
    with pytest.raises(ConfigError, match="--agent"):
        agent_name(settings, "bad\nname")
    assert agent_owner("ana") == "agent:ana"
