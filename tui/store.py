"""The SQLite store: the only module that speaks SQL.

Plain tables with readable names (tickets, decisions, label_events, runs), so the database
opens in the `sqlite3` shell and sqlite-utils. Each ticket row also carries its current state
(latest decision, current agent label, disagreement flag), maintained in the same transaction
as the decision or label event that changes it, so inbox pages and filters are index look-ups
even at a million tickets.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tui.models import (
    BackendStats,
    Decision,
    InboxRow,
    LabelEvent,
    LabelSource,
    StageResult,
    Ticket,
    utcnow,
)
from tui.scoring import score

if TYPE_CHECKING:
    import sqlite_utils

InboxFilter = Literal["all", "unlabelled", "low_confidence", "disagreement", "errors", "unrouted"]
INBOX_FILTERS: tuple[InboxFilter, ...] = (
    "all",
    "unlabelled",
    "low_confidence",
    "disagreement",
    "errors",
    "unrouted",
)


class StoreError(Exception):
    """A store operation failed for a reason the user can act on."""


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run DDL statements one by one: `executescript` would commit the open transaction."""
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _v1(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE tickets (
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
        );
        CREATE TABLE decisions (
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
        );
        CREATE INDEX ix_decisions_ticket ON decisions(ticket_id, backend, id);
        CREATE TABLE label_events (
            id INTEGER PRIMARY KEY,
            ticket_id TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
            label TEXT,
            agent TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('accept', 'correct', 'import', 'cli', 'undo')),
            created_at TEXT NOT NULL
        );
        CREATE INDEX ix_label_events_ticket ON label_events(ticket_id, id);
        CREATE INDEX ix_tickets_unrouted ON tickets(seq) WHERE decision_id IS NULL;
        CREATE INDEX ix_tickets_unlabelled ON tickets(seq) WHERE label IS NULL;
        CREATE INDEX ix_tickets_labelled ON tickets(seq) WHERE label IS NOT NULL;
        CREATE INDEX ix_tickets_errors ON tickets(seq) WHERE error_class IS NOT NULL;
        CREATE INDEX ix_tickets_low_confidence ON tickets(confidence, seq)
            WHERE label IS NULL AND confidence IS NOT NULL;
        """,
    )


def _v2(db: sqlite3.Connection) -> None:
    """Runs (resumable batches), undo links, the disagreement flag and the stats indexes."""
    _script(
        db,
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            backend TEXT NOT NULL,
            selection TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'done')),
            started_at TEXT NOT NULL,
            finished_at TEXT
        );
        CREATE INDEX ix_runs_open ON runs(backend, selection) WHERE status = 'running';
        ALTER TABLE label_events ADD COLUMN undoes INTEGER REFERENCES label_events(id);
        CREATE INDEX ix_label_events_agent ON label_events(agent, id);
        ALTER TABLE tickets ADD COLUMN disagreement INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX ix_tickets_disagreement ON tickets(seq) WHERE disagreement = 1;
        CREATE INDEX ix_decisions_backend_latency ON decisions(backend, total_ms);
        CREATE INDEX ix_decisions_backend_stats
            ON decisions(backend, backend_type, error_class, cost_usd, counterfactual_cost_usd);
        CREATE INDEX ix_decisions_created ON decisions(created_at);
        """,
    )


LATENCY_BASE = 1.01
"""Latency histogram buckets grow by 1 %: percentiles at any scale within 1 % of exact."""


def latency_bucket(ms: float) -> int:
    return math.floor(math.log(max(ms, 0.001)) / math.log(LATENCY_BASE))


def bucket_value(bucket: int) -> float:
    """The geometric middle of a bucket: what a percentile falling in it reports."""
    return float(LATENCY_BASE ** (bucket + 0.5))


def _v3(db: sqlite3.Connection) -> None:
    """Aggregates kept up to date on every write, so statistics never scan the decisions:
    each ticket's latest decision per backend, per-backend totals, predicted-vs-agent label
    counts, latency histograms and hourly costs. Backfilled from existing decisions."""
    db.create_function("td_bucket", 1, latency_bucket, deterministic=True)
    _script(
        db,
        """
        CREATE TABLE latest_decisions (
            ticket_id TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
            backend TEXT NOT NULL,
            decision_id INTEGER NOT NULL,
            label TEXT,
            PRIMARY KEY (ticket_id, backend)
        ) WITHOUT ROWID;
        CREATE TABLE backend_totals (
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
        );
        CREATE TABLE label_agreement (
            backend TEXT NOT NULL,
            predicted TEXT NOT NULL,
            truth TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (backend, predicted, truth)
        ) WITHOUT ROWID;
        CREATE TABLE latency_histogram (
            backend TEXT NOT NULL,
            bucket INTEGER NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (backend, bucket)
        ) WITHOUT ROWID;
        CREATE TABLE cost_by_hour (
            hour TEXT NOT NULL,
            backend TEXT NOT NULL,
            cost_usd REAL NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (hour, backend)
        ) WITHOUT ROWID;
        INSERT INTO latest_decisions (ticket_id, backend, decision_id, label)
            SELECT d.ticket_id, d.backend, d.id, d.label FROM decisions d
            WHERE d.id = (SELECT max(id) FROM decisions
                          WHERE ticket_id = d.ticket_id AND backend = d.backend);
        INSERT INTO backend_totals
            SELECT backend, max(backend_type), count(*), count(error_class),
                   coalesce(sum(cost_usd), 0),
                   coalesce(sum(CASE WHEN error_class IS NULL THEN input_tokens END), 0),
                   coalesce(sum(CASE WHEN error_class IS NULL THEN output_tokens END), 0),
                   count(CASE WHEN error_class IS NULL AND input_tokens IS NOT NULL THEN 1 END),
                   coalesce(sum(counterfactual_cost_usd), 0), count(counterfactual_cost_usd)
            FROM decisions GROUP BY backend;
        INSERT INTO label_agreement
            SELECT l.backend, l.label, t.label, count(*) FROM latest_decisions l
            JOIN tickets t ON t.id = l.ticket_id
            WHERE l.label IS NOT NULL AND t.label IS NOT NULL GROUP BY 1, 2, 3;
        INSERT INTO latency_histogram
            SELECT backend, td_bucket(total_ms), count(*) FROM decisions
            WHERE error_class IS NULL AND total_ms IS NOT NULL GROUP BY 1, 2;
        INSERT INTO cost_by_hour
            SELECT substr(created_at, 1, 13), backend, coalesce(sum(cost_usd), 0), count(*)
            FROM decisions GROUP BY 1, 2;
        DROP INDEX ix_decisions_backend_latency;
        DROP INDEX ix_decisions_backend_stats;
        DROP INDEX ix_decisions_created;
        CREATE INDEX ix_decisions_backend ON decisions(backend, id)
        """,
    )


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2, _v3)
"""Ordered schema migrations; the database's `PRAGMA user_version` counts those applied."""
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True, slots=True)
class ImportResult:
    inserted: int
    duplicates: int
    labels_recorded: int


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: str
    backend: str
    selection: str
    status: str
    resumed: bool


@dataclass(frozen=True, slots=True)
class Cursor:
    """Keyset position in an inbox ordering: the last row's sort key."""

    seq: int
    confidence: float | None = None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class Store:
    """A connection to one triagedesk database.

    The connection may be used from any thread (the TUI's workers); a lock serialises calls,
    and WAL plus a busy timeout let other processes (a second TUI, a headless `route`) work
    on the same file at the same time.
    """

    BUSY_TIMEOUT_MS = 30_000

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=self.BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
                isolation_level=None,
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open database: {exc}") from None
        self.conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {self.BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: index inserts at 1M rows
            self._migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{self.path}: not a triagedesk database: {exc}") from None

    @functools.cached_property
    def db(self) -> sqlite_utils.Database:
        """The same connection through sqlite-utils, for ad-hoc table work and scripts.

        Imported on first use: sqlite-utils takes a noticeable part of the app's start-up."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        with self._write():
            current = self.schema_version
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {current} is newer than this triagedesk "
                    f"({SCHEMA_VERSION}); upgrade triagedesk"
                )
            for version in range(current, SCHEMA_VERSION):
                MIGRATIONS[version](self.conn)
                self.conn.execute(f"PRAGMA user_version = {version + 1}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short IMMEDIATE transaction; retried while another process holds the lock."""
        with self._lock:
            for attempt in range(50):
                try:
                    self.conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    time.sleep(min(0.05 * (attempt + 1), 1.0))
            else:
                raise StoreError(f"{self.path}: database stayed locked by another process")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self.conn.execute(sql, params)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()

    # Tickets ------------------------------------------------------------------------------

    def import_tickets(
        self, tickets: Sequence[Ticket], labels: dict[str, str] | None = None, *, source: str = ""
    ) -> ImportResult:
        """Insert tickets (ids already present are skipped) and their labels, atomically."""
        labels = labels or {}
        rows = [
            (
                t.id,
                t.subject,
                t.text,
                t.customer,
                t.channel,
                _iso(t.created_at),
                _iso(t.received_at),
                json.dumps(t.meta, ensure_ascii=False, default=str) if t.meta else "{}",
                source,
            )
            for t in tickets
        ]
        with self._write() as conn:
            existing = self._current_labels(conn, list(labels)) if labels else {}
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO tickets (id, subject, text, customer, channel, created_at,"
                " received_at, meta, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            inserted = conn.total_changes - before
            recorded = 0
            if labels:
                now = _iso(utcnow())
                changed = [(tid, lab) for tid, lab in labels.items() if existing.get(tid) != lab]
                for tid, lab in changed:
                    if tid in existing:  # new tickets have no decisions to re-score
                        self._relabel(conn, tid, existing[tid], lab)
                conn.executemany(
                    "INSERT INTO label_events (ticket_id, label, agent, source, created_at)"
                    " VALUES (?, ?, 'import', 'import', ?)",
                    [(tid, lab, now) for tid, lab in changed],
                )
                conn.executemany(
                    "UPDATE tickets SET label = ?, label_source = 'import' WHERE id = ?",
                    [(lab, tid) for tid, lab in changed],
                )
                recorded = len(changed)
        return ImportResult(inserted, len(rows) - inserted, recorded)

    @staticmethod
    def _current_labels(conn: sqlite3.Connection, ids: list[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for tid, label in conn.execute(
                f"SELECT id, label FROM tickets WHERE id IN ({marks})", chunk
            ):
                found[tid] = label
        return found

    @staticmethod
    def _ticket(row: sqlite3.Row) -> Ticket:
        return Ticket(
            id=row["id"],
            text=row["text"],
            subject=row["subject"],
            customer=row["customer"],
            channel=row["channel"],
            created_at=_dt(row["created_at"]),
            received_at=_dt(row["received_at"]) or utcnow(),
            meta=json.loads(row["meta"] or "{}"),
        )

    def get_ticket(self, ticket_id: str) -> Ticket | None:
        rows = self._read("SELECT * FROM tickets WHERE id = ?", (ticket_id,))
        return self._ticket(rows[0]) if rows else None

    def get_tickets(self, ids: Sequence[str]) -> list[Ticket]:
        out: list[Ticket] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._read(f"SELECT * FROM tickets WHERE id IN ({marks}) ORDER BY seq", chunk)
            out.extend(self._ticket(r) for r in rows)
        return out

    def ticket_count(self) -> int:
        return int(self._read("SELECT count(*) FROM tickets")[0][0])

    def max_seq(self) -> int:
        return int(self._read("SELECT coalesce(max(seq), 0) FROM tickets")[0][0])

    def unrouted_tickets(self, *, after_seq: int = 0, limit: int = 500) -> list[tuple[int, Ticket]]:
        rows = self._read(
            "SELECT * FROM tickets WHERE decision_id IS NULL AND seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [(r["seq"], self._ticket(r)) for r in rows]

    def count_unrouted(self) -> int:
        return int(self._read("SELECT count(*) FROM tickets WHERE decision_id IS NULL")[0][0])

    def labelled_examples(self) -> list[tuple[str, str]]:
        """(text, label) of every ticket with a current agent label, oldest first."""
        rows = self._read("SELECT text, label FROM tickets WHERE label IS NOT NULL ORDER BY seq")
        return [(r[0], r[1]) for r in rows]

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
        rows = self._read(sql + " ORDER BY seq")
        return [(r[1], r[2], r[3], r[4]) for r in rows]

    def known_labels(self) -> list[str]:
        rows = self._read(
            "SELECT DISTINCT label FROM label_events WHERE label IS NOT NULL ORDER BY label"
        )
        return [r[0] for r in rows]

    # Runs ---------------------------------------------------------------------------------

    def open_run(self, backend: str, selection: str) -> RunInfo:
        """Resume the unfinished run of this backend and selection, or start a new one."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT id FROM runs WHERE status = 'running' AND backend = ? AND selection = ?"
                " ORDER BY started_at DESC LIMIT 1",
                (backend, selection),
            ).fetchone()
            if row:
                return RunInfo(row[0], backend, selection, "running", resumed=True)
            run_id = f"run-{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
            conn.execute(
                "INSERT INTO runs (id, backend, selection, status, started_at)"
                " VALUES (?, ?, ?, 'running', ?)",
                (run_id, backend, selection, _iso(utcnow())),
            )
            return RunInfo(run_id, backend, selection, "running", resumed=False)

    def finish_run(self, run_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE runs SET status = 'done', finished_at = ? WHERE id = ?",
                (_iso(utcnow()), run_id),
            )

    def pending_in_run(
        self, run_id: str, *, ids: Sequence[str] | None = None, after_seq: int = 0, limit: int = 500
    ) -> list[tuple[int, Ticket]]:
        """Tickets of the selection without a decision in this run yet, in import order."""
        sql = (
            "SELECT t.* FROM tickets t WHERE t.seq > ? AND NOT EXISTS "
            "(SELECT 1 FROM decisions d WHERE d.run_id = ? AND d.ticket_id = t.id)"
        )
        params: list[Any] = [after_seq, run_id]
        if ids is not None:
            if not ids:
                return []
            sql += f" AND t.id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        sql += " ORDER BY t.seq LIMIT ?"
        params.append(limit)
        return [(r["seq"], self._ticket(r)) for r in self._read(sql, params)]

    def decisions_in_run(self, run_id: str) -> int:
        return int(self._read("SELECT count(*) FROM decisions WHERE run_id = ?", (run_id,))[0][0])

    # Decisions ----------------------------------------------------------------------------

    def record_decisions(self, decisions: Sequence[Decision]) -> list[Decision]:
        """Store a batch of decisions in one transaction and update each ticket's state and
        the statistics aggregates.

        A second decision for the same ticket in the same run is ignored (a resumed run never
        duplicates). Returns the decisions that were stored, with their ids.
        """
        stored: list[Decision] = []
        totals: dict[str, list[Any]] = {}
        agreement: Counter[tuple[str, str, str]] = Counter()
        histogram: Counter[tuple[str, int]] = Counter()
        hourly: dict[tuple[str, str], list[float]] = {}
        with self._write() as conn:
            for d in decisions:
                created = _iso(d.created_at) or ""
                cur = conn.execute(
                    "INSERT OR IGNORE INTO decisions (ticket_id, run_id, backend, backend_type,"
                    " model, prompt_version, label, confidence, confidence_source, reason,"
                    " total_ms, ttft_ms, server_load_ms, server_prompt_ms, server_gen_ms,"
                    " input_tokens, output_tokens, cached_input_tokens, tokens_estimated, cost_usd,"
                    " counterfactual_cost_usd, error_class, error_message, raw_output, stages,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                    " ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
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
                    ),
                )
                if cur.rowcount != 1:
                    continue
                decision_id = cur.lastrowid
                rows = conn.execute(
                    "SELECT t.label, l.backend, l.label FROM tickets t LEFT JOIN latest_decisions l"
                    " ON l.ticket_id = t.id WHERE t.id = ?",
                    (d.ticket_id,),
                ).fetchall()
                truth = rows[0][0] if rows else None
                latest = {backend: label for _, backend, label in rows if backend is not None}
                if truth is not None:
                    previous = latest.get(d.backend)
                    if previous is not None:
                        agreement[(d.backend, previous, truth)] -= 1
                    if d.label is not None:
                        agreement[(d.backend, d.label, truth)] += 1
                latest[d.backend] = d.label
                disagreement = len({label for label in latest.values() if label}) > 1
                conn.execute(
                    "INSERT INTO latest_decisions (ticket_id, backend, decision_id, label)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (ticket_id, backend) DO UPDATE"
                    " SET decision_id = excluded.decision_id, label = excluded.label",
                    (d.ticket_id, d.backend, decision_id, d.label),
                )
                conn.execute(
                    "UPDATE tickets SET decision_id = ?, predicted_label = ?, confidence = ?,"
                    " error_class = ?, disagreement = ? WHERE id = ?",
                    (
                        decision_id,
                        d.label,
                        d.confidence,
                        d.error_class,
                        int(disagreement),
                        d.ticket_id,
                    ),
                )
                self._tally(totals, histogram, hourly, d, created)
                stored.append(d.model_copy(update={"id": decision_id}))
            self._write_aggregates(conn, totals, agreement, histogram, hourly)
        return stored

    @staticmethod
    def _tally(
        totals: dict[str, list[Any]],
        histogram: Counter[tuple[str, int]],
        hourly: dict[tuple[str, str], list[float]],
        d: Decision,
        created: str,
    ) -> None:
        row = totals.setdefault(d.backend, [d.backend_type, 0, 0, 0.0, 0, 0, 0, 0.0, 0])
        row[1] += 1
        row[3] += d.cost_usd or 0.0
        if d.error_class is not None:
            row[2] += 1
        else:
            if d.input_tokens is not None:
                row[4] += d.input_tokens
                row[5] += d.output_tokens or 0
                row[6] += 1
            if d.total_ms is not None:
                histogram[(d.backend, latency_bucket(d.total_ms))] += 1
        if d.counterfactual_cost_usd is not None:
            row[7] += d.counterfactual_cost_usd
            row[8] += 1
        hour = hourly.setdefault((created[:13], d.backend), [0.0, 0])
        hour[0] += d.cost_usd or 0.0
        hour[1] += 1

    @staticmethod
    def _write_aggregates(
        conn: sqlite3.Connection,
        totals: dict[str, list[Any]],
        agreement: Counter[tuple[str, str, str]],
        histogram: Counter[tuple[str, int]],
        hourly: dict[tuple[str, str], list[float]],
    ) -> None:
        conn.executemany(
            "INSERT INTO backend_totals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (backend) DO UPDATE SET n = n + excluded.n,"
            " errors = errors + excluded.errors, cost_usd = cost_usd + excluded.cost_usd,"
            " input_tokens = input_tokens + excluded.input_tokens,"
            " output_tokens = output_tokens + excluded.output_tokens,"
            " tokens_n = tokens_n + excluded.tokens_n,"
            " counterfactual_usd = counterfactual_usd + excluded.counterfactual_usd,"
            " counterfactual_n = counterfactual_n + excluded.counterfactual_n",
            [(backend, *row) for backend, row in totals.items()],
        )
        Store._add_agreement(conn, agreement)
        conn.executemany(
            "INSERT INTO latency_histogram VALUES (?, ?, ?) ON CONFLICT (backend, bucket)"
            " DO UPDATE SET n = n + excluded.n",
            [(backend, bucket, n) for (backend, bucket), n in histogram.items()],
        )
        conn.executemany(
            "INSERT INTO cost_by_hour VALUES (?, ?, ?, ?) ON CONFLICT (hour, backend)"
            " DO UPDATE SET cost_usd = cost_usd + excluded.cost_usd, n = n + excluded.n",
            [(hour, backend, v[0], v[1]) for (hour, backend), v in hourly.items()],
        )

    @staticmethod
    def _add_agreement(conn: sqlite3.Connection, agreement: Counter[tuple[str, str, str]]) -> None:
        conn.executemany(
            "INSERT INTO label_agreement VALUES (?, ?, ?, ?) ON CONFLICT (backend, predicted,"
            " truth) DO UPDATE SET n = n + excluded.n",
            [(*key, n) for key, n in agreement.items() if n],
        )

    @staticmethod
    def _relabel(
        conn: sqlite3.Connection, ticket_id: str, old: str | None, new: str | None
    ) -> None:
        """Move the ticket's latest predictions from the old agent label to the new one in
        the agreement counts, so accuracy follows corrections and undos."""
        if old == new:
            return
        change: Counter[tuple[str, str, str]] = Counter()
        for backend, predicted in conn.execute(
            "SELECT backend, label FROM latest_decisions WHERE ticket_id = ? AND label IS NOT NULL",
            (ticket_id,),
        ):
            if old is not None:
                change[(backend, predicted, old)] -= 1
            if new is not None:
                change[(backend, predicted, new)] += 1
        Store._add_agreement(conn, change)

    @staticmethod
    def _decision(row: sqlite3.Row) -> Decision:
        data = dict(row)
        data["stages"] = tuple(StageResult(**s) for s in json.loads(data["stages"] or "[]"))
        data["tokens_estimated"] = bool(data["tokens_estimated"])
        return Decision(**data)

    def decisions_for(self, ticket_id: str) -> list[Decision]:
        rows = self._read("SELECT * FROM decisions WHERE ticket_id = ? ORDER BY id", (ticket_id,))
        return [self._decision(r) for r in rows]

    def latest_decision(self, ticket_id: str) -> Decision | None:
        rows = self._read(
            "SELECT d.* FROM tickets t JOIN decisions d ON d.id = t.decision_id WHERE t.id = ?",
            (ticket_id,),
        )
        return self._decision(rows[0]) if rows else None

    def decision_count(self) -> int:
        return int(self._read("SELECT count(*) FROM decisions")[0][0])

    def max_decision_id(self) -> int:
        """Newest decision id, so live views fetch only what arrived after it."""
        return int(self._read("SELECT coalesce(max(id), 0) FROM decisions")[0][0])

    def recent_decisions(self, *, after_id: int = 0, limit: int = 1000) -> list[Decision]:
        """Decisions newer than `after_id` (other processes' work, for live views)."""
        rows = self._read(
            "SELECT * FROM decisions WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [self._decision(r) for r in rows]

    # Labels -------------------------------------------------------------------------------

    def add_label(
        self, ticket_id: str, label: str, *, agent: str = "agent", source: LabelSource = "cli"
    ) -> LabelEvent:
        with self._write() as conn:
            found = conn.execute("SELECT label FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
            if found is None:
                raise StoreError(f"no ticket with id {ticket_id!r}")
            self._relabel(conn, ticket_id, found[0], label)
            event = LabelEvent(ticket_id=ticket_id, label=label, agent=agent, source=source)
            cur = conn.execute(
                "INSERT INTO label_events (ticket_id, label, agent, source, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (ticket_id, label, agent, source, _iso(event.created_at)),
            )
            conn.execute(
                "UPDATE tickets SET label = ?, label_source = ? WHERE id = ?",
                (label, source, ticket_id),
            )
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
            self._relabel(conn, ticket_id, current[0], label)
            event = LabelEvent(ticket_id=ticket_id, label=label, agent=agent, source="undo")
            cur = conn.execute(
                "INSERT INTO label_events (ticket_id, label, agent, source, created_at, undoes)"
                " VALUES (?, ?, ?, 'undo', ?, ?)",
                (ticket_id, label, agent, _iso(event.created_at), undone_id),
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
        return [LabelEvent(**dict(r)) for r in rows]

    def label_event_count(self) -> int:
        return int(self._read("SELECT count(*) FROM label_events")[0][0])

    # Inbox --------------------------------------------------------------------------------

    _INBOX_SELECT = (
        "SELECT t.seq, t.id AS ticket_id, t.received_at, t.subject,"
        " substr(t.text, 1, 400) AS text, t.label, t.label_source, t.predicted_label,"
        " t.confidence, t.error_class, t.disagreement, d.backend, d.total_ms, d.cost_usd"
        " FROM tickets t LEFT JOIN decisions d ON d.id = t.decision_id"
    )

    _FILTER_WHERE: dict[str, str] = {
        "all": "1",
        "unlabelled": "t.label IS NULL",
        "low_confidence": "t.label IS NULL AND t.confidence IS NOT NULL",
        "disagreement": "t.disagreement = 1",
        "errors": "t.error_class IS NOT NULL",
        "unrouted": "t.decision_id IS NULL",
    }

    def inbox_page(
        self,
        flt: InboxFilter = "all",
        *,
        after: Cursor | None = None,
        before: Cursor | None = None,
        limit: int = 100,
    ) -> list[InboxRow]:
        """One page of the inbox by keyset.

        Most filters list newest first (seq descending); `low_confidence` lists the least
        sure first. `after` continues down the list from a row, `before` goes back up;
        rows always come back in display order.
        """
        if flt not in self._FILTER_WHERE:
            raise StoreError(f"unknown inbox filter {flt!r}")
        where = [self._FILTER_WHERE[flt]]
        params: list[Any] = []
        by_confidence = flt == "low_confidence"
        if by_confidence:
            order, reverse = "t.confidence ASC, t.seq ASC", "t.confidence DESC, t.seq DESC"
            if after is not None:
                where.append("(t.confidence, t.seq) > (?, ?)")
                params += [after.confidence, after.seq]
            if before is not None:
                where.append("(t.confidence, t.seq) < (?, ?)")
                params += [before.confidence, before.seq]
        else:
            order, reverse = "t.seq DESC", "t.seq ASC"
            if after is not None:
                where.append("t.seq < ?")
                params.append(after.seq)
            if before is not None:
                where.append("t.seq > ?")
                params.append(before.seq)
        going_up = before is not None and after is None
        sql = (
            f"{self._INBOX_SELECT} WHERE {' AND '.join(where)}"
            f" ORDER BY {reverse if going_up else order} LIMIT ?"
        )
        params.append(limit)
        rows = [self._inbox_row(r) for r in self._read(sql, params)]
        return rows[::-1] if going_up else rows

    @staticmethod
    def _inbox_row(row: sqlite3.Row) -> InboxRow:
        data = dict(row)
        data["received_at"] = _dt(data["received_at"])
        data["disagreement"] = bool(data["disagreement"])
        return InboxRow(**data)

    def inbox_row(self, ticket_id: str) -> InboxRow | None:
        rows = self._read(f"{self._INBOX_SELECT} WHERE t.id = ?", (ticket_id,))
        return self._inbox_row(rows[0]) if rows else None

    def inbox_count(self, flt: InboxFilter = "all") -> int:
        where = self._FILTER_WHERE[flt]
        return int(self._read(f"SELECT count(*) FROM tickets t WHERE {where}")[0][0])

    @staticmethod
    def cursor_of(row: InboxRow) -> Cursor:
        return Cursor(seq=row.seq, confidence=row.confidence)

    # Statistics ---------------------------------------------------------------------------

    def latency_percentiles(self, backend: str) -> dict[str, float | None]:
        """p50/p95 of successful decisions from the latency histogram (within 1 %)."""
        buckets = self._read(
            "SELECT bucket, n FROM latency_histogram WHERE backend = ? AND n > 0 ORDER BY bucket",
            (backend,),
        )
        total = sum(n for _, n in buckets)
        out: dict[str, float | None] = {}
        for name, q in (("p50", 0.5), ("p95", 0.95)):
            out[name] = None
            if total == 0:
                continue
            index = min(total - 1, max(0, round(q * (total - 1))))
            seen = 0
            for bucket, n in buckets:
                seen += n
                if seen > index:
                    out[name] = bucket_value(bucket)
                    break
        return out

    def backend_stats(self, *, daily_volume: int = 0) -> list[BackendStats]:
        """Per-backend figures against the agents' labels (SPEC `stats --json`), read from the
        aggregates, so they cost the same at a million decisions as at a hundred."""
        from tui.costs import monthly, per_1k

        totals = self._read(
            "SELECT backend, backend_type, n, errors, cost_usd FROM backend_totals ORDER BY backend"
        )
        by_backend: dict[str, list[tuple[str, str, int]]] = {}
        for backend, predicted, truth, count in self._read(
            "SELECT backend, predicted, truth, n FROM label_agreement WHERE n > 0"
        ):
            by_backend.setdefault(backend, []).append((predicted, truth, count))
        out: list[BackendStats] = []
        for backend, backend_type, n, errors, cost in totals:
            scored = score(by_backend.get(backend, []))
            answered = n - errors
            per_ticket = cost / answered if answered else None
            out.append(
                BackendStats(
                    backend=backend,
                    backend_type=backend_type,
                    n=n,
                    errors=errors,
                    accuracy=scored.accuracy,
                    macro_f1=scored.macro_f1,
                    labelled=scored.support,
                    latency_ms=self.latency_percentiles(backend),
                    cost_usd=cost,
                    cost_per_1k_usd=per_1k(cost, answered),
                    projected_monthly_usd=monthly(per_ticket, daily_volume),
                    per_label=scored.per_label,
                )
            )
        return out

    def latencies(self, backend: str, *, limit: int = 5000) -> list[float]:
        """The most recent successful latencies of a backend, for histograms."""
        rows = self._read(
            "SELECT total_ms FROM decisions WHERE backend = ? AND error_class IS NULL"
            " AND total_ms IS NOT NULL ORDER BY id DESC LIMIT ?",
            (backend, limit),
        )
        return [float(r[0]) for r in rows]

    def cost_timeline(self, *, bucket_chars: int = 13) -> list[tuple[str, str, float, int]]:
        """(bucket, backend, cost, decisions) by hour (ISO prefix of 13 characters) or day (10)."""
        rows = self._read(
            "SELECT substr(hour, 1, ?) AS bucket, backend, sum(cost_usd), sum(n)"
            " FROM cost_by_hour GROUP BY bucket, backend ORDER BY bucket",
            (min(bucket_chars, 13),),
        )
        return [(r[0], r[1], float(r[2]), int(r[3])) for r in rows]

    def token_means(self, backend: str) -> tuple[float | None, float | None]:
        """Mean input and output tokens per successful decision, for cost projections."""
        rows = self._read(
            "SELECT input_tokens, output_tokens, tokens_n FROM backend_totals WHERE backend = ?",
            (backend,),
        )
        if not rows or not rows[0][2]:
            return (None, None)
        tokens_in, tokens_out, n = rows[0]
        return (tokens_in / n, tokens_out / n)

    def counterfactual_mean(self) -> float | None:
        """Mean counterfactual cost per decision: the reference backend's price of a ticket."""
        row = self._read(
            "SELECT sum(counterfactual_usd), sum(counterfactual_n) FROM backend_totals"
        )[0]
        return None if not row[1] else float(row[0]) / row[1]

    def integrity_ok(self) -> bool:
        return bool(self._read("PRAGMA integrity_check")[0][0] == "ok")
