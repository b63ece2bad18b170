"""The inbox: keyset pages of tickets under a filter, newest (or least sure) first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal

from tui.core.models import InboxRow, utcnow
from tui.core.store.connection import Row, StoreBase
from tui.core.store.errors import StoreError
from tui.core.store.values import from_iso

InboxFilter = Literal["all", "unlabelled", "low_confidence", "disagreement", "errors", "unrouted"]
INBOX_FILTERS: tuple[InboxFilter, ...] = (
    "all",
    "unlabelled",
    "low_confidence",
    "disagreement",
    "errors",
    "unrouted",
)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Keyset position in an inbox ordering: the last row's sort key."""

    seq: int
    confidence: float | None = None


def _now() -> str:
    """Now as the claims stamp it (UTC, microseconds), so text order is time order."""
    return utcnow().astimezone(UTC).isoformat(timespec="microseconds")


class InboxMixin(StoreBase):
    """Inbox pages, counts and single rows."""

    _INBOX_SELECT = (
        "SELECT t.seq, t.id AS ticket_id, t.received_at, t.subject,"
        " substr(t.text, 1, 400) AS text, t.label, t.label_source, t.predicted_label,"
        " t.confidence, t.error_class, t.disagreement, d.backend, d.total_ms, d.cost_usd,"
        " (SELECT a.agent FROM agent_leases a WHERE a.ticket_id = t.id"
        "  AND a.expires_at > ?) AS held_by"
        " FROM tickets t LEFT JOIN decisions d ON d.id = t.decision_id"
    )
    """One row per ticket; its one parameter is now (`_now`), for the live leases."""

    _FILTER_WHERE: dict[str, str] = {
        "all": "TRUE",
        "unlabelled": "t.label IS NULL",
        "low_confidence": "t.label IS NULL AND t.confidence IS NOT NULL",
        "disagreement": "t.disagreement = 1",
        "errors": "t.error_class IS NOT NULL",
        "unrouted": "t.decision_id IS NULL",
    }

    def inbox_page(
        self,
        flt: InboxFilter = "all",
        *,
        after: Cursor | None = None,
        before: Cursor | None = None,
        limit: int = 100,
    ) -> list[InboxRow]:
        """One page of the inbox by keyset.

        Most filters list newest first (seq descending); `low_confidence` lists the least
        sure first. `after` continues down the list from a row, `before` goes back up;
        rows always come back in display order.
        """
        if flt not in self._FILTER_WHERE:
            raise StoreError(f"unknown inbox filter {flt!r}")
        where = [self._FILTER_WHERE[flt]]
        params: list[Any] = [_now()]
        by_confidence = flt == "low_confidence"
        if by_confidence:
            order, reverse = "t.confidence ASC, t.seq ASC", "t.confidence DESC, t.seq DESC"
            if after is not None:
                where.append("(t.confidence, t.seq) > (?, ?)")
                params += [after.confidence, after.seq]
            if before is not None:
                where.append("(t.confidence, t.seq) < (?, ?)")
                params += [before.confidence, before.seq]
        else:
            order, reverse = "t.seq DESC", "t.seq ASC"
            if after is not None:
                where.append("t.seq < ?")
                params.append(after.seq)
            if before is not None:
                where.append("t.seq > ?")
                params.append(before.seq)
        going_up = before is not None and after is None
        sql = (
            f"{self._INBOX_SELECT} WHERE {' AND '.join(where)}"
            f" ORDER BY {reverse if going_up else order} LIMIT ?"
        )
        params.append(limit)
        rows = [self._inbox_row(r) for r in self._read(sql, params)]
        return rows[::-1] if going_up else rows

    @staticmethod
    def _inbox_row(row: Row) -> InboxRow:
        data = dict(row)
        data["received_at"] = from_iso(data["received_at"])
        data["disagreement"] = bool(data["disagreement"])
        return InboxRow(**data)

    def inbox_row(self, ticket_id: str) -> InboxRow | None:
        rows = self._read(f"{self._INBOX_SELECT} WHERE t.id = ?", (_now(), ticket_id))
        return self._inbox_row(rows[0]) if rows else None

    def inbox_count(self, flt: InboxFilter = "all") -> int:
        where = self._FILTER_WHERE[flt]
        return int(self._read(f"SELECT count(*) FROM tickets t WHERE {where}")[0][0])

    @staticmethod
    def cursor_of(row: InboxRow) -> Cursor:
        return Cursor(seq=row.seq, confidence=row.confidence)
