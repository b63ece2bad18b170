"""Claims: which routing session holds which ticket, so two runs never route one twice; and
agent leases: which agent is working on which ticket, so two agents never get one.

Both are the same mechanism (an owner that is a process, a lease renewed while it lives, void
once it lapses or the process of this host is gone, taken over by whoever claims next), in two
tables (`claims`, `agent_leases`), because a run routing a ticket and an agent reading it do
not exclude each other.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tui.core.models import Ticket, utcnow
from tui.core.store.connection import Conn, Row, StoreBase, fetch_rows
from tui.core.store.errors import StoreError
from tui.core.store.pg import reconnecting
from tui.core.store.runs import PendingQuery, pending_sql
from tui.core.store.tickets import ticket_from_row

CLAIM_LEASE_S = 60.0
"""How long a claim holds a ticket without renewal. A run renews its claims every quarter of
this while it routes, so only a run that died (or stalled for a whole lease) loses them."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """What `Store.claim_tickets` took and what it had to leave."""

    tickets: list[tuple[int, Ticket]]
    """(seq, ticket) now claimed by the owner, in import order."""
    held: dict[str, int]
    """Tickets asked for that another owner's live claim holds: owner -> how many."""
    last_seq: int
    """Highest seq looked at (claimed or held): where the next page starts."""


def claim_owner() -> str:
    """A new claim owner, `host:pid:tag`: one per routing session (the TUI may route a batch and
    a single ticket at once, each its own owner), the pid saying which process holds tickets."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def agent_owner(agent: str) -> str:
    """The owner of the leases `triagedesk claim --agent NAME` takes: `agent:NAME`, with no
    pid, since the command exits at once; they last until released, labelled or expired."""
    return f"agent:{agent}"


def _owner_parts(owner: str) -> tuple[str, int] | None:
    host, sep, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return (host, int(pid)) if sep and pid.isdigit() else None


def owner_alive(owner: str) -> bool:
    """False only for an owner that is a process of this host that no longer exists: its claims
    are void at once (a `kill -9`ed run). Owners elsewhere (another machine on a shared
    database) are trusted until their lease runs out; a reused pid errs on the safe side."""
    parts = _owner_parts(owner)
    if parts is None or parts[0] != socket.gethostname():
        return True
    try:
        os.kill(parts[1], 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def describe_owner(owner: str) -> str:
    """`pid 1234`, or `pid 1234 on otherhost` for a process of another machine."""
    parts = _owner_parts(owner)
    if parts is None:
        return repr(owner[:60])
    host, pid = parts
    return f"pid {pid}" if host == socket.gethostname() else f"pid {pid} on {host[:60]}"


def _stamp(moment: datetime) -> str:
    """A claim time: UTC ISO with microseconds always, so text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class ClaimsMixin(StoreBase):
    """Claiming, renewing, releasing and listing the tickets in flight."""

    @reconnecting
    def claim_tickets(
        self, owner: str, run_id: str, which: Sequence[str] | PendingQuery, lease_s: float
    ) -> Claimed:
        """Claim tickets for `owner` in one IMMEDIATE transaction, so that two runs can never
        both take one: the tickets of `which` (ids, or a page of a run's pending tickets)
        that no other owner holds. A claim is void, and taken over, once its lease has run
        out or when its owner is a process of this host that no longer exists; the owner's
        own claims are renewed. Ids with no ticket are left out.

        Args:
            owner: Who claims (`claim_owner()`): one routing session.
            run_id: The run the tickets are routed in (and, for a `PendingQuery`, whose
                decisions say what is still pending).
            which: Ticket ids, or a page of pending tickets.
            lease_s: Seconds the claims hold without `renew_claims`.
        """
        if not (math.isfinite(lease_s) and lease_s >= 0):
            raise StoreError(f"claim lease {lease_s!r}: must be a finite number of seconds >= 0")
        now = utcnow()
        now_s, expires = _stamp(now), _stamp(now + timedelta(seconds=lease_s))
        with self._write() as conn:
            if isinstance(which, PendingQuery):
                if which.ids is not None and not which.ids:
                    return Claimed([], {}, which.after_seq)
                sql, params = pending_sql(run_id, which)
                rows = fetch_rows(conn, sql, params)
                last_seq = max([which.after_seq, *(r["seq"] for r in rows)])
            else:
                ids = list(dict.fromkeys(which))
                rows = []
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows += fetch_rows(conn, f"SELECT * FROM tickets WHERE id IN ({marks})", chunk)
                rows.sort(key=lambda r: int(r["seq"]))
                last_seq = max([0, *(r["seq"] for r in rows)])
            claims = self._claims_on(conn, [r["id"] for r in rows])
            alive: dict[str, bool] = {}
            taken: list[Row] = []
            held: Counter[str] = Counter()
            for row in rows:
                found = claims.get(row["id"])
                if found is not None and found[0] != owner and found[1] > now_s:
                    if found[0] not in alive:
                        alive[found[0]] = owner_alive(found[0])
                    if alive[found[0]]:
                        held[found[0]] += 1
                        continue
                taken.append(row)
            conn.executemany(
                "INSERT INTO claims (ticket_id, owner, run_id, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (ticket_id) DO UPDATE SET owner = excluded.owner,"
                " run_id = excluded.run_id, expires_at = excluded.expires_at",
                [(row["id"], owner, run_id, expires) for row in taken],
            )
        return Claimed([(r["seq"], ticket_from_row(r)) for r in taken], dict(held), last_seq)

    @reconnecting
    def claim_for_agent(
        self,
        agent: str,
        owner: str,
        *,
        lease_s: float,
        n: int = 1,
        ids: Sequence[str] | None = None,
        newest_first: bool = False,
    ) -> list[str]:
        """Lease tickets to an agent: the `n` oldest unlabelled tickets no agent holds, or of
        `ids` those no other desk holds (the owner's own are renewed). Returns the ids now
        held, in import order. `newest_first` takes the newest free tickets instead of the
        oldest (the TUI's "claim next": the top of its newest-first inbox).

        One statement claims them: `INSERT ... SELECT ... ON CONFLICT DO UPDATE ... WHERE the
        old lease expired ... RETURNING`, inside an IMMEDIATE transaction on SQLite; on
        PostgreSQL outside the write lock, the upsert's WHERE deciding who wins a ticket. A
        pick of new tickets skips the rows other pickers hold (`FOR NO KEY UPDATE SKIP
        LOCKED`), so twenty agents pressing "next" at once each get other tickets without
        waiting on each other (a ticket another claimer committed meanwhile fails the WHERE,
        and the pick is repeated for what is missing). Not `FOR UPDATE`: that also conflicts
        with the key-share lock any insert referencing the ticket takes (a decision, a
        claim, a training record, a lease), so a ticket in the middle of a route run looked
        held. Named `ids` take no row lock at all, and a last pick that skips nothing makes
        sure "nothing free" means it.
        """
        if not (math.isfinite(lease_s) and lease_s >= 0):
            raise StoreError(f"claim lease {lease_s!r}: must be a finite number of seconds >= 0")
        if n < 1 and ids is None:
            return []
        wanted = None if ids is None else list(dict.fromkeys(ids))[:500]
        skip = wanted is None and self.engine == "postgresql"
        got: list[str] = []
        for _ in range(5):
            lock = " FOR NO KEY UPDATE OF t SKIP LOCKED" if skip else ""
            now = utcnow()
            now_s, expires = _stamp(now), _stamp(now + timedelta(seconds=lease_s))
            if wanted is None:  # new tickets: any live claim, the owner's own too, keeps one out
                which, params = "t.label IS NULL", [now_s, ""]
                limit: list[Any] = [n - len(got)]
            else:  # these tickets: the owner's own claims are renewed
                which = f"t.id IN ({','.join('?' * len(wanted))})"
                params, limit = [*wanted, now_s, owner], [len(wanted)]
            sql = (
                "WITH pick AS (SELECT t.id FROM tickets t"
                f" WHERE {which} AND NOT EXISTS (SELECT 1 FROM agent_leases a"
                "   WHERE a.ticket_id = t.id AND a.expires_at > ? AND a.owner != ?)"
                f" ORDER BY t.seq{' DESC' if newest_first else ''} LIMIT ?{lock})"
                " INSERT INTO agent_leases (ticket_id, owner, expires_at, agent)"
                " SELECT id, ?, ?, ? FROM pick WHERE TRUE"
                " ON CONFLICT (ticket_id) DO UPDATE SET owner = excluded.owner,"
                " expires_at = excluded.expires_at, agent = excluded.agent"
                " WHERE agent_leases.expires_at <= ? OR agent_leases.owner = excluded.owner"
                " RETURNING ticket_id"
            )
            with self._write(serial=False) as conn:
                self._void_dead_owners(conn, now_s)
                rows = conn.execute(sql, [*params, *limit, owner, expires, agent, now_s]).fetchall()
            fresh = [r[0] for r in rows if r[0] not in got]
            got += fresh
            if wanted is not None or len(got) >= n:
                break
            if not fresh:
                if not skip:
                    break
                skip = False  # the rows skipped may be free: look once more, skipping none
        if not got:
            return []
        marks = ",".join("?" * len(got))
        return [
            r[0]
            for r in self._read(f"SELECT id FROM tickets WHERE id IN ({marks}) ORDER BY seq", got)
        ]

    @staticmethod
    def _void_dead_owners(conn: Conn, now_s: str) -> None:
        """Drop the live-looking claims of processes of this host that are gone (a `kill -9`ed
        TUI or route): their tickets are free at once, not after the lease."""
        owners = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT owner FROM agent_leases WHERE expires_at > ?", (now_s,)
            ).fetchall()
        ]
        for dead in [o for o in owners if not owner_alive(o)]:
            conn.execute("DELETE FROM agent_leases WHERE owner = ?", (dead,))

    @reconnecting
    def release_agent_claims(
        self,
        agent: str | None = None,
        *,
        owner: str | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        """End agent leases: those of `agent` (any of their desks) or of one `owner`, only on
        `ids` when given. Returns how many were released."""
        where, params = ["TRUE"], []
        if agent is not None:
            where.append("agent = ?")
            params.append(agent)
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        released = 0
        unique = None if ids is None else list(dict.fromkeys(ids))
        with self._write(serial=False) as conn:
            if unique is None:
                return conn.execute(
                    f"DELETE FROM agent_leases WHERE {' AND '.join(where)}", params
                ).rowcount
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                released += conn.execute(
                    f"DELETE FROM agent_leases WHERE {' AND '.join(where)}"
                    f" AND ticket_id IN ({marks})",
                    [*params, *chunk],
                ).rowcount
        return released

    def agent_leases(self) -> dict[str, str]:
        """Ticket id -> the agent holding it, for the live agent leases."""
        rows = self._read(
            "SELECT ticket_id, agent, owner FROM agent_leases WHERE expires_at > ?",
            (_stamp(utcnow()),),
        )
        return {r[0]: r[1] for r in rows if owner_alive(r[2])}

    @reconnecting
    def renew_agent_leases(self, owner: str, lease_s: float) -> int:
        """Extend every lease of this desk to `lease_s` from now; returns how many it holds."""
        if not (math.isfinite(lease_s) and lease_s >= 0):
            raise StoreError(f"claim lease {lease_s!r}: must be a finite number of seconds >= 0")
        expires = _stamp(utcnow() + timedelta(seconds=lease_s))
        with self._write(serial=False) as conn:
            return conn.execute(
                "UPDATE agent_leases SET expires_at = ? WHERE owner = ?", (expires, owner)
            ).rowcount

    @staticmethod
    def _claims_on(conn: Conn, ids: list[str]) -> dict[str, tuple[str, str]]:
        """Ticket id -> (owner, expires_at) of the claims on these tickets."""
        found: dict[str, tuple[str, str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for tid, owner, expires in conn.execute(
                f"SELECT ticket_id, owner, expires_at FROM claims WHERE ticket_id IN ({marks})",
                chunk,
            ):
                found[tid] = (owner, expires)
        return found

    @reconnecting
    def release_claims(self, owner: str, ids: Sequence[str] | None = None) -> int:
        """Give back the owner's claims (only those on `ids`, when given); returns how many."""
        with self._write() as conn:
            if ids is None:
                return conn.execute("DELETE FROM claims WHERE owner = ?", (owner,)).rowcount
            released = 0
            unique = list(dict.fromkeys(ids))
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                released += conn.execute(
                    f"DELETE FROM claims WHERE owner = ? AND ticket_id IN ({marks})",
                    [owner, *chunk],
                ).rowcount
            return released

    @reconnecting
    def renew_claims(self, owner: str, lease_s: float) -> int:
        """Extend every claim of the owner to `lease_s` from now; returns how many it holds.
        Claims another owner has taken over (after this one's lease ran out) stay theirs."""
        if not (math.isfinite(lease_s) and lease_s >= 0):
            raise StoreError(f"claim lease {lease_s!r}: must be a finite number of seconds >= 0")
        expires = _stamp(utcnow() + timedelta(seconds=lease_s))
        with self._write() as conn:
            return conn.execute(
                "UPDATE claims SET expires_at = ? WHERE owner = ?", (expires, owner)
            ).rowcount

    def claim_holders(self, run_id: str | None = None) -> dict[str, int]:
        """Owners holding live claims (in one run, when given) -> how many tickets each."""
        sql = "SELECT owner, count(*) FROM claims WHERE expires_at > ?"
        params: list[Any] = [_stamp(utcnow())]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        rows = self._read(sql + " GROUP BY owner ORDER BY owner", params)
        return {owner: int(n) for owner, n in rows if owner_alive(owner)}
