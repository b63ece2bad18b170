"""The schema, as an ordered list of migrations applied under `PRAGMA user_version`.

Each migration is a tuple of SQL statements run one by one in the caller's transaction
(`executescript` would commit it). `Store` opens every database by running the migrations its
`user_version` has not seen yet, inside one IMMEDIATE transaction, and refuses a database
whose version is newer than `SCHEMA_VERSION`.

Why not sqlite-utils' `Migrations` (the library the product already depends on): it records
applied migrations by name in a `_sqlite_migrations` table and runs them through
`Database.atomic()`. Every database written so far records its schema in `user_version`
only, so switching would need a bridge that back-fills that table, would add a table to
every database, and would give up the single IMMEDIATE transaction (with its retry while
another process holds the lock) that migrates and checks the version together. It would also
import sqlite-utils at every start, which the store avoids (see `StoreBase.db`). The runner
here is a dozen lines; the statements are what matter, and they are plain data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tui.core.store.errors import StoreError
from tui.core.store.latency import latency_bucket

if TYPE_CHECKING:
    from tui.core.database_url import PgTarget
    from tui.core.store.pg import PgConnection


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: its statements, run in order, and the SQL functions they call.

    Callable with a connection, so a test can build a database of an older version by
    applying the first few migrations by hand (`MIGRATIONS[0](conn)`).

    The statements' text, whitespace included, is what the versions before this package
    wrote (a trailing newline on the last statement of V3 and V4 among it), so a database
    created now has the same `sqlite_master` text, byte for byte, as one created then.
    """

    doc: str
    """What the step adds, for readers of the schema."""
    statements: tuple[str, ...]
    functions: tuple[tuple[str, int, Callable[..., int | float | str | None]], ...] = ()
    """(name, number of arguments, function) registered on the connection first."""

    def __call__(self, db: sqlite3.Connection) -> None:
        for name, arity, function in self.functions:
            db.create_function(name, arity, function, deterministic=True)
        for statement in self.statements:
            db.execute(statement)


V1 = Migration(
    "Tickets (each row carrying its current state), decisions and label events, with the"
    " partial indexes that make every inbox filter an index look-up.",
    (
        """CREATE TABLE tickets (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            subject TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL,
            customer TEXT,
            channel TEXT,
            created_at TEXT,
            received_at TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}',
            source TEXT,
            decision_id INTEGER,
            predicted_label TEXT,
            confidence REAL,
            error_class TEXT,
            label TEXT,
            label_source TEXT
        )""",
        """CREATE TABLE decisions (
            id INTEGER PRIMARY KEY,
            ticket_id TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
            run_id TEXT NOT NULL,
            backend TEXT NOT NULL,
            backend_type TEXT NOT NULL,
            model TEXT NOT NULL DEFAULT '',
            prompt_version TEXT,
            label TEXT,
            confidence REAL,
            confidence_source TEXT,
            reason TEXT,
            total_ms REAL,
            ttft_ms REAL,
            server_load_ms REAL,
            server_prompt_ms REAL,
            server_gen_ms REAL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cached_input_tokens INTEGER,
            tokens_estimated INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL,
            counterfactual_cost_usd REAL,
            error_class TEXT,
            error_message TEXT,
            raw_output TEXT,
            stages TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL,
            UNIQUE (run_id, ticket_id)
        )""",
        "CREATE INDEX ix_decisions_ticket ON decisions(ticket_id, backend, id)",
        """CREATE TABLE label_events (
            id INTEGER PRIMARY KEY,
            ticket_id TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
            label TEXT,
            agent TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('accept', 'correct', 'import', 'cli', 'undo')),
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX ix_label_events_ticket ON label_events(ticket_id, id)",
        "CREATE INDEX ix_tickets_unrouted ON tickets(seq) WHERE decision_id IS NULL",
        "CREATE INDEX ix_tickets_unlabelled ON tickets(seq) WHERE label IS NULL",
        "CREATE INDEX ix_tickets_labelled ON tickets(seq) WHERE label IS NOT NULL",
        "CREATE INDEX ix_tickets_errors ON tickets(seq) WHERE error_class IS NOT NULL",
        """CREATE INDEX ix_tickets_low_confidence ON tickets(confidence, seq)
            WHERE label IS NULL AND confidence IS NOT NULL""",
    ),
)

V2 = Migration(
    "Runs (resumable batches), undo links, the disagreement flag and the stats indexes.",
    (
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            backend TEXT NOT NULL,
            selection TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'done')),
            started_at TEXT NOT NULL,
            finished_at TEXT
        )""",
        "CREATE INDEX ix_runs_open ON runs(backend, selection) WHERE status = 'running'",
        "ALTER TABLE label_events ADD COLUMN undoes INTEGER REFERENCES label_events(id)",
        "CREATE INDEX ix_label_events_agent ON label_events(agent, id)",
        "ALTER TABLE tickets ADD COLUMN disagreement INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX ix_tickets_disagreement ON tickets(seq) WHERE disagreement = 1",
        "CREATE INDEX ix_decisions_backend_latency ON decisions(backend, total_ms)",
        """CREATE INDEX ix_decisions_backend_stats
            ON decisions(backend, backend_type, error_class, cost_usd, counterfactual_cost_usd)""",
        "CREATE INDEX ix_decisions_created ON decisions(created_at)",
    ),
)

V3 = Migration(
    "Aggregates kept up to date on every write, so statistics never scan the decisions:"
    " each ticket's latest decision per backend, per-backend totals, predicted-vs-agent"
    " label counts, latency histograms and hourly costs. Backfilled from existing decisions.",
    (
        """CREATE TABLE latest_decisions (
            ticket_id TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
            backend TEXT NOT NULL,
            decision_id INTEGER NOT NULL,
            label TEXT,
            PRIMARY KEY (ticket_id, backend)
        ) WITHOUT ROWID""",
        """CREATE TABLE backend_totals (
            backend TEXT PRIMARY KEY,
            backend_type TEXT NOT NULL,
            n INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            tokens_n INTEGER NOT NULL DEFAULT 0,
            counterfactual_usd REAL NOT NULL DEFAULT 0,
            counterfactual_n INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE label_agreement (
            backend TEXT NOT NULL,
            predicted TEXT NOT NULL,
            truth TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (backend, predicted, truth)
        ) WITHOUT ROWID""",
        """CREATE TABLE latency_histogram (
            backend TEXT NOT NULL,
            bucket INTEGER NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (backend, bucket)
        ) WITHOUT ROWID""",
        """CREATE TABLE cost_by_hour (
            hour TEXT NOT NULL,
            backend TEXT NOT NULL,
            cost_usd REAL NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (hour, backend)
        ) WITHOUT ROWID""",
        """INSERT INTO latest_decisions (ticket_id, backend, decision_id, label)
            SELECT d.ticket_id, d.backend, d.id, d.label FROM decisions d
            WHERE d.id = (SELECT max(id) FROM decisions
                          WHERE ticket_id = d.ticket_id AND backend = d.backend)""",
        """INSERT INTO backend_totals
            SELECT backend, max(backend_type), count(*), count(error_class),
                   coalesce(sum(cost_usd), 0),
                   coalesce(sum(CASE WHEN error_class IS NULL THEN input_tokens END), 0),
                   coalesce(sum(CASE WHEN error_class IS NULL THEN output_tokens END), 0),
                   count(CASE WHEN error_class IS NULL AND input_tokens IS NOT NULL THEN 1 END),
                   coalesce(sum(counterfactual_cost_usd), 0), count(counterfactual_cost_usd)
            FROM decisions GROUP BY backend""",
        """INSERT INTO label_agreement
            SELECT l.backend, l.label, t.label, count(*) FROM latest_decisions l
            JOIN tickets t ON t.id = l.ticket_id
            WHERE l.label IS NOT NULL AND t.label IS NOT NULL GROUP BY 1, 2, 3""",
        """INSERT INTO latency_histogram
            SELECT backend, td_bucket(total_ms), count(*) FROM decisions
            WHERE error_class IS NULL AND total_ms IS NOT NULL GROUP BY 1, 2""",
        """INSERT INTO cost_by_hour
            SELECT substr(created_at, 1, 13), backend, coalesce(sum(cost_usd), 0), count(*)
            FROM decisions GROUP BY 1, 2""",
        "DROP INDEX ix_decisions_backend_latency",
        "DROP INDEX ix_decisions_backend_stats",
        "DROP INDEX ix_decisions_created",
        """CREATE INDEX ix_decisions_backend ON decisions(backend, id)
        """,
    ),
    functions=(("td_bucket", 1, latency_bucket),),
)

V4 = Migration(
    "Claims, the ledger of duplicate calls and a key-value `meta` table. `claims` holds the"
    " tickets in flight: one row per ticket, so a second run cannot take a ticket another run"
    " is routing (`Store.claim_tickets`); a lease (`expires_at`) hands the tickets of a run"
    " that died back. `duplicate_calls` records each backend call whose decision was not"
    " stored because the run already had one for the ticket, so the cost aggregates still"
    " equal what was paid and can be recounted from the raw tables. `meta` holds facts about"
    " the database itself, such as the mark of a demo database.",
    (
        """CREATE TABLE claims (
            ticket_id TEXT PRIMARY KEY REFERENCES tickets(id) ON DELETE CASCADE,
            owner TEXT NOT NULL,
            run_id TEXT NOT NULL,
            expires_at TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX ix_claims_owner ON claims(owner)",
        "CREATE INDEX ix_claims_run ON claims(run_id)",
        """CREATE TABLE duplicate_calls (
            id INTEGER PRIMARY KEY,
            ticket_id TEXT NOT NULL,
            run_id TEXT NOT NULL,
            backend TEXT NOT NULL,
            cost_usd REAL,
            error_class TEXT,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID
        """,
    ),
)

SHADOWS = Migration(
    "Shadow mode and promotions. `shadow_decisions` holds what each `[routing] shadow`"
    " backend answered for a live ticket, beside the decision the agent saw (`decision_id`,"
    " made by `active_backend`): never a ticket's decision, so no inbox, export or backend"
    " statistic reads it. `shadow_skips` counts the tickets a shadow let pass because its"
    " queue was full (it must never slow the active backend). `promotions` records each"
    " `promote`: the backend made active, the one it replaced, who, when, and the comparison"
    " figures at that moment as JSON.",
    (
        """CREATE TABLE shadow_decisions (
            id INTEGER PRIMARY KEY,
            ticket_id TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
            run_id TEXT NOT NULL,
            shadow TEXT NOT NULL,
            backend_type TEXT NOT NULL,
            model TEXT NOT NULL DEFAULT '',
            active_backend TEXT NOT NULL,
            decision_id INTEGER NOT NULL,
            label TEXT,
            confidence REAL,
            total_ms REAL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cost_usd REAL,
            error_class TEXT,
            error_message TEXT,
            created_at TEXT NOT NULL
        )""",
        """CREATE INDEX ix_shadow_decisions_pair
            ON shadow_decisions(shadow, active_backend, ticket_id, id)""",
        """CREATE TABLE shadow_skips (
            shadow TEXT NOT NULL,
            active_backend TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (shadow, active_backend)
        ) WITHOUT ROWID""",
        """CREATE TABLE promotions (
            id INTEGER PRIMARY KEY,
            backend TEXT NOT NULL,
            previous_backend TEXT NOT NULL,
            agent TEXT NOT NULL,
            forced INTEGER NOT NULL DEFAULT 0,
            evidence TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
    ),
)

TRAINED = Migration(
    "Training sets: which tickets, with which labels, each trained model learnt from, so that"
    " no accuracy counts them. `trained_models` holds one row per model, under the identity"
    " its decisions store in `decisions.model`; `trained_texts` the hash of each training"
    " text and its label (how a model trained from a file is matched to this database's"
    " tickets); `trained_examples` the tickets of this database the model learnt, each with"
    " the label it learnt and the label event it came from (NULL when matched by text)."
    " `matched_seq` is the last ticket `seq` whose text has been matched.",
    (
        """CREATE TABLE trained_models (
            model TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            source TEXT NOT NULL,
            trained_at TEXT NOT NULL,
            n_examples INTEGER NOT NULL,
            recorded_at TEXT NOT NULL,
            matched_seq INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID""",
        """CREATE TABLE trained_texts (
            model TEXT NOT NULL REFERENCES trained_models(model) ON DELETE CASCADE,
            text_sha256 TEXT NOT NULL,
            label TEXT NOT NULL,
            PRIMARY KEY (model, text_sha256)
        ) WITHOUT ROWID""",
        """CREATE TABLE trained_examples (
            model TEXT NOT NULL REFERENCES trained_models(model) ON DELETE CASCADE,
            ticket_id TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
            label TEXT NOT NULL,
            label_event_id INTEGER,
            PRIMARY KEY (model, ticket_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX ix_trained_examples_ticket ON trained_examples(ticket_id, model)",
    ),
)

HELPDESK = Migration(
    "Helpdesk sync. `helpdesk_cursors`: where each `[helpdesk.NAME]`'s pull stands (its"
    " incremental cursor, written in the same transaction as the page it follows, so a crash"
    " resumes without gaps or duplicates) and its last pull. `helpdesk_tickets`: which"
    " helpdesk ticket each imported ticket is, with the helpdesk's `updated_at` stamp that a"
    " write sends back for Zendesk `safe_update`. `helpdesk_pushes`: every write-back, one row"
    " per label written to a ticket: `pending`, `sending` (started: a rerun checks the"
    " helpdesk for its marker before writing again), `done`, `failed`, `conflict` (someone"
    " changed the ticket since the push was queued, with the"
    " `stamp` it then had; never overwritten) or `superseded` (a newer label queued"
    " before it was sent). No token or secret is ever stored.",
    (
        """CREATE TABLE helpdesk_cursors (
            helpdesk TEXT PRIMARY KEY,
            cursor TEXT,
            last_pull_at TEXT,
            last_error TEXT
        ) WITHOUT ROWID""",
        """CREATE TABLE helpdesk_tickets (
            ticket_id TEXT PRIMARY KEY REFERENCES tickets(id) ON DELETE CASCADE,
            helpdesk TEXT NOT NULL,
            remote_id INTEGER NOT NULL,
            remote_updated_at TEXT NOT NULL,
            UNIQUE (helpdesk, remote_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE helpdesk_pushes (
            id INTEGER PRIMARY KEY,
            helpdesk TEXT NOT NULL,
            ticket_id TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
            label TEXT NOT NULL,
            previous_label TEXT,
            decision_id INTEGER,
            correction INTEGER NOT NULL DEFAULT 0,
            stamp TEXT,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            created_at TEXT NOT NULL,
            pushed_at TEXT
        )""",
        "CREATE INDEX ix_helpdesk_pushes_ticket ON helpdesk_pushes(ticket_id, id)",
        "CREATE INDEX ix_helpdesk_pushes_state ON helpdesk_pushes(helpdesk, state, id)",
    ),
)

AGENT_LEASES = Migration(
    "Agent leases (team mode): `agent_leases` holds the tickets agents are working on, one"
    " row per ticket, so two agents never get one ticket. Claims' mechanism (an `owner` that"
    " is a process, `expires_at` renewed while it lives, void once it lapses or the process"
    " is gone), in a table of its own: a routing run's claim and an agent's lease do not"
    " exclude each other (the ticket an agent has open may still be routed).",
    (
        """CREATE TABLE agent_leases (
            ticket_id TEXT PRIMARY KEY REFERENCES tickets(id) ON DELETE CASCADE,
            agent TEXT NOT NULL,
            owner TEXT NOT NULL,
            expires_at TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX ix_agent_leases_agent ON agent_leases(agent)",
        "CREATE INDEX ix_agent_leases_owner ON agent_leases(owner)",
    ),
)

LABEL_INDEX = Migration(
    "The labels tickets carry, as an index of their own: the taxonomy read when the config has"
    " no `[labels]` (`Store.known_labels`, on the TUI's first frame) and the unusable-labels"
    " check walk the distinct labels in it, one seek each, instead of reading every labelled"
    " ticket's row through `ix_tickets_labelled` (0.3-0.5 s at a million tickets).",
    ("CREATE INDEX ix_tickets_label ON tickets(label) WHERE label IS NOT NULL",),
)

MIGRATIONS: tuple[Migration, ...] = (
    V1,
    V2,
    V3,
    V4,
    SHADOWS,
    TRAINED,
    HELPDESK,
    AGENT_LEASES,
    LABEL_INDEX,
)
"""Ordered schema migrations; the database's `PRAGMA user_version` counts those applied."""
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Apply the migrations `conn`'s database has not seen, inside the caller's transaction;
    returns the version it was at.

    Raises:
        StoreError: The database's schema is newer than this triagedesk's.
    """
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {current} is newer than this triagedesk "
            f"({SCHEMA_VERSION}); upgrade triagedesk"
        )
    for version in range(current, SCHEMA_VERSION):
        MIGRATIONS[version](conn)
        conn.execute(f"PRAGMA user_version = {version + 1}")
    return current


PG_VERSION_TABLE = "triagedesk_schema"
"""PostgreSQL has no `user_version`: the schema version is the one row of this table."""


def pg_schema_version(conn: PgConnection) -> int:
    """The version a PostgreSQL database's schema is at (0: a new, empty database)."""
    found = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema()"
        " AND table_name = ?",
        (PG_VERSION_TABLE,),
    ).fetchone()
    if found is None:
        return 0
    row = conn.execute(f"SELECT version FROM {PG_VERSION_TABLE}").fetchone()
    return 0 if row is None else int(row[0])


def migrate_pg(conn: PgConnection, target: PgTarget) -> int:
    """`migrate` on PostgreSQL: the same migrations, each statement translated
    (`tui.core.store.pg.translate`), in the caller's transaction (PostgreSQL's DDL is
    transactional, so a failed step leaves the database as it was).

    Raises:
        StoreError: The database's schema is newer than this triagedesk's.
    """
    from tui.core.store.pg import PG_FUNCTIONS

    current = pg_schema_version(conn)
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"{target}: schema version {current} is newer than this triagedesk "
            f"({SCHEMA_VERSION}); upgrade triagedesk"
        )
    if current == SCHEMA_VERSION:
        return current
    if current == 0:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {PG_VERSION_TABLE} (version INTEGER NOT NULL)")
        conn.execute(f"DELETE FROM {PG_VERSION_TABLE}")
        conn.execute(f"INSERT INTO {PG_VERSION_TABLE} (version) VALUES (0)")
    for version in range(current, SCHEMA_VERSION):
        step = MIGRATIONS[version]
        for name, _, _ in step.functions:
            conn.execute(PG_FUNCTIONS[name])
        for statement in step.statements:
            conn.execute(statement)
        conn.execute(f"UPDATE {PG_VERSION_TABLE} SET version = ?", (version + 1,))
    return current
