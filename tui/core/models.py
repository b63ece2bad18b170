"""Domain models shared by the store, the routing engine, the backends and the screens.

They are pydantic models because they sit on boundaries: rows from SQLite, lines from import
files, answers from backends. Frozen, so screens can hold them in reactives and compare them.
"""

from __future__ import annotations

import functools
import math
import unicodedata
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

ConfidenceSource = Literal["probability", "logprob", "self-reported"]
LabelSource = Literal["accept", "correct", "import", "cli", "undo"]


def utcnow() -> datetime:
    """Current time in UTC; one place so tests and the store agree on the timezone."""
    return datetime.now(UTC)


MAX_ID_CHARS = 512
"""Longest ticket id: ids come from files and e-mail headers that other people write."""
MAX_LABEL_CHARS = 100
"""Longest label name: a queue name, not a paragraph; labels go into every LLM prompt."""

_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Unicode categories never allowed in an id or a label: C0/C1 controls (newlines, tabs, ESC),
format characters (bidi overrides and isolates, zero-width characters, BOM), lone surrogates
and the line/paragraph separators. Labels are written into system prompts and ids into
terminal output and error files, so a character that breaks a line, starts an escape sequence
or reorders text on screen would let one imported row forge prompt lines or log lines."""


def _forbidden_char(value: str) -> str | None:
    """The first forbidden character of `value` as an escape (`U+000A`), or None."""
    # A printable string has no character of any C or Z category but the space, so the
    # per-character scan is only needed for the rare value that is not.
    if value.isprintable():
        return None
    for char in value:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None


def _check_name(value: object, what: str, limit: int) -> str:
    """The shared rule of ids and labels: a string, non-empty after stripping, at most `limit`
    characters, no forbidden character; returns it stripped. The reason never repeats the
    text (it may be the very control sequence the rule is there to stop)."""
    if not isinstance(value, str):
        raise ValueError(f"a {what} must be a string, not {type(value).__name__}")
    stripped = value.strip()
    short = what.removeprefix("ticket ")
    if not stripped:
        raise ValueError(f"empty {short}")
    if len(stripped) > limit:
        raise ValueError(f"{short} is {len(stripped)} characters; the limit is {limit}")
    bad = _forbidden_char(stripped)
    if bad is not None:
        raise ValueError(f"{short} contains a control or formatting character ({bad})")
    return stripped


def check_label_name(name: str) -> str:
    """Validate a label name from any source (import file, CLI, TUI, config) and return it
    stripped of surrounding whitespace.

    One rule for every door, because a label reaches the system prompt of every LLM request:
    non-empty after stripping, at most `MAX_LABEL_CHARS` characters, and no control, format
    (bidi) or line-separator character anywhere.

    Raises:
        ValueError: With a short reason that does not repeat the offending text.
    """
    return _check_name(name, "label", MAX_LABEL_CHARS)


def check_ticket_id(value: str) -> str:
    """Validate a ticket id and return it stripped of surrounding whitespace.

    Ids are printed in terminals, error files and prompts; the same character rules as
    labels apply (no controls, bidi overrides or line separators), up to `MAX_ID_CHARS`.

    Raises:
        ValueError: With a short reason that does not repeat the offending text.
    """
    return _check_name(value, "ticket id", MAX_ID_CHARS)


STORED: Final[dict[str, bool]] = {"stored": True}
"""Validation context for rows read back from the database: `Model.model_validate(data,
context=STORED)`. Rows that an older version wrote without today's id and label rules must
still load (the database must never become unreadable), so the character rules apply only
where data comes in; the readers that feed prompts, training and exports skip bad labels."""


def _stored(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and info.context.get("stored") is True


def label_problem(name: object) -> str | None:
    """Why a stored label is unusable (None when it is fine): the readers' tolerant check for
    rows that older versions wrote without validation."""
    if not isinstance(name, str):
        return "not a string"
    try:
        checked = check_label_name(name)
    except ValueError as exc:
        return str(exc)
    return None if checked == name else "surrounding whitespace"


class Ticket(BaseModel):
    """One customer request as it arrived, before any routing."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
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

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str, info: ValidationInfo) -> str:
        return value if _stored(info) else check_ticket_id(value)


_TICKET_FIELDS = frozenset(Ticket.model_fields)


def checked_ticket(fields: dict[str, Any]) -> Ticket:
    """A Ticket from values that have already passed its rules, without validating again.

    For the importer, which checks every field itself (to name the field in its row errors)
    and builds a million of these: `model_validate` would repeat those checks, and pydantic's
    `model_construct` is slower still. `fields` must name every field; a test holds the result
    equal to `Ticket.model_validate(fields)`.
    """
    ticket = _new_ticket(Ticket)
    _set(ticket, "__dict__", fields)
    _set(ticket, "__pydantic_fields_set__", _TICKET_FIELDS)
    _set(ticket, "__pydantic_extra__", None)
    _set(ticket, "__pydantic_private__", None)
    return ticket


_new_ticket = Ticket.__new__
_set = object.__setattr__


class Label(BaseModel):
    """A queue / department / intent a ticket can be routed to."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    description: str = ""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        # No STORED escape hatch: a Label goes into prompts, so legacy names are filtered
        # out before a Label is built (Store.known_labels), never let through.
        return check_label_name(value)


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

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        """The label names in order, derived once (the model is frozen): every answer of
        every ticket is checked against them."""
        return tuple(label.name for label in self.labels)

    @functools.cached_property
    def _name_set(self) -> frozenset[str]:
        return frozenset(self.names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._name_set

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

    @field_validator("label")
    @classmethod
    def _valid_label(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or _stored(info):
            return value
        return check_label_name(value)


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
    held_by: str | None = None
    """The agent whose live lease holds the ticket (team mode), if any."""


class BackendStats(BaseModel):
    """Per-backend figures, the shape of SPEC's `stats --json` objects."""

    backend: str
    backend_type: str | None = None
    n: int
    errors: int
    accuracy: float | None
    macro_f1: float | None
    labelled: int = 0
    """Decisions whose ticket has an agent label."""
    scored_on: int = 0
    """Agent labels counted in `accuracy`: `labelled` less `excluded_trained`."""
    excluded_trained: int = 0
    """Labels left out because the model that answered trained on them."""
    accuracy_low: float | None = None
    accuracy_high: float | None = None
    """The accuracy's 95 % Wilson interval (None when nothing was counted)."""
    latency_ms: dict[str, float | None]
    cost_usd: float
    cost_per_1k_usd: float | None
    projected_monthly_usd: float | None = None
    per_label: dict[str, dict[str, float | int]] = Field(default_factory=dict)
