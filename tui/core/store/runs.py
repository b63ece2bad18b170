"""Runs: resumable batches of one backend over one selection, and their pending tickets."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tui.core.models import Ticket, utcnow
from tui.core.store.connection import StoreBase
from tui.core.store.pg import reconnecting
from tui.core.store.tickets import ticket_from_row
from tui.core.store.values import iso


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: str
    backend: str
    selection: str
    status: str
    resumed: bool


@dataclass(frozen=True, slots=True)
class PendingQuery:
    """One page of the tickets a run has still to route, by keyset on import order: those
    without a decision in the run (of `ids` only, when given), or with `unrouted_only` those
    without any decision at all."""

    ids: tuple[str, ...] | None = None
    unrouted_only: bool = False
    after_seq: int = 0
    limit: int = 500


def pending_sql(run_id: str, query: PendingQuery) -> tuple[str, list[Any]]:
    """The SELECT of one `PendingQuery` page: shared by `pending_in_run` and the claims, which
    take the same page inside their own transaction."""
    if query.unrouted_only:
        sql = "SELECT t.* FROM tickets t WHERE t.decision_id IS NULL AND t.seq > ?"
        params: list[Any] = [query.after_seq]
    else:
        sql = (
            "SELECT t.* FROM tickets t WHERE t.seq > ? AND NOT EXISTS "
            "(SELECT 1 FROM decisions d WHERE d.run_id = ? AND d.ticket_id = t.id)"
        )
        params = [query.after_seq, run_id]
    if query.ids is not None:
        sql += f" AND t.id IN ({','.join('?' * len(query.ids))})"
        params.extend(query.ids)
    params.append(query.limit)
    return sql + " ORDER BY t.seq LIMIT ?", params


class RunsMixin(StoreBase):
    """Opening, finishing and paging runs."""

    @reconnecting
    def open_run(self, backend: str, selection: str) -> RunInfo:
        """Resume the unfinished run of this backend and selection, or start a new one.

        Two processes started with the same backend and selection share the run: the claims
        (`claim_tickets`) split its tickets between them, so each is routed once."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT id FROM runs WHERE status = 'running' AND backend = ? AND selection = ?"
                " ORDER BY started_at DESC LIMIT 1",
                (backend, selection),
            ).fetchone()
            if row:
                return RunInfo(row[0], backend, selection, "running", resumed=True)
            run_id = f"run-{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
            conn.execute(
                "INSERT INTO runs (id, backend, selection, status, started_at)"
                " VALUES (?, ?, ?, 'running', ?)",
                (run_id, backend, selection, iso(utcnow())),
            )
            return RunInfo(run_id, backend, selection, "running", resumed=False)

    @reconnecting
    def finish_run(self, run_id: str) -> bool:
        """Mark the run done, unless claims in it remain: another process sharing the run is
        still routing its part, or one died holding tickets the run has not decided yet (the
        next `route` resumes the run and takes them). Returns whether it was marked done."""
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM claims WHERE run_id = ? LIMIT 1", (run_id,)).fetchone():
                return False
            conn.execute(
                "UPDATE runs SET status = 'done', finished_at = ? WHERE id = ?",
                (iso(utcnow()), run_id),
            )
            return True

    def pending_in_run(
        self, run_id: str, *, ids: Sequence[str] | None = None, after_seq: int = 0, limit: int = 500
    ) -> list[tuple[int, Ticket]]:
        """Tickets of the selection without a decision in this run yet, in import order."""
        if ids is not None and not ids:
            return []
        query = PendingQuery(None if ids is None else tuple(ids), False, after_seq, limit)
        sql, params = pending_sql(run_id, query)
        return [(r["seq"], ticket_from_row(r)) for r in self._read(sql, params)]
