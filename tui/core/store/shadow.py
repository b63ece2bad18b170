"""Shadow decisions and promotions: what the `[routing] shadow` backends answered beside the
decision the agent saw, the tickets they let pass, and each `promote` with its evidence.

Kept out of `decisions` on purpose: a shadow answer is never a ticket's decision, so the
inbox, the exports and every backend statistic (all of which read `decisions` and its
aggregates) cannot count it by accident.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tui.core.models import Decision
from tui.core.store.connection import StoreBase
from tui.core.store.values import iso


@dataclass(frozen=True, slots=True)
class ShadowAnswer:
    """One shadow backend's answer (or error) for a ticket, and the live decision it shadows."""

    decision: Decision
    """The shadow's own decision: its `backend` is the shadow, never stored in `decisions`."""
    active_backend: str
    """The backend whose decision the agent saw."""
    decision_id: int
    """That decision's id in `decisions`."""


@dataclass(frozen=True, slots=True)
class ShadowPair:
    """A ticket both the shadow and the active backend were asked about: the shadow's latest
    answer and the live decision it was made beside, with the ticket's agent label."""

    ticket_id: str
    truth: str | None
    shadow_label: str | None
    shadow_model: str
    shadow_error: str | None
    shadow_ms: float | None
    shadow_cost_usd: float | None
    active_label: str | None
    active_model: str
    active_error: str | None
    active_ms: float | None
    active_cost_usd: float | None


@dataclass(frozen=True, slots=True)
class ShadowCounts:
    """How many answers a shadow stored beside one active backend, and how many it skipped."""

    routed: int = 0
    errors: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class Promotion:
    """One `promote`: `backend` became active in place of `previous_backend`."""

    id: int
    backend: str
    previous_backend: str
    agent: str
    forced: bool
    evidence: dict[str, Any]
    created_at: str


class ShadowMixin(StoreBase):
    """Writing and reading shadow answers, skips and promotions."""

    def record_shadow_answers(
        self, answers: Sequence[ShadowAnswer], skipped: Mapping[tuple[str, str], int] = {}
    ) -> int:
        """Store a batch of shadow answers and add to the skip counts, keyed by (shadow,
        active backend), in one transaction. An answer whose ticket was deleted meanwhile is
        dropped. Returns how many answers were stored."""
        stored = 0
        with self._write() as conn:
            for a in answers:
                d = a.decision
                cur = conn.execute(
                    "INSERT INTO shadow_decisions (ticket_id, run_id, shadow, backend_type, model,"
                    " active_backend, decision_id, label, confidence, total_ms, input_tokens,"
                    " output_tokens, cost_usd, error_class, error_message, created_at)"
                    " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
                    " WHERE EXISTS (SELECT 1 FROM tickets WHERE id = ?)",
                    (
                        d.ticket_id,
                        d.run_id,
                        d.backend,
                        d.backend_type,
                        d.model,
                        a.active_backend,
                        a.decision_id,
                        d.label,
                        d.confidence,
                        d.total_ms,
                        d.input_tokens,
                        d.output_tokens,
                        d.cost_usd,
                        d.error_class,
                        d.error_message,
                        iso(d.created_at) or "",
                        d.ticket_id,
                    ),
                )
                stored += cur.rowcount
            conn.executemany(
                "INSERT INTO shadow_skips VALUES (?, ?, ?) ON CONFLICT (shadow, active_backend)"
                " DO UPDATE SET n = shadow_skips.n + excluded.n",
                [(shadow, active, n) for (shadow, active), n in skipped.items() if n],
            )
        return stored

    def shadow_counts(self, shadow: str, active: str) -> ShadowCounts:
        """Answers stored, errors among them, and tickets skipped, for the pair."""
        routed, errors = self._read(
            "SELECT count(*), count(error_class) FROM shadow_decisions"
            " WHERE shadow = ? AND active_backend = ?",
            (shadow, active),
        )[0]
        row = self._read(
            "SELECT n FROM shadow_skips WHERE shadow = ? AND active_backend = ?", (shadow, active)
        )
        return ShadowCounts(int(routed), int(errors), int(row[0][0]) if row else 0)

    def shadow_pairs(self, shadow: str, active: str) -> list[ShadowPair]:
        """Per ticket, the shadow's latest answer beside `active`'s decision it shadowed, and
        the ticket's current agent label (None when unlabelled). A scan of the pair's rows
        (shadows answer a bounded share of the traffic), through its index."""
        rows = self._read(
            "SELECT s.ticket_id, t.label, s.label, s.model, s.error_class, s.total_ms,"
            " s.cost_usd, d.label, d.model, d.error_class, d.total_ms, d.cost_usd"
            " FROM (SELECT max(id) AS id FROM shadow_decisions"
            "       WHERE shadow = ? AND active_backend = ? GROUP BY ticket_id) latest"
            " JOIN shadow_decisions s ON s.id = latest.id"
            " JOIN decisions d ON d.id = s.decision_id"
            " JOIN tickets t ON t.id = s.ticket_id"
            " ORDER BY s.id",
            (shadow, active),
        )
        return [ShadowPair(*row) for row in rows]

    def record_promotion(
        self,
        *,
        backend: str,
        previous: str,
        agent: str,
        evidence: Mapping[str, Any],
        forced: bool = False,
        apply: Callable[[], object] | None = None,
    ) -> Promotion:
        """Record a promotion; `apply` (rewriting the config) runs inside the transaction,
        before it commits, so the event is stored only when the config really changed, and
        a failed rewrite leaves no event behind."""
        created = datetime.now(UTC).isoformat()
        text = json.dumps(evidence, sort_keys=True)
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO promotions (backend, previous_backend, agent, forced, evidence,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (backend, previous, agent, int(forced), text, created),
            )
            if apply is not None:
                apply()
        assert cur.lastrowid is not None
        return Promotion(cur.lastrowid, backend, previous, agent, forced, json.loads(text), created)

    def promotions(self) -> list[Promotion]:
        """Every promotion, oldest first."""
        rows = self._read(
            "SELECT id, backend, previous_backend, agent, forced, evidence, created_at"
            " FROM promotions ORDER BY id"
        )
        return [Promotion(r[0], r[1], r[2], r[3], bool(r[4]), json.loads(r[5]), r[6]) for r in rows]
