"""One routing session's claims: a ticket in flight in one run is not taken by another.

Two `route` processes on one database (or a `route` and the TUI) used to route every ticket
twice. Now each session claims the tickets it is about to route, in the same IMMEDIATE
transaction that reads them (`Store.claim_tickets`); a ticket another live session holds is
skipped and counted, so the session can say what it left and to whom. A claim ends in the
transaction that stores the ticket's decision, or when the session stops, however it stops;
a session killed outright leaves claims that are void at once on this host (its pid is gone)
and, from elsewhere, once their lease runs out. The lease is renewed while the session routes.

Textual-free: the CLI, the demo and the TUI's routing actions share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from tui.core.config import ConfigError, Settings
from tui.core.models import Ticket
from tui.core.store import (
    CLAIM_LEASE_S,
    Claimed,
    PendingQuery,
    StoreError,
    claim_owner,
    describe_owner,
)

if TYPE_CHECKING:
    from tui.core.store import Store

LEASE_ENV = "TRIAGEDESK_CLAIM_LEASE_S"
"""Overrides `CLAIM_LEASE_S`: how long a claim of a vanished run on another machine blocks its
tickets (a shared database), and how tests make a lease run out without waiting a minute."""
LEASE_RANGE_S = (1.0, 86_400.0)


def claim_lease_s() -> float:
    """The claim lease in seconds: `TRIAGEDESK_CLAIM_LEASE_S`, else `CLAIM_LEASE_S`.

    Raises:
        ConfigError: The variable is not a number of seconds within `LEASE_RANGE_S`.
    """
    raw = os.environ.get(LEASE_ENV, "").strip()
    if not raw:
        return CLAIM_LEASE_S
    low, high = LEASE_RANGE_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(
            f"{LEASE_ENV}={raw[:40]!r}: must be a number of seconds from {low:g} to {high:g}"
        )
    return value


def describe_skipped(skipped: Mapping[str, int]) -> str | None:
    """`skipped 40 tickets claimed by another run (pid 1234)`, or None when nothing was."""
    n = sum(skipped.values())
    if not n:
        return None
    holders = sorted({describe_owner(owner) for owner, count in skipped.items() if count})
    tickets = "ticket" if n == 1 else "tickets"
    runs = "another run" if len(holders) == 1 else "other runs"
    return f"skipped {n} {tickets} claimed by {runs} ({', '.join(holders)})"


class RunClaims:
    """The claims of one routing session (a CLI `route`, a TUI batch, one ticket in the TUI).

    `page_pending` claims each page it reads through `take_page`; other ticket sources go
    through `take`. `Router.run(..., claims=...)` renews the lease while it routes, releases
    each ticket's claim in the transaction that stores its decision, and the rest when it
    returns or fails. `skipped` counts the tickets left to other owners, by owner.
    """

    def __init__(self, store: Store, run_id: str, *, lease_s: float | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.owner = claim_owner()
        self.lease_s = claim_lease_s() if lease_s is None else lease_s
        self.skipped: Counter[str] = Counter()
        """Tickets asked for that other sessions held: owner -> how many."""

    async def take_page(self, query: PendingQuery) -> Claimed:
        """Claim the next page of a run's pending tickets (read and claimed atomically)."""
        claimed = await asyncio.to_thread(
            self.store.claim_tickets, self.owner, self.run_id, query, self.lease_s
        )
        self.skipped.update(claimed.held)
        return claimed

    async def take(self, tickets: Iterable[Ticket | str]) -> list[Ticket]:
        """Claim these tickets (or ids); returns those now held, freshly read, in import order."""
        ids = [t if isinstance(t, str) else t.id for t in tickets]
        claimed = await asyncio.to_thread(
            self.store.claim_tickets, self.owner, self.run_id, ids, self.lease_s
        )
        self.skipped.update(claimed.held)
        return [ticket for _, ticket in claimed.tickets]

    async def keep_alive(self) -> None:
        """Renew the lease every quarter of it, until cancelled. A failed renewal (the database
        busy for long) is retried at the next tick: the lease has three more to spare."""
        while True:
            await asyncio.sleep(self.lease_s / 4)
            with contextlib.suppress(StoreError, sqlite3.Error):
                await asyncio.to_thread(self.store.renew_claims, self.owner, self.lease_s)

    async def release(self) -> None:
        """Give back every ticket still claimed (queued but not routed when a run stops)."""
        await asyncio.to_thread(self.store.release_claims, self.owner)

    def skipped_line(self) -> str | None:
        return describe_skipped(self.skipped)


def agent_name(settings: Settings | None = None, flag: str | None = None) -> str:
    """Who the agent is, for label events and leases: `--agent`, else `[team] agent`, else the
    OS user (else `agent`).

    Raises:
        ConfigError: `--agent` is not a usable name (empty, control characters, too long).
    """
    from tui.core.config.settings import check_agent_name

    if flag is not None:
        try:
            return check_agent_name(flag)
        except ValueError as exc:
            raise ConfigError(f"--agent {flag[:40]!r}: {exc}") from None
    if settings is not None and settings.team.agent:
        return settings.team.agent
    import getpass

    try:
        return check_agent_name(getpass.getuser())
    except Exception:  # no login name (a container), or an odd one
        return "agent"


class AgentLeases:
    """The leases of one agent's desk (a TUI): the ticket they have open is theirs while it
    is open, renewed every quarter lease, and given back on label, skip or quit.

    One owner per desk (`claim_owner()`: host, pid, tag), so a `kill -9`ed TUI's tickets are
    free at once on this host and after the lease elsewhere. Thread-safe: the TUI leases
    from thread workers, and a newer one may start while an older one is still in the store;
    each step runs whole, so no step's bookkeeping of `held` undoes another's."""

    def __init__(self, store: Store, agent: str, *, lease_s: float) -> None:
        self.store = store
        self.agent = agent
        self.owner = claim_owner()
        self.lease_s = lease_s
        self.held: str | None = None
        """The ticket this desk has open and leased."""
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Keep the other threads' steps out for a check-then-step of the caller's (the TUI
        drops a request that a newer one superseded, checked and done in one turn)."""
        with self._lock:
            yield

    def open(self, ticket_id: str) -> bool:
        """Lease this ticket (renewing it when already ours); False when another holds it.
        The lease of the ticket this desk had open before is given back."""
        with self._lock:
            got = bool(
                self.store.claim_for_agent(
                    self.agent, self.owner, lease_s=self.lease_s, ids=[ticket_id]
                )
            )
            self._move_to(ticket_id if got else None)
            return got

    def next(self) -> str | None:
        """Lease the newest free unlabelled ticket other than the one open (the top of the
        inbox, which lists newest first), and give back the one open."""
        with self._lock:
            got = self.store.claim_for_agent(
                self.agent, self.owner, lease_s=self.lease_s, n=1, newest_first=True
            )
            self._move_to(got[0] if got else self.held)
            return got[0] if got else None

    def _move_to(self, ticket_id: str | None) -> None:
        previous, self.held = self.held, ticket_id
        if previous is not None and previous != ticket_id:
            self.store.release_agent_claims(owner=self.owner, ids=[previous])

    def renew(self) -> int:
        with self._lock:
            return self.store.renew_agent_leases(self.owner, self.lease_s)

    def release(self) -> int:
        with self._lock:
            self.held = None
            return self.store.release_agent_claims(owner=self.owner)


__all__ = [
    "LEASE_ENV",
    "AgentLeases",
    "RunClaims",
    "agent_name",
    "claim_lease_s",
    "describe_skipped",
]
