"""Decisions: storing a batch with each ticket's state and the statistics aggregates kept
up to date in the same transaction, and the decision readers."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tui.core.models import Decision, StageResult
from tui.core.store import decision_batch
from tui.core.store.connection import Conn, Row, StoreBase
from tui.core.store.latency import latency_bucket
from tui.core.store.pg import reconnecting
from tui.core.store.values import iso


def add_agreement(conn: Conn, agreement: Counter[tuple[str, str, str]]) -> None:
    """Add (backend, predicted, truth) count changes to `label_agreement`, in the caller's
    transaction: decisions, labels and imports all move these counts."""
    conn.executemany(
        "INSERT INTO label_agreement VALUES (?, ?, ?, ?) ON CONFLICT (backend, predicted,"
        " truth) DO UPDATE SET n = label_agreement.n + excluded.n",
        [(*key, n) for key, n in agreement.items() if n],
    )


def relabel(conn: Conn, ticket_id: str, old: str | None, new: str | None) -> None:
    """Move the ticket's latest predictions from the old agent label to the new one in
    the agreement counts, so accuracy follows corrections and undos."""
    if old == new:
        return
    change: Counter[tuple[str, str, str]] = Counter()
    for backend, predicted in conn.execute(
        "SELECT backend, label FROM latest_decisions WHERE ticket_id = ? AND label IS NOT NULL",
        (ticket_id,),
    ):
        if old is not None:
            change[(backend, predicted, old)] -= 1
        if new is not None:
            change[(backend, predicted, new)] += 1
    add_agreement(conn, change)


class DecisionsMixin(StoreBase):
    """Recording decisions and reading them back."""

    @reconnecting
    def record_decisions(
        self, decisions: Sequence[Decision], *, owner: str | None = None
    ) -> list[Decision]:
        """Store a batch of decisions in one transaction and update each ticket's state and
        the statistics aggregates; with `owner`, release its claims on these tickets in the
        same transaction, so a ticket is claimed until the moment its decision is stored.

        A second decision for the same ticket in the same run is not stored (a resumed run
        never duplicates), but its call was made and paid: it goes into `duplicate_calls` and
        its cost into the cost totals, which always count every call. Returns the decisions
        that were stored, with their ids.
        """
        totals: dict[str, list[Any]] = {}
        agreement: Counter[tuple[str, str, str]] = Counter()
        histogram: Counter[tuple[str, int]] = Counter()
        hourly: dict[tuple[str, str], list[float]] = {}
        with self._write() as conn:
            if self._pg is None and self._batches_supported():
                assert isinstance(conn, sqlite3.Connection)
                stored = self._record_batch(conn, decisions, totals, agreement, histogram, hourly)
                if owner is not None:
                    decision_batch.release_claims(conn, owner, [d.ticket_id for d in decisions])
            else:
                stored = self._record_rows(conn, decisions, totals, agreement, histogram, hourly)
                if owner is not None:
                    conn.executemany(
                        "DELETE FROM claims WHERE owner = ? AND ticket_id = ?",
                        [(owner, d.ticket_id) for d in decisions],
                    )
            self._write_aggregates(conn, totals, agreement, histogram, hourly)
        return stored

    def _batches_supported(self) -> bool:
        """Whether this SQLite takes the batched statements (asked once per connection)."""
        known = self.__dict__.get("_batches_ok")
        if known is None:
            known = self.__dict__["_batches_ok"] = decision_batch.supports_batches(self.conn)
        return bool(known)

    def _record_batch(
        self,
        conn: sqlite3.Connection,
        decisions: Sequence[Decision],
        totals: dict[str, list[Any]],
        agreement: Counter[tuple[str, str, str]],
        histogram: Counter[tuple[str, int]],
        hourly: dict[tuple[str, str], list[float]],
    ) -> list[Decision]:
        """SQLite: the batch in a dozen statements (`decision_batch`), the same rows as
        `_record_rows` writes one decision at a time."""
        state = decision_batch.BatchState(conn, decisions)
        stored: list[Decision] = []
        inserted: list[tuple[Any, ...]] = []
        latest_rows: dict[tuple[str, str], tuple[Any, ...]] = {}
        ticket_rows: dict[str, tuple[Any, ...]] = {}
        for d in decisions:
            created = iso(d.created_at) or ""
            pair = (d.run_id, d.ticket_id)
            if pair in state.taken:
                self._duplicate_call(conn, totals, hourly, d, created)
                continue
            state.taken.add(pair)
            state.next_id += 1
            decision_id = state.next_id
            inserted.append(decision_batch.decision_row(decision_id, d, created))
            latest = state.latest.setdefault(d.ticket_id, {})
            decision_batch.agreement_change(
                agreement, state.truth.get(d.ticket_id), latest.get(d.backend), d
            )
            latest[d.backend] = d.label
            disagreement = int(len({label for label in latest.values() if label}) > 1)
            latest_rows[(d.ticket_id, d.backend)] = (d.ticket_id, d.backend, decision_id, d.label)
            ticket_rows[d.ticket_id] = (
                d.ticket_id,
                decision_id,
                d.label,
                d.confidence,
                d.error_class,
                disagreement,
            )
            self._tally(totals, histogram, hourly, d, created)
            stored.append(d.model_copy(update={"id": decision_id}))
        decision_batch.write_batch(conn, inserted, latest_rows, ticket_rows)
        return stored

    def _record_rows(
        self,
        conn: Conn,
        decisions: Sequence[Decision],
        totals: dict[str, list[Any]],
        agreement: Counter[tuple[str, str, str]],
        histogram: Counter[tuple[str, int]],
        hourly: dict[tuple[str, str], list[float]],
    ) -> list[Decision]:
        """One decision at a time, four statements each: PostgreSQL's path (and an SQLite
        without the JSON functions)."""
        stored: list[Decision] = []
        for d in decisions:
            created = iso(d.created_at) or ""
            cur = conn.execute(
                "INSERT OR IGNORE INTO decisions (ticket_id, run_id, backend, backend_type,"
                " model, prompt_version, label, confidence, confidence_source, reason,"
                " total_ms, ttft_ms, server_load_ms, server_prompt_ms, server_gen_ms,"
                " input_tokens, output_tokens, cached_input_tokens, tokens_estimated, cost_usd,"
                " counterfactual_cost_usd, error_class, error_message, raw_output, stages,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?, ?, ?, ?, ?, ?, ?)",
                decision_batch.decision_row(0, d, created)[1:],  # the id is SQLite's here
            )
            if cur.rowcount != 1:
                self._duplicate_call(conn, totals, hourly, d, created)
                continue
            decision_id = cur.lastrowid
            rows = conn.execute(
                "SELECT t.label, l.backend, l.label FROM tickets t LEFT JOIN latest_decisions l"
                " ON l.ticket_id = t.id WHERE t.id = ?",
                (d.ticket_id,),
            ).fetchall()
            truth = rows[0][0] if rows else None
            latest = {backend: label for _, backend, label in rows if backend is not None}
            if truth is not None:
                previous = latest.get(d.backend)
                if previous is not None:
                    agreement[(d.backend, previous, truth)] -= 1
                if d.label is not None:
                    agreement[(d.backend, d.label, truth)] += 1
            latest[d.backend] = d.label
            disagreement = len({label for label in latest.values() if label}) > 1
            conn.execute(
                "INSERT INTO latest_decisions (ticket_id, backend, decision_id, label)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (ticket_id, backend) DO UPDATE"
                " SET decision_id = excluded.decision_id, label = excluded.label",
                (d.ticket_id, d.backend, decision_id, d.label),
            )
            conn.execute(
                "UPDATE tickets SET decision_id = ?, predicted_label = ?, confidence = ?,"
                " error_class = ?, disagreement = ? WHERE id = ?",
                (
                    decision_id,
                    d.label,
                    d.confidence,
                    d.error_class,
                    int(disagreement),
                    d.ticket_id,
                ),
            )
            self._tally(totals, histogram, hourly, d, created)
            stored.append(d.model_copy(update={"id": decision_id}))
        return stored

    @staticmethod
    def _duplicate_call(
        conn: Conn,
        totals: dict[str, list[Any]],
        hourly: dict[tuple[str, str], list[float]],
        d: Decision,
        created: str,
    ) -> None:
        """Book a call whose decision the run already had: in the ledger, and its cost in the
        totals (not in the decision counts: no decision was added)."""
        conn.execute(
            "INSERT INTO duplicate_calls (ticket_id, run_id, backend, cost_usd, error_class,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (d.ticket_id, d.run_id, d.backend, d.cost_usd, d.error_class, created),
        )
        row = totals.setdefault(d.backend, [d.backend_type, 0, 0, 0.0, 0, 0, 0, 0.0, 0])
        row[3] += d.cost_usd or 0.0
        hour = hourly.setdefault((created[:13], d.backend), [0.0, 0])
        hour[0] += d.cost_usd or 0.0

    @staticmethod
    def _tally(
        totals: dict[str, list[Any]],
        histogram: Counter[tuple[str, int]],
        hourly: dict[tuple[str, str], list[float]],
        d: Decision,
        created: str,
    ) -> None:
        row = totals.setdefault(d.backend, [d.backend_type, 0, 0, 0.0, 0, 0, 0, 0.0, 0])
        row[1] += 1
        row[3] += d.cost_usd or 0.0
        if d.error_class is not None:
            row[2] += 1
        else:
            if d.input_tokens is not None:
                row[4] += d.input_tokens
                row[5] += d.output_tokens or 0
                row[6] += 1
            if d.total_ms is not None:
                histogram[(d.backend, latency_bucket(d.total_ms))] += 1
        if d.counterfactual_cost_usd is not None:
            row[7] += d.counterfactual_cost_usd
            row[8] += 1
        hour = hourly.setdefault((created[:13], d.backend), [0.0, 0])
        hour[0] += d.cost_usd or 0.0
        hour[1] += 1

    @staticmethod
    def _write_aggregates(
        conn: Conn,
        totals: dict[str, list[Any]],
        agreement: Counter[tuple[str, str, str]],
        histogram: Counter[tuple[str, int]],
        hourly: dict[tuple[str, str], list[float]],
    ) -> None:
        conn.executemany(
            "INSERT INTO backend_totals AS b VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (backend) DO UPDATE SET n = b.n + excluded.n,"
            " errors = b.errors + excluded.errors, cost_usd = b.cost_usd + excluded.cost_usd,"
            " input_tokens = b.input_tokens + excluded.input_tokens,"
            " output_tokens = b.output_tokens + excluded.output_tokens,"
            " tokens_n = b.tokens_n + excluded.tokens_n,"
            " counterfactual_usd = b.counterfactual_usd + excluded.counterfactual_usd,"
            " counterfactual_n = b.counterfactual_n + excluded.counterfactual_n",
            [(backend, *row) for backend, row in totals.items()],
        )
        add_agreement(conn, agreement)
        conn.executemany(
            "INSERT INTO latency_histogram VALUES (?, ?, ?) ON CONFLICT (backend, bucket)"
            " DO UPDATE SET n = latency_histogram.n + excluded.n",
            [(backend, bucket, n) for (backend, bucket), n in histogram.items()],
        )
        conn.executemany(
            "INSERT INTO cost_by_hour VALUES (?, ?, ?, ?) ON CONFLICT (hour, backend)"
            " DO UPDATE SET cost_usd = cost_by_hour.cost_usd + excluded.cost_usd,"
            " n = cost_by_hour.n + excluded.n",
            [(hour, backend, v[0], v[1]) for (hour, backend), v in hourly.items()],
        )

    @staticmethod
    def _decision(row: Row) -> Decision:
        data = dict(row)
        data["stages"] = tuple(StageResult(**s) for s in json.loads(data["stages"] or "[]"))
        data["tokens_estimated"] = bool(data["tokens_estimated"])
        return Decision(**data)

    def decisions_for(self, ticket_id: str) -> list[Decision]:
        rows = self._read("SELECT * FROM decisions WHERE ticket_id = ? ORDER BY id", (ticket_id,))
        return [self._decision(r) for r in rows]

    def latest_decision(self, ticket_id: str) -> Decision | None:
        rows = self._read(
            "SELECT d.* FROM tickets t JOIN decisions d ON d.id = t.decision_id WHERE t.id = ?",
            (ticket_id,),
        )
        return self._decision(rows[0]) if rows else None

    def decision_count(self) -> int:
        return int(self._read("SELECT count(*) FROM decisions")[0][0])

    def max_decision_id(self) -> int:
        """Newest decision id, so live views fetch only what arrived after it."""
        return int(self._read("SELECT coalesce(max(id), 0) FROM decisions")[0][0])

    def recent_decisions(self, *, after_id: int = 0, limit: int = 1000) -> list[Decision]:
        """Decisions newer than `after_id` (other processes' work, for live views)."""
        rows = self._read(
            "SELECT * FROM decisions WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [self._decision(r) for r in rows]

    def decisions_in_run(self, run_id: str) -> int:
        return int(self._read("SELECT count(*) FROM decisions WHERE run_id = ?", (run_id,))[0][0])
