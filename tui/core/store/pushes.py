"""Write-back records: what was pushed to which helpdesk ticket, so each label is written once.

A push is queued when a ticket's wanted label (the agent's, else the latest decision's)
differs from what its last push wrote. It is marked `sending` before the request and `done`
after; a run killed between the two leaves `sending`, and the next run looks for the push's
marker in the ticket before writing (`PushRequest.resumed`). A push carries the ticket's
helpdesk stamp from when it was queued: someone changing the ticket in the helpdesk after that
is a conflict, kept and shown, never retried over their change; a later label of the ticket
queues a new push, with the stamp of then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tui.core.models import utcnow
from tui.core.store.connection import Conn, StoreBase, fetch_rows
from tui.core.store.values import iso

if TYPE_CHECKING:  # the helpdesk clients load with the first sync, not with every store
    from tui.core.helpdesk.writeback import PushRequest

PushState = str
OPEN_STATES = ("pending", "sending")


@dataclass(frozen=True, slots=True)
class PushRecord:
    id: int
    ticket_id: str
    label: str
    state: PushState
    attempts: int
    error: str | None
    correction: bool


class PushesMixin(StoreBase):
    """Queueing, handing out and recording helpdesk pushes."""

    def queue_pushes(self, helpdesk: str) -> int:
        """Queue a push for each ticket of `helpdesk` whose wanted label is not yet written;
        a failed push of the same label is queued again. Returns how many are queued now."""
        queued = 0
        now = iso(utcnow())
        with self._write() as conn:
            rows = fetch_rows(
                conn,
                "SELECT t.id, t.label, t.predicted_label, t.decision_id, h.remote_updated_at,"
                " p.id AS push_id,"
                " p.label AS push_label, p.state FROM helpdesk_tickets h"
                " JOIN tickets t ON t.id = h.ticket_id"
                " LEFT JOIN helpdesk_pushes p ON p.id = (SELECT max(id) FROM helpdesk_pushes"
                "   WHERE ticket_id = t.id AND state != 'superseded')"
                " WHERE h.helpdesk = ? AND coalesce(t.label, t.predicted_label) IS NOT NULL",
                (helpdesk,),
            )
            for r in rows:
                wanted = r["label"] or r["predicted_label"]
                if r["push_id"] is not None and r["push_label"] == wanted:
                    if r["state"] == "failed":
                        conn.execute(
                            "UPDATE helpdesk_pushes SET state = 'pending' WHERE id = ?",
                            (r["push_id"],),
                        )
                        queued += 1
                    continue
                if r["push_id"] is not None and r["state"] in ("pending", "failed"):
                    conn.execute(
                        "UPDATE helpdesk_pushes SET state = 'superseded' WHERE id = ?",
                        (r["push_id"],),
                    )
                previous = self._last_done_label(conn, r["id"])
                conn.execute(
                    "INSERT INTO helpdesk_pushes (helpdesk, ticket_id, label, previous_label,"
                    " decision_id, correction, stamp, state, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                    (
                        helpdesk,
                        r["id"],
                        wanted,
                        previous,
                        None if r["label"] else r["decision_id"],
                        1 if r["label"] else 0,
                        r["remote_updated_at"],
                        now,
                    ),
                )
                queued += 1
        return queued

    @staticmethod
    def _last_done_label(conn: Conn, ticket_id: str) -> str | None:
        row = conn.execute(
            "SELECT label FROM helpdesk_pushes WHERE ticket_id = ? AND state = 'done'"
            " ORDER BY id DESC LIMIT 1",
            (ticket_id,),
        ).fetchone()
        return row[0] if row else None

    def open_pushes(self, helpdesk: str, *, limit: int = 200) -> list[PushRequest]:
        """Pending pushes and those a crashed run left `sending`, oldest first."""
        from tui.core.helpdesk.writeback import PushRequest

        rows = self._read(
            "SELECT p.*, h.remote_id, d.confidence, d.backend,"
            " d.backend_type, d.model, d.total_ms, d.cost_usd FROM helpdesk_pushes p"
            " JOIN helpdesk_tickets h ON h.ticket_id = p.ticket_id"
            " LEFT JOIN decisions d ON d.id = p.decision_id"
            " WHERE p.helpdesk = ? AND p.state IN ('pending', 'sending') ORDER BY p.id LIMIT ?",
            (helpdesk, limit),
        )
        return [
            PushRequest(
                push_id=r["id"],
                helpdesk=helpdesk,
                ticket_id=r["ticket_id"],
                remote_id=r["remote_id"],
                label=r["label"],
                previous_label=r["previous_label"],
                correction=bool(r["correction"]),
                stamp=r["stamp"],
                resumed=r["state"] == "sending",
                confidence=r["confidence"],
                backend=r["backend"],
                backend_type=r["backend_type"],
                model=r["model"] or None,
                latency_ms=r["total_ms"],
                cost_usd=r["cost_usd"],
            )
            for r in rows
        ]

    def mark_push_sending(self, push_id: int) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE helpdesk_pushes SET state = 'sending', attempts = attempts + 1"
                " WHERE id = ?",
                (push_id,),
            )

    def finish_push(
        self, push_id: int, state: PushState, *, error: str | None = None, stamp: str | None = None
    ) -> None:
        """Record a push's end (`done`, `failed`, `conflict`); `stamp` is the ticket's new
        `updated_at`, which the next write of the ticket sends as its `updated_stamp`."""
        with self._write() as conn:
            conn.execute(
                "UPDATE helpdesk_pushes SET state = ?, error = ?, pushed_at = ? WHERE id = ?",
                (state, None if error is None else error[:500], iso(utcnow()), push_id),
            )
            if stamp is not None:
                conn.execute(
                    "UPDATE helpdesk_tickets SET remote_updated_at = ? WHERE ticket_id ="
                    " (SELECT ticket_id FROM helpdesk_pushes WHERE id = ?)",
                    (stamp, push_id),
                )

    def push_records(self, helpdesk: str, *, state: PushState | None = None) -> list[PushRecord]:
        sql = "SELECT * FROM helpdesk_pushes WHERE helpdesk = ?"
        params: list[object] = [helpdesk]
        if state is not None:
            sql += " AND state = ?"
            params.append(state)
        return [
            PushRecord(
                r["id"],
                r["ticket_id"],
                r["label"],
                r["state"],
                r["attempts"],
                r["error"],
                bool(r["correction"]),
            )
            for r in self._read(sql + " ORDER BY id", params)
        ]
