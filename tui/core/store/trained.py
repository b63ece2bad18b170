"""Training sets in the database: which tickets each trained model learnt, with which label, so
that every accuracy leaves them out (see `tui.core.training_sets` for why and the rule).

A model is recorded under the identity its decisions carry (`decisions.model`). Its examples
are matched to this database's tickets by ticket id (a model trained here) and by the hash of
each text (a model trained from a file, or the same text imported twice); tickets imported
after the model was recorded are matched when statistics are next read (`match_new_tickets`).

`Store.labels_that_count` is the one rule every comparison uses: given a model and (ticket,
label event) rows, which labels count. `excluded_agreement` gives the statistics the
(predicted, truth) counts to take out of each backend's agreement.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tui.core.models import label_problem, utcnow
from tui.core.store.connection import Conn, StoreBase
from tui.core.training_sets import TrainingSet, model_components, text_sha256

MATCH_CHUNK = 2000
"""Tickets hashed per read while matching training texts."""


@dataclass(frozen=True, slots=True)
class LabelledTicket:
    """A ticket with its current agent label and the label event that set it: a training
    example that says where it came from."""

    ticket_id: str
    text: str
    label: str
    label_event_id: int | None


BEHIND = (
    "SELECT 1 FROM trained_models"
    " WHERE matched_seq < (SELECT coalesce(max(seq), 0) FROM tickets) LIMIT 1"
)
"""Whether some model's training texts have not been matched against the newest tickets:
read first, so that the usual case takes no write lock."""


def match_new_tickets(conn: Conn) -> int:
    """Match the texts of tickets imported since each model was recorded against its training
    texts, in the caller's transaction; returns how many tickets were matched."""
    behind = conn.execute(
        "SELECT model, matched_seq FROM trained_models"
        " WHERE matched_seq < (SELECT coalesce(max(seq), 0) FROM tickets)"
    ).fetchall()
    if not behind:
        return 0
    texts: dict[str, dict[str, str]] = {model: {} for model, _ in behind}
    for model, digest, label in conn.execute(
        "SELECT model, text_sha256, label FROM trained_texts WHERE model IN"
        " (SELECT model FROM trained_models WHERE matched_seq < (SELECT coalesce(max(seq), 0)"
        " FROM tickets))"
    ):
        texts[model][digest] = label
    since = dict(behind)
    last = start = min(since.values())
    matched = 0
    while True:
        rows = conn.execute(
            "SELECT seq, id, text FROM tickets WHERE seq > ? ORDER BY seq LIMIT ?",
            (last, MATCH_CHUNK),
        ).fetchall()
        if not rows:
            break
        found: list[tuple[str, str, str]] = []
        for seq, ticket_id, text in rows:
            digest = text_sha256(text)
            for model, known in texts.items():
                label = known.get(digest)
                if label is not None and seq > since[model]:
                    found.append((model, ticket_id, label))
        matched += conn.executemany(
            "INSERT OR IGNORE INTO trained_examples (model, ticket_id, label, label_event_id)"
            " VALUES (?, ?, ?, NULL)",
            found,
        ).rowcount
        last = rows[-1][0]
    if last > start:
        conn.execute(
            "UPDATE trained_models SET matched_seq = ? WHERE matched_seq < ?", (last, last)
        )
    return matched


def excluded_agreement(conn: Conn) -> dict[str, Counter[tuple[str, str]]]:
    """Per backend, the (predicted, truth) counts of `label_agreement` that rest on labels the
    answering model trained on: its latest decision on the ticket was made by a model (or a
    cascade with a stage) that learnt the ticket with the label it carries now.

    Reads only the tickets some model trained on, so it costs what the training sets cost.
    """
    rows = conn.execute(
        "SELECT l.backend, l.ticket_id, l.label, t.label, d.model, e.model"
        " FROM trained_examples e"
        " JOIN tickets t ON t.id = e.ticket_id AND t.label = e.label"
        " JOIN latest_decisions l ON l.ticket_id = e.ticket_id AND l.label IS NOT NULL"
        " JOIN decisions d ON d.id = l.decision_id"
        " WHERE instr(d.model, e.model) > 0"
    ).fetchall()
    seen: set[tuple[str, str]] = set()
    out: dict[str, Counter[tuple[str, str]]] = {}
    for backend, ticket_id, predicted, truth, decided_by, trained in rows:
        if trained not in model_components(decided_by) or (backend, ticket_id) in seen:
            continue
        seen.add((backend, ticket_id))  # a cascade of two trained stages: left out once
        out.setdefault(backend, Counter())[(predicted, truth)] += 1
    return out


class TrainedMixin(StoreBase):
    """Recording what models trained on, and the rule that leaves those labels out."""

    def training_examples(self) -> list[LabelledTicket]:
        """Every ticket with a usable current agent label, oldest first, with the label event
        that set it: what the specialist trains on (the same tickets as
        `labelled_examples`), in a form that can be recorded."""
        rows = self._read(
            "SELECT t.id, t.text, t.label,"
            " (SELECT max(e.id) FROM label_events e WHERE e.ticket_id = t.id)"
            " FROM tickets t WHERE t.label IS NOT NULL ORDER BY t.seq"
        )
        return [LabelledTicket(r[0], r[1], r[2], r[3]) for r in rows if label_problem(r[2]) is None]

    def record_training(self, training: TrainingSet) -> int:
        """Record that `training.model` learnt these examples; returns how many tickets of
        this database they matched (by id or by text). A model already recorded is left as
        it is (its training set cannot change) and its count returned.
        """
        with self._write() as conn:
            known = conn.execute(
                "SELECT 1 FROM trained_models WHERE model = ?", (training.model,)
            ).fetchone()
            if known is None:
                conn.execute(
                    "INSERT INTO trained_models (model, kind, source, trained_at, n_examples,"
                    " recorded_at, matched_seq) VALUES (?, ?, ?, ?, ?, ?, 0)",
                    (
                        training.model,
                        training.kind,
                        training.source,
                        training.trained_at,
                        len(training.examples),
                        utcnow().isoformat(),
                    ),
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO trained_texts VALUES (?, ?, ?)",
                    [(training.model, e.text_sha256, e.label) for e in training.examples],
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO trained_examples (model, ticket_id, label,"
                    " label_event_id) SELECT ?, id, ?, ? FROM tickets WHERE id = ?",
                    [
                        (training.model, e.label, e.label_event_id, e.ticket_id)
                        for e in training.examples
                        if e.ticket_id is not None
                    ],
                )
                match_new_tickets(conn)
            return int(
                conn.execute(
                    "SELECT count(*) FROM trained_examples WHERE model = ?", (training.model,)
                ).fetchone()[0]
            )

    def is_recorded(self, model: str) -> bool:
        return bool(self._read("SELECT 1 FROM trained_models WHERE model = ?", (model,)))

    def labels_that_count(self, model: str, rows: Sequence[tuple[str, int]]) -> list[bool]:
        """For each (ticket id, label event id), whether that label may count in an accuracy
        of the decisions of `model` (a decision's `model`; a cascade's counts when none of
        its stages trained on it): not when the model learnt this ticket, by id or by text,
        with the label that event set. Labels added or changed after training count.

        This is the rule behind every accuracy the product shows; comparisons between
        backends (shadow, compare) call it with their own rows.
        """
        if not rows:
            return []
        trained = self.trained_pairs(model)
        events = dict(self._event_labels(row[1] for row in rows))
        return [
            (ticket_id, events.get(event_id)) not in trained  # an unknown event: counts
            for ticket_id, event_id in rows
        ]

    def trained_pairs(self, model: str) -> set[tuple[str, str]]:
        """The (ticket id, label) pairs `model` (or any stage of a cascade) learnt: a label
        equal to the one learnt for that ticket never counts for it (`labels_that_count`'s
        rule, for callers that hold the label rather than its event)."""
        if self._read(BEHIND):  # tickets imported since the model was recorded: matched first
            with self._write() as conn:
                match_new_tickets(conn)
        components = model_components(model)
        marks = ",".join("?" * len(components))
        return {
            (ticket_id, label)
            for ticket_id, label in self._read(
                f"SELECT DISTINCT ticket_id, label FROM trained_examples WHERE model IN ({marks})",
                components,
            )
        }

    def _event_labels(self, event_ids: Iterable[int]) -> list[tuple[int, str]]:
        ids = sorted(set(event_ids))
        out: list[tuple[int, str]] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            out.extend(
                (int(r[0]), r[1])
                for r in self._read(
                    f"SELECT id, label FROM label_events WHERE id IN ({marks})", chunk
                )
            )
        return out
