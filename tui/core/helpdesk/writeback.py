"""What one push writes to a helpdesk ticket: planned here, sent by the helpdesk's client.

The plan is pure data, so `sync --dry-run` prints exactly what a real push would send, and
a test can compare the two. Every note ends with a marker naming the push
(`[triagedesk push zd/17]`): after a crash between the write and its record, the next run
finds the marker in the ticket's comments and records the push as done instead of writing it
a second time (exactly once without help from the helpdesk).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tui.core.helpdesk.config import HelpdeskConfig


@dataclass(frozen=True, slots=True)
class PushRequest:
    """One queued push, as the store hands it out."""

    push_id: int
    helpdesk: str
    ticket_id: str
    remote_id: int
    label: str
    previous_label: str | None
    """The label the last done push wrote: a correction removes its tags."""
    correction: bool
    """An agent's label in triagedesk, not a backend's decision."""
    stamp: str | None
    """The ticket's `updated_at` (last pulled or written) when the push was queued."""
    resumed: bool
    """A push a crashed run started: check the helpdesk before writing it again."""
    confidence: float | None = None
    backend: str | None = None
    backend_type: str | None = None
    model: str | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class PushPlan:
    """The fields a push sets: `apply` fills them all, `note` only `note`."""

    note: str
    marker: str
    group_id: int | None = None
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    custom_fields: dict[int | str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for `--dry-run`."""
        parts = []
        if self.group_id is not None:
            parts.append(f"group {self.group_id}")
        if self.add_tags:
            parts.append("add tags " + ",".join(self.add_tags))
        if self.remove_tags:
            parts.append("remove tags " + ",".join(self.remove_tags))
        for key, value in self.custom_fields.items():
            parts.append(f"field {key}={value}")
        parts.append("private note")
        return "; ".join(parts)


def marker(push: PushRequest) -> str:
    return f"[triagedesk push {push.helpdesk}/{push.push_id}]"


def note_text(push: PushRequest) -> str:
    """The private note: what was decided, by what, at what latency and cost."""
    if push.correction:
        was = f" (was {push.previous_label})" if push.previous_label else ""
        head = f"triagedesk: an agent set the label to {push.label}{was}"
        return f"{head}\n{marker(push)}"
    facts = [f"confidence {push.confidence:.2f}" if push.confidence is not None else None]
    if push.backend:
        kind = f"{push.backend_type}, " if push.backend_type else ""
        model = f"model {push.model}" if push.model else "no model"
        facts.append(f"backend {push.backend} ({kind}{model})")
    if push.latency_ms is not None:
        facts.append(f"latency {push.latency_ms:.0f} ms")
    if push.cost_usd is not None:
        facts.append(f"cost ${push.cost_usd:.6f}")
    body = " · ".join(f for f in facts if f)
    return f"triagedesk routed this ticket: {push.label}\n{body}\n{marker(push)}"


def plan_push(config: HelpdeskConfig, push: PushRequest) -> PushPlan:
    """The write for `config.writeback` (`off` never reaches here: nothing is queued)."""
    note = note_text(push)
    if config.writeback != "apply":
        return PushPlan(note, marker(push))
    tags = config.tags_for(push.label)
    old = config.tags_for(push.previous_label) if push.previous_label else ()
    fields: dict[int | str, Any] = {}
    if config.label_field is not None:
        fields[config.label_field] = push.label
    if config.confidence_field is not None and push.confidence is not None:
        fields[config.confidence_field] = round(push.confidence, 4)
    return PushPlan(
        note,
        marker(push),
        group_id=config.group_for(push.label),
        add_tags=tags,
        remove_tags=tuple(t for t in old if t not in tags),
        custom_fields=fields,
    )
