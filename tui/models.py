"""Domain models shared by the store, the routing engine, the backends and the screens.

They are pydantic models because they sit on boundaries: rows from SQLite, lines from import
files, answers from backends. Frozen, so screens can hold them in reactives and compare them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ConfidenceSource = Literal["probability", "logprob", "self-reported"]
LabelSource = Literal["accept", "correct", "import", "cli", "undo"]


def utcnow() -> datetime:
    """Current time in UTC; one place so tests and the store agree on the timezone."""
    return datetime.now(UTC)


class Ticket(BaseModel):
    """One customer request as it arrived, before any routing."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=512)
    """Stable id: from the source file, the e-mail's Message-ID, or a content hash."""
    text: str
    """Full text the backends classify (subject and body joined when both exist)."""
    subject: str = ""
    customer: str | None = None
    channel: str | None = None
    created_at: datetime | None = None
    """When the customer sent it, if the source says so."""
    received_at: datetime = Field(default_factory=utcnow)
    """When triagedesk imported it."""
    meta: dict[str, Any] = Field(default_factory=dict)
    """Every other field of the source row, kept verbatim."""


class Label(BaseModel):
    """A queue / department / intent a ticket can be routed to."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    description: str = ""


class Taxonomy(BaseModel):
    """The closed set of labels every backend must answer from."""

    model_config = ConfigDict(frozen=True)

    labels: tuple[Label, ...]

    @field_validator("labels")
    @classmethod
    def _unique(cls, labels: tuple[Label, ...]) -> tuple[Label, ...]:
        names = [label.name for label in labels]
        if len(set(names)) != len(names):
            raise ValueError("label names must be unique")
        return labels

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...] | set[str]) -> Taxonomy:
        """A taxonomy without descriptions, sorted so that its order is stable."""
        return cls(labels=tuple(Label(name=name) for name in sorted(set(names))))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __len__(self) -> int:
        return len(self.labels)

    def description(self, name: str) -> str:
        for label in self.labels:
            if label.name == name:
                return label.description
        raise KeyError(name)


class StageResult(BaseModel):
    """One stage of a cascade, kept inside the final decision so both costs stay visible."""

    model_config = ConfigDict(frozen=True)

    backend: str
    backend_type: str
    model: str
    label: str | None = None
    confidence: float | None = None
    total_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    error_class: str | None = None


class Decision(BaseModel):
    """One routing attempt of one ticket by one backend, exactly as it is stored."""

    model_config = ConfigDict(frozen=True)

    id: int | None = None
    ticket_id: str
    run_id: str
    backend: str
    backend_type: str
    model: str = ""
    prompt_version: str | None = None
    label: str | None = None
    confidence: float | None = None
    confidence_source: ConfidenceSource | None = None
    reason: str | None = None
    total_ms: float | None = None
    """Client wall time from request sent to answer parsed."""
    ttft_ms: float | None = None
    """Client time to first token, where the answer was streamed."""
    server_load_ms: float | None = None
    server_prompt_ms: float | None = None
    server_gen_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    tokens_estimated: bool = False
    """True when the token counts are estimates (the backend reported none)."""
    cost_usd: float | None = None
    counterfactual_cost_usd: float | None = None
    """What the reference backend would have charged for the same ticket."""
    error_class: str | None = None
    error_message: str | None = None
    raw_output: str | None = None
    stages: tuple[StageResult, ...] = ()
    created_at: datetime = Field(default_factory=utcnow)

    @field_validator("confidence")
    @classmethod
    def _finite_unit_interval(cls, value: float | None) -> float | None:
        if value is not None and (math.isnan(value) or not 0.0 <= value <= 1.0):
            raise ValueError("confidence must be within [0, 1]")
        return value

    @model_validator(mode="after")
    def _label_or_error(self) -> Decision:
        if self.label is None and self.error_class is None:
            raise ValueError("a decision carries a label or an error class")
        return self

    @property
    def ok(self) -> bool:
        return self.error_class is None


class LabelEvent(BaseModel):
    """An agent's statement of a ticket's true label; events are only ever appended."""

    model_config = ConfigDict(frozen=True)

    id: int | None = None
    ticket_id: str
    label: str | None
    """None only for an undo that returns the ticket to unlabelled."""
    agent: str = "agent"
    source: LabelSource
    created_at: datetime = Field(default_factory=utcnow)


class InboxRow(BaseModel):
    """One line of the inbox: a ticket with its latest decision and current label."""

    model_config = ConfigDict(frozen=True)

    seq: int
    ticket_id: str
    received_at: datetime
    subject: str
    text: str
    label: str | None = None
    """Current agent label (latest label event)."""
    label_source: str | None = None
    predicted_label: str | None = None
    confidence: float | None = None
    backend: str | None = None
    total_ms: float | None = None
    cost_usd: float | None = None
    error_class: str | None = None
    disagreement: bool = False


class BackendStats(BaseModel):
    """Per-backend figures, the shape of SPEC's `stats --json` objects."""

    backend: str
    backend_type: str | None = None
    n: int
    errors: int
    accuracy: float | None
    macro_f1: float | None
    labelled: int = 0
    """Decisions whose ticket has an agent label (the accuracy's denominator)."""
    latency_ms: dict[str, float | None]
    cost_usd: float
    cost_per_1k_usd: float | None
    projected_monthly_usd: float | None = None
    per_label: dict[str, dict[str, float | int]] = Field(default_factory=dict)
