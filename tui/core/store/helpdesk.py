"""Helpdesk sync: pull cursors, which ticket is which helpdesk ticket, each helpdesk's state.

A pulled page and the cursor after it are written in one transaction (`store_pull_page`): a
run killed at any point resumes at the cursor of the last page stored, which holds exactly
the tickets before it, so nothing is skipped and nothing imported twice. A ticket the
helpdesk sends again (updated since) keeps its routed content and its decisions; only its
metadata (tags, status) and the stamp a write-back sends as `updated_stamp` follow.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tui.core.models import Ticket, utcnow
from tui.core.store.connection import StoreBase, fetch_rows
from tui.core.store.values import iso

HELPDESK_META_KEYS = ("tags", "status", "updated_at")
"""Metadata a later pull refreshes on an imported ticket."""


@dataclass(frozen=True, slots=True)
class PulledTicket:
    ticket: Ticket
    remote_id: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PullStored:
    new: int
    updated: int
    new_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HelpdeskState:
    """What the TUI and `sync` show of one helpdesk."""

    helpdesk: str
    last_pull_at: datetime | None
    tickets: int
    pending: int
    failed: int
    conflicts: int
    done: int
    last_error: str | None

    def line(self) -> str:
        when = self.last_pull_at.strftime("%H:%M UTC") if self.last_pull_at else "never"
        text = f"{self.helpdesk}: pulled {when}, {self.pending} pending"
        if self.failed:
            text += f", {self.failed} failed"
        if self.conflicts:
            text += f", {self.conflicts} conflicts"
        return text


@dataclass(frozen=True, slots=True)
class TicketLink:
    """A ticket's place in its helpdesk, for the detail pane."""

    helpdesk: str
    remote_id: int
    push_state: str | None
    push_label: str | None
    push_error: str | None

    def line(self) -> str:
        text = f"{self.helpdesk} #{self.remote_id}"
        if self.push_state is None:
            return text + " · not pushed"
        text += f" · push {self.push_state} ({self.push_label})"
        return text + (f": {self.push_error}" if self.push_error else "")


def _newer(new: datetime, old: str) -> bool:
    try:
        return new > datetime.fromisoformat(old)
    except ValueError:
        return True


class HelpdeskMixin(StoreBase):
    """Cursors, links and states of `[helpdesk.NAME]` syncs."""

    def pull_cursor(self, helpdesk: str) -> str | None:
        rows = self._read("SELECT cursor FROM helpdesk_cursors WHERE helpdesk = ?", (helpdesk,))
        return rows[0]["cursor"] if rows else None

    def store_pull_page(
        self, helpdesk: str, tickets: Sequence[PulledTicket], cursor: str | None
    ) -> PullStored:
        """Import one page's tickets and move the cursor past them, atomically."""
        now = iso(utcnow())
        new: list[str] = []
        updated = 0
        with self._write() as conn:
            for pulled in tickets:
                t = pulled.ticket
                stamp = iso(pulled.updated_at)
                found = fetch_rows(
                    conn,
                    "SELECT h.ticket_id, h.remote_updated_at, t.meta FROM helpdesk_tickets h"
                    " JOIN tickets t ON t.id = h.ticket_id"
                    " WHERE h.helpdesk = ? AND h.remote_id = ?",
                    (helpdesk, pulled.remote_id),
                )
                if found:
                    row = found[0]
                    if not _newer(pulled.updated_at, row["remote_updated_at"]):
                        continue
                    meta = json.loads(row["meta"] or "{}")
                    meta.update({k: t.meta.get(k) for k in HELPDESK_META_KEYS})
                    conn.execute(
                        "UPDATE tickets SET meta = ? WHERE id = ?",
                        (json.dumps(meta, ensure_ascii=False, default=str), row["ticket_id"]),
                    )
                    conn.execute(
                        "UPDATE helpdesk_tickets SET remote_updated_at = ? WHERE ticket_id = ?",
                        (stamp, row["ticket_id"]),
                    )
                    updated += 1
                    continue
                cur = conn.execute(
                    "INSERT OR IGNORE INTO tickets (id, subject, text, customer, channel,"
                    " created_at, received_at, meta, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        t.id,
                        t.subject,
                        t.text,
                        t.customer,
                        t.channel,
                        iso(t.created_at),
                        now,
                        json.dumps(t.meta, ensure_ascii=False, default=str),
                        f"helpdesk:{helpdesk}",
                    ),
                )
                conn.execute(
                    "INSERT OR IGNORE INTO helpdesk_tickets VALUES (?, ?, ?, ?)",
                    (t.id, helpdesk, pulled.remote_id, stamp),
                )
                if cur.rowcount:
                    new.append(t.id)
            conn.execute(
                "INSERT INTO helpdesk_cursors (helpdesk, cursor, last_pull_at, last_error)"
                " VALUES (?, ?, ?, NULL) ON CONFLICT (helpdesk) DO UPDATE SET"
                " cursor = coalesce(excluded.cursor, helpdesk_cursors.cursor),"
                " last_pull_at = excluded.last_pull_at, last_error = NULL",
                (helpdesk, cursor, now),
            )
        return PullStored(len(new), updated, tuple(new))

    def record_pull_error(self, helpdesk: str, error: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO helpdesk_cursors (helpdesk, last_error) VALUES (?, ?)"
                " ON CONFLICT (helpdesk) DO UPDATE SET last_error = excluded.last_error",
                (helpdesk, error[:500]),
            )

    def unrouted_helpdesk_tickets(self, helpdesk: str, *, limit: int = 500) -> list[str]:
        rows = self._read(
            "SELECT t.id FROM helpdesk_tickets h JOIN tickets t ON t.id = h.ticket_id"
            " WHERE h.helpdesk = ? AND t.decision_id IS NULL ORDER BY t.seq LIMIT ?",
            (helpdesk, limit),
        )
        return [r["id"] for r in rows]

    def helpdesk_ticket_id(self, helpdesk: str, remote_id: int) -> str | None:
        rows = self._read(
            "SELECT ticket_id FROM helpdesk_tickets WHERE helpdesk = ? AND remote_id = ?",
            (helpdesk, remote_id),
        )
        return rows[0]["ticket_id"] if rows else None

    def helpdesk_states(self, names: Sequence[str] | None = None) -> list[HelpdeskState]:
        """Each helpdesk's last pull and push counts: the configured ones, or all known."""
        cursors = {r["helpdesk"]: r for r in self._read("SELECT * FROM helpdesk_cursors")}
        counts: dict[str, dict[str, int]] = {}
        for row in self._read(
            "SELECT helpdesk, state, count(*) AS n FROM helpdesk_pushes GROUP BY 1, 2"
        ):
            counts.setdefault(row["helpdesk"], {})[row["state"]] = row["n"]
        tickets = {
            r["helpdesk"]: r["n"]
            for r in self._read("SELECT helpdesk, count(*) AS n FROM helpdesk_tickets GROUP BY 1")
        }
        wanted = list(names) if names is not None else sorted({*cursors, *counts, *tickets})
        out = []
        for name in wanted:
            c = counts.get(name, {})
            cur = cursors.get(name)
            pulled = cur["last_pull_at"] if cur is not None else None
            out.append(
                HelpdeskState(
                    name,
                    datetime.fromisoformat(pulled) if pulled else None,
                    tickets.get(name, 0),
                    c.get("pending", 0) + c.get("sending", 0),
                    c.get("failed", 0),
                    c.get("conflict", 0),
                    c.get("done", 0),
                    cur["last_error"] if cur is not None else None,
                )
            )
        return out

    def ticket_link(self, ticket_id: str) -> TicketLink | None:
        rows = self._read(
            "SELECT h.helpdesk, h.remote_id, p.state, p.label, p.error FROM helpdesk_tickets h"
            " LEFT JOIN helpdesk_pushes p ON p.id = (SELECT max(id) FROM helpdesk_pushes"
            " WHERE ticket_id = h.ticket_id AND state != 'superseded')"
            " WHERE h.ticket_id = ?",
            (ticket_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return TicketLink(r["helpdesk"], r["remote_id"], r["state"], r["label"], r["error"])
