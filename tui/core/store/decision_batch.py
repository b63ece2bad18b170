"""A batch of decisions written to SQLite in a handful of statements, whatever its size.

`DecisionsMixin.record_decisions` wrote four statements a decision (the decision, a read of
the ticket's state, its latest-decision row, the ticket row). Each statement is a step into
SQLite, and `sqlite3` gives the GIL away around every step: from the routing's writer
thread, each step was a hand-over with the event loop's thread, which cost more than the
writes themselves (benchmarks/RESULTS.md §1 "Whole runs", round five). Here a batch is one
read of every ticket's state, multi-row INSERTs and one UPDATE ... FROM of fixed chunk sizes
(so the few statement texts stay in `sqlite3`'s cache), and one DELETE of the claims: about
a dozen steps for 64 decisions instead of some 300, with the same rows and aggregates as the
row-by-row path, which PostgreSQL (its SQL translation does not cover these forms) and an
SQLite without the JSON functions keep.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from tui.core.models import Decision

CHUNKS = (64, 16, 4, 1)
"""Rows per multi-row statement: a batch is cut into these sizes, largest first, so that at
most a dozen statement texts exist (64 rows of 27 values stay under SQLite's variable cap)."""

COLUMNS = (
    "id, ticket_id, run_id, backend, backend_type, model, prompt_version, label, confidence,"
    " confidence_source, reason, total_ms, ttft_ms, server_load_ms, server_prompt_ms,"
    " server_gen_ms, input_tokens, output_tokens, cached_input_tokens, tokens_estimated,"
    " cost_usd, counterfactual_cost_usd, error_class, error_message, raw_output, stages,"
    " created_at"
)

_INSERT = "INSERT INTO decisions (" + COLUMNS + ") VALUES {rows}"
_LATEST = (
    "INSERT INTO latest_decisions (ticket_id, backend, decision_id, label) VALUES {rows}"
    " ON CONFLICT (ticket_id, backend) DO UPDATE"
    " SET decision_id = excluded.decision_id, label = excluded.label"
)
_TICKETS = (
    "UPDATE tickets SET decision_id = v.column2, predicted_label = v.column3,"
    " confidence = v.column4, error_class = v.column5, disagreement = v.column6"
    " FROM (VALUES {rows}) AS v WHERE tickets.id = v.column1"
)
_TAKEN = (
    "SELECT json_group_array(json_array(d.run_id, d.ticket_id)) FROM json_each(?) AS p"
    " JOIN decisions d ON d.run_id = json_extract(p.value, '$[0]')"
    " AND d.ticket_id = json_extract(p.value, '$[1]')"
)
"""The (run, ticket) pairs of the batch that already have a decision: one row, one step."""
_STATE = (
    "SELECT json_group_array(json_array(t.id, t.label, l.backend, l.label))"
    " FROM json_each(?) AS p JOIN tickets t ON t.id = p.value"
    " LEFT JOIN latest_decisions l ON l.ticket_id = t.id"
)
"""Each ticket's agent label and latest label per backend, as one JSON row (a row per ticket
would be a step, and a GIL hand-over, per ticket)."""
_RELEASE = "DELETE FROM claims WHERE owner = ? AND ticket_id IN (SELECT value FROM json_each(?))"

_sql: dict[tuple[str, int, int], str] = {}


def _statement(template: str, width: int, size: int) -> str:
    key = (template, width, size)
    text = _sql.get(key)
    if text is None:
        row = "(" + ", ".join("?" * width) + ")"
        text = _sql[key] = template.format(rows=", ".join([row] * size))
    return text


def _chunks(rows: Sequence[tuple[Any, ...]]) -> Iterator[tuple[int, list[Any]]]:
    """(size, flat parameters) of consecutive chunks of `rows`, in order, sizes from CHUNKS."""
    start = 0
    for size in CHUNKS:
        while len(rows) - start >= size:
            yield size, [value for row in rows[start : start + size] for value in row]
            start += size


def write_rows(conn: sqlite3.Connection, template: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Run a `{rows}` statement over `rows` in chunks (an empty list runs nothing)."""
    if not rows:
        return
    width = len(rows[0])
    for size, params in _chunks(rows):
        conn.execute(_statement(template, width, size), params)


def supports_batches(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite has what the batched path uses: the JSON functions (built in by
    default since 3.38, optional before) and UPDATE ... FROM (3.33)."""
    if sqlite3.sqlite_version_info < (3, 33, 0):
        return False
    try:
        conn.execute("SELECT json_group_array(json_array(value)) FROM json_each('[1]')")
    except sqlite3.OperationalError:
        return False
    return True


class BatchState:
    """What the batch's decisions need to know before they are written, read in two steps."""

    def __init__(self, conn: sqlite3.Connection, decisions: Sequence[Decision]) -> None:
        pairs = list(dict.fromkeys((d.run_id, d.ticket_id) for d in decisions))
        found = conn.execute(_TAKEN, (json.dumps(pairs),)).fetchone()[0]
        self.taken: set[tuple[str, str]] = {(run, ticket) for run, ticket in json.loads(found)}
        """(run, ticket) pairs with a decision: stored ones, then those of this batch."""
        tickets = list(dict.fromkeys(d.ticket_id for d in decisions))
        state = conn.execute(_STATE, (json.dumps(tickets),)).fetchone()[0]
        self.truth: dict[str, str | None] = {}
        """Each ticket's agent label (a ticket not stored is absent: its INSERT fails)."""
        self.latest: dict[str, dict[str, str | None]] = {}
        """Each ticket's latest label per backend, moved on as the batch's decisions go."""
        for ticket_id, truth, backend, label in json.loads(state):
            self.truth[ticket_id] = truth
            known = self.latest.setdefault(ticket_id, {})
            if backend is not None:
                known[backend] = label
        self.next_id = int(conn.execute("SELECT coalesce(max(id), 0) FROM decisions").fetchone()[0])
        """The last decision id given (this transaction holds SQLite's write lock)."""


def decision_row(decision_id: int, d: Decision, created: str) -> tuple[Any, ...]:
    """The `decisions` row of one decision, in `COLUMNS` order."""
    return (
        decision_id,
        d.ticket_id,
        d.run_id,
        d.backend,
        d.backend_type,
        d.model,
        d.prompt_version,
        d.label,
        d.confidence,
        d.confidence_source,
        d.reason,
        d.total_ms,
        d.ttft_ms,
        d.server_load_ms,
        d.server_prompt_ms,
        d.server_gen_ms,
        d.input_tokens,
        d.output_tokens,
        d.cached_input_tokens,
        int(d.tokens_estimated),
        d.cost_usd,
        d.counterfactual_cost_usd,
        d.error_class,
        d.error_message,
        d.raw_output,
        json.dumps([s.model_dump() for s in d.stages]) if d.stages else "[]",
        created,
    )


def agreement_change(
    agreement: Counter[tuple[str, str, str]],
    truth: str | None,
    previous: str | None,
    d: Decision,
) -> None:
    """Move the agreement counts from the backend's previous prediction to this one."""
    if truth is None:
        return
    if previous is not None:
        agreement[(d.backend, previous, truth)] -= 1
    if d.label is not None:
        agreement[(d.backend, d.label, truth)] += 1


def write_batch(
    conn: sqlite3.Connection,
    inserted: list[tuple[Any, ...]],
    latest: dict[tuple[str, str], tuple[Any, ...]],
    tickets: dict[str, tuple[Any, ...]],
) -> None:
    """The batch's decision rows, latest-decision rows and ticket rows, in that order (the
    foreign keys of the latter two point at decisions and tickets)."""
    write_rows(conn, _INSERT, inserted)
    write_rows(conn, _LATEST, list(latest.values()))
    write_rows(conn, _TICKETS, list(tickets.values()))


def release_claims(conn: sqlite3.Connection, owner: str, ticket_ids: Sequence[str]) -> None:
    """Delete `owner`'s claims on these tickets in one statement."""
    conn.execute(_RELEASE, (owner, json.dumps(list(dict.fromkeys(ticket_ids)))))
