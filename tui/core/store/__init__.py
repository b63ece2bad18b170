"""The store, on SQLite (one person) or PostgreSQL (a team): the only package that speaks SQL.

Plain tables with readable names (tickets, decisions, label_events, runs), so the database
opens in the `sqlite3` shell and sqlite-utils. Each ticket row also carries its current state
(latest decision, current agent label, disagreement flag), maintained in the same transaction
as the decision or label event that changes it, so inbox pages and filters are index look-ups
even at a million tickets.

`Store` is composed of one mixin per concern over `StoreBase` (connection.py), which owns the
connection, the write lock and the transactions; every mixin is typed against that base only,
so the modules import downwards and never each other's classes:

- connection.py: opening the file privately, pragmas, `_write` / `_read`, SQLite error mapping;
  a `postgresql://` URL opens the PostgreSQL engine instead
- pg.py: the PostgreSQL engine (pool, transactions under one write lock, LISTEN/NOTIFY) and
  the translation that lets both engines share every mixin's one SQL text (why: its docstring)
- copy.py: `db copy`, a SQLite database into PostgreSQL, resumable and counted
- migrations.py: the schema as ordered lists of statements under `PRAGMA user_version`
- tickets.py: the import with its conflict check, ticket readers
- labels.py: label events, undo, unusable labels, labelled examples
- decisions.py: `record_decisions` and the aggregates it keeps, decision readers
- decision_batch.py: SQLite's batched form of that write (a dozen statements a batch)
- runs.py / claims.py: runs and their pending tickets; the claims on tickets in flight, and
  the agents' leases (team mode)
- inbox.py: keyset pages and filters
- stats.py: backend statistics from the aggregates (latency.py: the histogram's buckets)
- shadow.py: shadow answers (never decisions), shadow skips, promotions
- trained.py: what each trained model learnt (training sets), and `labels_that_count`, the
  rule that leaves those labels out of every accuracy
- helpdesk.py / pushes.py: helpdesk pull cursors and links; write-back records
- meta.py: the `meta` table, the read-only probe, the integrity check

Everything callers use is re-exported here: import from `tui.core.store`, not from its modules.
"""

from __future__ import annotations

from tui.core.database_url import DbTarget, PgTarget, database_target, is_database_url
from tui.core.store.claims import (
    CLAIM_LEASE_S,
    Claimed,
    ClaimsMixin,
    agent_owner,
    claim_owner,
    describe_owner,
    owner_alive,
)
from tui.core.store.connection import DB_FILE_MODE, StoreBase, storage_problem
from tui.core.store.decisions import DecisionsMixin
from tui.core.store.errors import StoreError
from tui.core.store.helpdesk import (
    HelpdeskMixin,
    HelpdeskState,
    PulledTicket,
    PullStored,
    TicketLink,
)
from tui.core.store.inbox import INBOX_FILTERS, Cursor, InboxFilter, InboxMixin
from tui.core.store.labels import LabelsMixin, describe_unusable_labels
from tui.core.store.latency import LATENCY_BASE, bucket_value, latency_bucket
from tui.core.store.meta import DatabaseProbe, MetaMixin, probe_database
from tui.core.store.migrations import MIGRATIONS, SCHEMA_VERSION, Migration
from tui.core.store.pushes import PushesMixin, PushRecord
from tui.core.store.runs import PendingQuery, RunInfo, RunsMixin
from tui.core.store.shadow import (
    Promotion,
    ShadowAnswer,
    ShadowCounts,
    ShadowMixin,
    ShadowPair,
)
from tui.core.store.stats import StatsMixin
from tui.core.store.tickets import CONTENT_COLUMNS, ImportRejected, ImportResult, TicketsMixin
from tui.core.store.trained import LabelledTicket, TrainedMixin

__all__ = [
    "CLAIM_LEASE_S",
    "CONTENT_COLUMNS",
    "DB_FILE_MODE",
    "INBOX_FILTERS",
    "LATENCY_BASE",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Claimed",
    "Cursor",
    "DbTarget",
    "PgTarget",
    "database_target",
    "is_database_url",
    "HelpdeskState",
    "PullStored",
    "PulledTicket",
    "PushRecord",
    "TicketLink",
    "DatabaseProbe",
    "ImportRejected",
    "ImportResult",
    "InboxFilter",
    "LabelledTicket",
    "Migration",
    "PendingQuery",
    "Promotion",
    "RunInfo",
    "ShadowAnswer",
    "ShadowCounts",
    "ShadowPair",
    "Store",
    "StoreError",
    "agent_owner",
    "bucket_value",
    "claim_owner",
    "describe_owner",
    "describe_unusable_labels",
    "latency_bucket",
    "owner_alive",
    "probe_database",
    "storage_problem",
]


class Store(
    TicketsMixin,
    LabelsMixin,
    DecisionsMixin,
    RunsMixin,
    ClaimsMixin,
    InboxMixin,
    StatsMixin,
    ShadowMixin,
    TrainedMixin,
    MetaMixin,
    HelpdeskMixin,
    PushesMixin,
    StoreBase,
):
    """A connection to one triagedesk database.

    The connection may be used from any thread (the TUI's workers); a lock serialises calls,
    and WAL plus a busy timeout let other processes (a second TUI, a headless `route`) work
    on the same file at the same time.
    """
