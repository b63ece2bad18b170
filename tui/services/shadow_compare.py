"""How each shadow backend compares with the active one, on the tickets both answered.

The figures `stats --json` (`shadows`), the stats screen and `promote`'s evidence show: per
shadow, accuracy of each side against the agents' labels with a 95 % Wilson interval, how
often the two agree, p50 latency and $ per 1k tickets, all over the same tickets (a shadow
skips tickets when it is behind, so comparing it with all of the active backend's decisions
would compare different traffic).

Accuracy is counted in one place, `accuracy`, from (ticket, agent label, answer) rows: a rule
about which labels count (such as leaving out labels the answering model was trained on)
goes there and applies to both sides alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tui.core.costs import per_1k
from tui.core.intervals import Interval, accuracy_text, wilson_interval
from tui.core.store import ShadowCounts, ShadowPair, Store
from tui.services.routing import percentile


@dataclass(frozen=True, slots=True)
class LabelledAnswer:
    """One backend's answer on an agent-labelled ticket: a row `accuracy` counts."""

    ticket_id: str
    label: str
    """The agent's label."""
    backend: str
    model: str
    predicted: str


def accuracy(rows: Iterable[LabelledAnswer]) -> Interval:
    """The share of `rows` whose answer is the agent's label, with its 95 % interval: the one
    function every shadow accuracy is counted by."""
    counted = list(rows)
    correct = sum(1 for row in counted if row.predicted == row.label)
    return wilson_interval(correct, len(counted))


def interval_text(interval: Interval) -> str:
    """`86.3% (81–90%, n=412)`, the way every accuracy is shown, or `no held-out labels yet`."""
    if interval.value is None:
        return "no held-out labels yet"
    return accuracy_text(interval.value, interval.low, interval.high, interval.n)


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a comparison, over the tickets both answered."""

    backend: str
    accuracy: Interval
    p50_ms: float | None
    cost_per_1k_usd: float | None

    def accuracy_json(self) -> dict[str, Any]:
        a = self.accuracy
        return {"value": a.value, "low": a.low, "high": a.high, "scored_on": a.n}


@dataclass(frozen=True, slots=True)
class ShadowComparison:
    """A shadow against the active backend (SPEC `stats --json` `shadows` entries)."""

    shadow: Side
    active: Side
    shadow_type: str
    counts: ShadowCounts
    compared: int
    """Tickets both answered without an error."""
    agreement: float | None
    """Share of `compared` where both gave the same label."""
    labelled: int
    """Of `compared`, those with an agent label."""

    @property
    def has_evidence(self) -> bool:
        """Some agent-labelled ticket scores both sides: what `promote` asks for."""
        return self.shadow.accuracy.n > 0 and self.active.accuracy.n > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "shadow": self.shadow.backend,
            "shadow_type": self.shadow_type,
            "active": self.active.backend,
            "answered": self.counts.routed,
            "errors": self.counts.errors,
            "skipped": self.counts.skipped,
            "compared": self.compared,
            "agreement": self.agreement,
            "labelled": self.labelled,
            "accuracy": {
                "shadow": self.shadow.accuracy_json(),
                "active": self.active.accuracy_json(),
            },
            "latency_p50_ms": {"shadow": self.shadow.p50_ms, "active": self.active.p50_ms},
            "cost_per_1k_usd": {
                "shadow": self.shadow.cost_per_1k_usd,
                "active": self.active.cost_per_1k_usd,
            },
        }


def _side(
    backend: str, labelled: Iterable[LabelledAnswer], ms: list[float], cost: float, n: int
) -> Side:
    return Side(backend, accuracy(labelled), percentile(ms, 0.5), per_1k(cost, n))


def compare(
    shadow: str, active: str, pairs: Sequence[ShadowPair], counts: ShadowCounts, shadow_type: str
) -> ShadowComparison:
    """The comparison from the store's pairs (pure: the tests build pairs by hand)."""
    both = [p for p in pairs if p.shadow_error is None and p.active_error is None]
    both = [p for p in both if p.shadow_label is not None and p.active_label is not None]
    labelled = [p for p in both if p.truth is not None]
    agree = sum(1 for p in both if p.shadow_label == p.active_label)

    shadow_rows = [
        LabelledAnswer(p.ticket_id, p.truth, shadow, p.shadow_model, p.shadow_label)
        for p in labelled
        if p.truth is not None and p.shadow_label is not None
    ]
    active_rows = [
        LabelledAnswer(p.ticket_id, p.truth, active, p.active_model, p.active_label)
        for p in labelled
        if p.truth is not None and p.active_label is not None
    ]
    shadow_ms = [p.shadow_ms for p in both if p.shadow_ms is not None]
    active_ms = [p.active_ms for p in both if p.active_ms is not None]
    shadow_cost = sum(p.shadow_cost_usd or 0.0 for p in both)
    active_cost = sum(p.active_cost_usd or 0.0 for p in both)
    return ShadowComparison(
        shadow=_side(shadow, shadow_rows, shadow_ms, shadow_cost, len(both)),
        active=_side(active, active_rows, active_ms, active_cost, len(both)),
        shadow_type=shadow_type,
        counts=counts,
        compared=len(both),
        agreement=agree / len(both) if both else None,
        labelled=len(labelled),
    )


def compare_shadows(
    store: Store, active: str, shadows: Sequence[str], types: dict[str, str]
) -> list[ShadowComparison]:
    """Each shadow against `active`, from the store. Blocking: call it in a worker thread.

    Args:
        types: Backend name -> its type, from the config (a shadow may have no answers yet).
    """
    return [
        compare(
            name,
            active,
            held_out(store, store.shadow_pairs(name, active)),
            store.shadow_counts(name, active),
            types.get(name, ""),
        )
        for name in shadows
    ]


def held_out(store: Store, pairs: Sequence[ShadowPair]) -> list[ShadowPair]:
    """The pairs with each side's label dropped where that side's model trained on it.

    A label a model learnt is not evidence about it (`Store.trained_pairs`, the rule every
    accuracy follows): both sides are scored on the labels neither trained on, so they are
    measured on the same tickets; the pair stays for agreement, latency and cost.
    """
    trained: dict[str, set[tuple[str, str]]] = {}

    def learnt(model: str, ticket_id: str, label: str) -> bool:
        if model not in trained:
            trained[model] = store.trained_pairs(model) if model else set()
        return (ticket_id, label) in trained[model]

    kept: list[ShadowPair] = []
    for p in pairs:
        if p.truth is not None and (
            learnt(p.shadow_model, p.ticket_id, p.truth)
            or learnt(p.active_model, p.ticket_id, p.truth)
        ):
            p = replace(p, truth=None)
        kept.append(p)
    return kept
