"""Agent labels: label events and their undo, the labels in use and those no longer usable,
and the labelled examples that training and exports read (which skip unusable labels)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC

from tui.core.models import (
    STORED,
    LabelEvent,
    LabelSource,
    check_label_name,
    label_problem,
    utcnow,
)
from tui.core.store.claims import owner_alive
from tui.core.store.connection import StoreBase
from tui.core.store.decisions import relabel
from tui.core.store.errors import StoreError
from tui.core.store.values import iso, quoted

DISTINCT_LABELS = """WITH RECURSIVE found(label) AS (
    SELECT (SELECT label FROM tickets WHERE label IS NOT NULL ORDER BY label LIMIT 1)
    UNION ALL
    SELECT (SELECT t.label FROM tickets t WHERE t.label > found.label ORDER BY t.label LIMIT 1)
    FROM found WHERE found.label IS NOT NULL
)
SELECT label FROM found WHERE label IS NOT NULL"""
"""The distinct current labels in order, one seek of `ix_tickets_label` each (the "loose index
scan" of the PostgreSQL wiki); the last step finds none and ends the recursion."""


def describe_unusable_labels(found: Mapping[str, tuple[str, int]]) -> str:
    """One warning line for `Store.unusable_labels()`: each label escaped, with its reason."""
    n = sum(count for _, count in found.values())
    shown = "; ".join(
        f"{quoted(label)} ({reason}, {count} ticket{'s' if count != 1 else ''})"
        for label, (reason, count) in sorted(found.items())[:10]
    )
    more = f"; and {len(found) - 10} more" if len(found) > 10 else ""
    return (
        f"skipping {n} ticket{'s' if n != 1 else ''} whose label is unusable"
        " (written by an older version):"
        f" {shown}{more}; relabel them with `triagedesk label ID LABEL`"
    )


class LabelsMixin(StoreBase):
    """Writing and undoing agent labels, and the readers of current labels."""

    def add_label(
        self,
        ticket_id: str,
        label: str,
        *,
        agent: str = "agent",
        source: LabelSource = "cli",
        desk: str | None = None,
    ) -> LabelEvent:
        """Record an agent's label as a new event and make it the ticket's current label.

        With `desk` (a TUI's lease owner), a ticket another live desk holds is refused: two
        agents never work one ticket (team mode). The label ends any lease on the ticket.

        Raises:
            StoreError: An unknown ticket, or a label `check_label_name` refuses (checked
                here so that every door, CLI and TUI alike, gets the same rule).
        """
        try:
            checked = check_label_name(label)
        except ValueError as exc:
            raise StoreError(f"label {quoted(label)}: {exc}") from None
        if checked != label:
            raise StoreError(f"label {quoted(label)}: label has surrounding whitespace")
        with self._write() as conn:
            found = conn.execute("SELECT label FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
            if found is None:
                raise StoreError(f"no ticket with id {ticket_id!r}")
            if desk is not None:
                held = conn.execute(
                    "SELECT agent, owner FROM agent_leases WHERE ticket_id = ? AND owner != ?"
                    " AND expires_at > ?",
                    (ticket_id, desk, utcnow().astimezone(UTC).isoformat(timespec="microseconds")),
                ).fetchone()
                if held is not None and owner_alive(held[1]):
                    raise StoreError(f"{ticket_id} is being worked on by {held[0]}")
            relabel(conn, ticket_id, found[0], label)
            event = LabelEvent(ticket_id=ticket_id, label=label, agent=agent, source=source)
            cur = conn.execute(
                "INSERT INTO label_events (ticket_id, label, agent, source, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (ticket_id, label, agent, source, iso(event.created_at)),
            )
            conn.execute(
                "UPDATE tickets SET label = ?, label_source = ? WHERE id = ?",
                (label, source, ticket_id),
            )
            # a labelled ticket is done: whoever leased it to work on it holds it no longer
            conn.execute("DELETE FROM agent_leases WHERE ticket_id = ?", (ticket_id,))
            return event.model_copy(update={"id": cur.lastrowid})

    def undo_last_label(self, agent: str) -> LabelEvent | None:
        """Undo this agent's latest label not yet undone, by appending an `undo` event that
        restores the ticket's previous label. Returns the undo event, or None."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT id, ticket_id FROM label_events e WHERE agent = ? AND source != 'undo'"
                " AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id)"
                " ORDER BY id DESC LIMIT 1",
                (agent,),
            ).fetchone()
            if row is None:
                return None
            undone_id, ticket_id = row
            previous = conn.execute(
                "SELECT label, source FROM label_events WHERE ticket_id = ? AND id < ?"
                " AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = label_events.id)"
                " AND source != 'undo' ORDER BY id DESC LIMIT 1",
                (ticket_id, undone_id),
            ).fetchone()
            label, source = previous if previous else (None, None)
            current = conn.execute(
                "SELECT label FROM tickets WHERE id = ?", (ticket_id,)
            ).fetchone()
            relabel(conn, ticket_id, current[0], label)
            event = LabelEvent.model_validate(  # the restored label is a stored row
                {"ticket_id": ticket_id, "label": label, "agent": agent, "source": "undo"},
                context=STORED,
            )
            cur = conn.execute(
                "INSERT INTO label_events (ticket_id, label, agent, source, created_at, undoes)"
                " VALUES (?, ?, ?, 'undo', ?, ?)",
                (ticket_id, label, agent, iso(event.created_at), undone_id),
            )
            conn.execute(
                "UPDATE tickets SET label = ?, label_source = ? WHERE id = ?",
                (label, source, ticket_id),
            )
            return event.model_copy(update={"id": cur.lastrowid})

    def label_history(self, ticket_id: str) -> list[LabelEvent]:
        rows = self._read(
            "SELECT id, ticket_id, label, agent, source, created_at FROM label_events"
            " WHERE ticket_id = ? ORDER BY id",
            (ticket_id,),
        )
        return [LabelEvent.model_validate(dict(r), context=STORED) for r in rows]

    def label_event_count(self) -> int:
        return int(self._read("SELECT count(*) FROM label_events")[0][0])

    def labelled_examples(self) -> list[tuple[str, str]]:
        """(text, label) of every ticket with a current agent label, oldest first.

        Tickets whose label is unusable (`unusable_labels`) are left out: a model must not
        learn a label that can never be a taxonomy's."""
        bad = self.unusable_labels()
        rows = self._read("SELECT text, label FROM tickets WHERE label IS NOT NULL ORDER BY seq")
        return [(r[0], r[1]) for r in rows if r[1] not in bad]

    def export_rows(self, *, include_predictions: bool = False) -> list[tuple[str, str, str, str]]:
        """(ticket id, text, label, label source) of agent-labelled tickets, oldest first.

        With `include_predictions`, unlabelled tickets add their latest successful prediction
        with source `prediction`; by default a model never trains on its own guesses.
        """
        sql = (
            "SELECT seq, id, text, label, label_source FROM tickets WHERE label IS NOT NULL"
            " AND label_source IN ('accept', 'correct', 'cli', 'import')"
        )
        if include_predictions:
            sql += (
                " UNION ALL SELECT seq, id, text, predicted_label, 'prediction' FROM tickets"
                " WHERE label IS NULL AND predicted_label IS NOT NULL AND error_class IS NULL"
            )
        bad = self.unusable_labels()
        rows = self._read(sql + " ORDER BY seq")
        return [(r[1], r[2], r[3], r[4]) for r in rows if r[3] not in bad]

    def known_labels(self) -> list[str]:
        """The labels tickets carry now, valid ones only: the taxonomy when the config has no
        `[labels]`.

        Current labels, not every label ever used (label_events): a label corrected away, or
        one an attacker's import once set, must not stay in every LLM request's system prompt.
        """
        return [label for label in self.current_labels() if label_problem(label) is None]

    def current_labels(self) -> list[str]:
        """Every distinct label tickets carry now, sorted, unusable ones included.

        A skip scan of `ix_tickets_label`: one index seek per distinct label (a recursive
        query, on both engines, as neither planner skips through an index by itself), so the
        cost follows the number of labels, not of tickets. `SELECT DISTINCT label` read all
        the labelled tickets' index entries: 14-140 ms at a million tickets with this index,
        0.3-0.5 s before it, on the TUI's first frame (`known_labels`).
        """
        rows = self._read(DISTINCT_LABELS)
        return [r[0] for r in rows]

    def unusable_labels(self) -> dict[str, tuple[str, int]]:
        """Current labels that today's rules refuse (empty, control characters, too long),
        as older versions could write them: label -> (reason, number of tickets).

        The readers that feed taxonomies, training and exports skip these; the commands warn
        with `describe_unusable_labels` so that the agent can relabel the tickets."""
        found: dict[str, tuple[str, int]] = {}
        for label in self.current_labels():
            problem = label_problem(label)
            if problem is not None:  # rare: only these are counted, each an index range
                n = self._read("SELECT count(*) FROM tickets WHERE label = ?", (label,))[0][0]
                found[label] = (problem, int(n))
        return found
