"""Messages that cross screens or come back from workers, named in the past tense.

Workers never touch widgets: they post one of these and an `@on` handler owns the UI change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    # Only the fields' types: with postponed annotations a dataclass never evaluates them,
    # and importing these here loaded promotion, shadow comparison and the learning curve
    # (and their config writer) before the inbox's first frame, which needs none of them.
    from tui.core.learning.curve import CurvePoint
    from tui.core.models import BackendStats, Decision, InboxRow, LabelEvent, Ticket
    from tui.core.store import HelpdeskState, InboxFilter, TicketLink
    from tui.services.promotion import Promoted
    from tui.services.routing import RunSummary
    from tui.services.shadow_compare import ShadowComparison


@dataclass
class TicketsRouted(Message):
    """Decisions that were just stored, coalesced so the UI redraws at most ~10 times a second."""

    decisions: tuple[Decision, ...]


@dataclass
class RoutingFinished(Message):
    """A batch run ended (completed, or cancelled with what it had written)."""

    summary: RunSummary


@dataclass
class RoutingFailed(Message):
    """Routing could not even start (no taxonomy, unknown ticket, store error)."""

    error: str


@dataclass
class BackendSwapped(Message):
    """The active backend changed; the next dispatched ticket goes to `new`."""

    old: str
    new: str


@dataclass
class InboxPageLoaded(Message):
    """A window of inbox rows fetched by keyset, with where it sits in the whole list."""

    request: int
    """Identity of the request: a stale page (older filter, superseded scroll) is dropped."""
    rows: tuple[InboxRow, ...]
    offset: int
    total: int
    keep_ticket: str | None = None
    """Ticket the cursor should stay on, when it is in the new window."""
    cursor_index: int | None = None
    """Row index for the cursor when `keep_ticket` is absent or gone."""
    follow_cursor: bool = False
    """Keep the ticket the cursor is on when the page arrives rather than `keep_ticket`, the
    one it was on when asked (a reload or a scroll): "next" may have moved it meanwhile."""


@dataclass
class TicketDetailLoaded(Message):
    """Everything the detail pane shows about one ticket."""

    ticket: Ticket
    decisions: tuple[Decision, ...]
    history: tuple[LabelEvent, ...]
    link: TicketLink | None = None
    """The ticket's helpdesk id and push state, for a ticket `sync` pulled."""


@dataclass
class LabelRecorded(Message):
    """An agent label (accept, correct or undo) was appended to the store."""

    event: LabelEvent
    row: InboxRow | None
    """The ticket's inbox row as it is now."""
    advance: bool = False
    """Move the cursor on to the next ticket (accept and correct do, undo does not)."""


@dataclass
class TicketClaimed(Message):
    """The agent's "claim next" leased this ticket (team mode): the inbox moves to it."""

    ticket_id: str


@dataclass
class StoreChanged(Message):
    """What the live poll found changed in the store since the last poll (any process)."""

    new_tickets: int
    decisions: tuple[Decision, ...]
    labels_changed: bool


@dataclass
class StatsLoaded(Message):
    """Per-backend figures from the store, for the status bar's baseline."""

    stats: tuple[BackendStats, ...]
    total_cost: float
    decisions: int


@dataclass
class TicketsImported(Message):
    """A file dropped into the watched folder was imported (or rejected)."""

    path: str
    inserted: int
    error: str | None = None


@dataclass
class SpecialistRetrained(Message):
    """A new specialist model file was written; the backend reloads it on its next ticket."""

    detail: str


@dataclass
class BackendChecked(Message):
    """A backend's health check answered (or timed out)."""

    name: str
    ok: bool
    detail: str


@dataclass
class LatenciesLoaded(Message):
    """Recent p50 latency of each backend, from the store."""

    p50_ms: dict[str, float | None]


@dataclass
class FiltersCounted(Message):
    """How many tickets each inbox filter holds."""

    counts: dict[InboxFilter, int]


@dataclass
class CompareAnswered(Message):
    """One backend's answer for the compared ticket."""

    decision: Decision


@dataclass
class CurveComputed(Message):
    """The specialist's learning curve on the agents' labels (statistics screen)."""

    points: tuple[CurvePoint, ...]
    test_size: int
    labelled: int


@dataclass
class StatsComputed(Message):
    """Everything the statistics screen shows, computed from the store in one worker."""

    stats: tuple[BackendStats, ...]
    latencies: dict[str, list[float]]
    timeline: list[tuple[str, str, float, int]]
    token_means: dict[str, tuple[float | None, float | None]]
    counterfactual_mean: float | None
    helpdesks: tuple[HelpdeskState, ...] = ()
    """Each configured helpdesk's last pull and pending/failed pushes."""


@dataclass
class ShadowsCompared(Message):
    """Each shadow backend against the active one (`tui.services.shadow_compare`)."""

    comparisons: tuple[ShadowComparison, ...]


@dataclass
class ShadowPromoted(Message):
    """A promotion was made: the config rewritten and the event recorded."""

    promoted: Promoted


@dataclass
class PromotionFailed(Message):
    """A promotion was refused or could not be made; the line says why."""

    error: str
