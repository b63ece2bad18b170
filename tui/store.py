"""The SQLite store: the only module that speaks SQL.

Plain tables with readable names (tickets, decisions, label_events, runs), so the database
opens in the `sqlite3` shell and sqlite-utils. Each ticket row also carries its current state
(latest decision, current agent label, disagreement flag), maintained in the same transaction
as the decision or label event that changes it, so inbox pages and filters are index look-ups
even at a million tickets.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tui.models import (
    STORED,
    BackendStats,
    Decision,
    InboxRow,
    LabelEvent,
    LabelSource,
    StageResult,
    Ticket,
    check_label_name,
    label_problem,
    utcnow,
)
from tui.scoring import score

if TYPE_CHECKING:
    import sqlite_utils

    from tui.ingest import RowError

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


def _v4(db: sqlite3.Connection) -> None:
    """Claims, the ledger of duplicate calls and a key-value `meta` table.

    `claims` holds the tickets in flight: one row per ticket, so a second run cannot take a
    ticket another run is routing (`Store.claim_tickets`); a lease (`expires_at`) hands the
    tickets of a run that died back. `duplicate_calls` records each backend call whose
    decision was not stored because the run already had one for the ticket, so the cost
    aggregates still equal what was paid and can be recounted from the raw tables. `meta`
    holds facts about the database itself, such as the mark of a demo database."""
    _script(
        db,
        """
        CREATE TABLE claims (
            ticket_id TEXT PRIMARY KEY REFERENCES tickets(id) ON DELETE CASCADE,
            owner TEXT NOT NULL,
            run_id TEXT NOT NULL,
            expires_at TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX ix_claims_owner ON claims(owner);
        CREATE INDEX ix_claims_run ON claims(run_id);
        CREATE TABLE duplicate_calls (
            id INTEGER PRIMARY KEY,
            ticket_id TEXT NOT NULL,
            run_id TEXT NOT NULL,
            backend TEXT NOT NULL,
            cost_usd REAL,
            error_class TEXT,
            created_at TEXT NOT NULL
        );
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID
        """,
    )


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2, _v3, _v4)
"""Ordered schema migrations; the database's `PRAGMA user_version` counts those applied."""
SCHEMA_VERSION = len(MIGRATIONS)


class ImportRejected(StoreError):
    """An import was refused whole: some tickets conflict with ones already stored (same id,
    other content) or carry an unusable label. Nothing was written.

    `errors` has one `RowError` per offending ticket, with the line its record starts on when
    the caller passed `lines` (0 otherwise), so every importer (CLI, watch folder, `eval
    --store`) lists them exactly like the parser's own row errors: `file:line: reason`.
    """

    def __init__(self, source: str, errors: list[RowError]) -> None:
        self.source = source
        self.errors = errors
        first = errors[0]
        where = f"{source}:{first.line}" if first.line else (source or "import")
        more = f" ({len(errors)} bad rows)" if len(errors) > 1 else ""
        super().__init__(f"{where}: {first.reason}{more}; nothing imported from this file")


CONTENT_COLUMNS = ("subject", "text", "customer", "channel", "created_at")
"""What makes two tickets with one id the same ticket when a later file repeats the id. The
routed content and its sender, not `meta`: metadata columns (status, assignee) change from one
CRM export to the next, while a changed text under an old id means the file is not what was
imported before, and keeping the old text while taking the new label would mislabel it."""


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


CLAIM_LEASE_S = 60.0
"""How long a claim holds a ticket without renewal. A run renews its claims every quarter of
this while it routes, so only a run that died (or stalled for a whole lease) loses them."""


@dataclass(frozen=True, slots=True)
class PendingQuery:
    """One page of the tickets a run has still to route, by keyset on import order: those
    without a decision in the run (of `ids` only, when given), or with `unrouted_only` those
    without any decision at all."""

    ids: tuple[str, ...] | None = None
    unrouted_only: bool = False
    after_seq: int = 0
    limit: int = 500


@dataclass(frozen=True, slots=True)
class Claimed:
    """What `Store.claim_tickets` took and what it had to leave."""

    tickets: list[tuple[int, Ticket]]
    """(seq, ticket) now claimed by the owner, in import order."""
    held: dict[str, int]
    """Tickets asked for that another owner's live claim holds: owner -> how many."""
    last_seq: int
    """Highest seq looked at (claimed or held): where the next page starts."""


def claim_owner() -> str:
    """A new claim owner, `host:pid:tag`: one per routing session (the TUI may route a batch and
    a single ticket at once, each its own owner), the pid saying which process holds tickets."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_parts(owner: str) -> tuple[str, int] | None:
    host, sep, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return (host, int(pid)) if sep and pid.isdigit() else None


def owner_alive(owner: str) -> bool:
    """False only for an owner that is a process of this host that no longer exists: its claims
    are void at once (a `kill -9`ed run). Owners elsewhere (another machine on a shared
    database) are trusted until their lease runs out; a reused pid errs on the safe side."""
    parts = _owner_parts(owner)
    if parts is None or parts[0] != socket.gethostname():
        return True
    try:
        os.kill(parts[1], 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def describe_owner(owner: str) -> str:
    """`pid 1234`, or `pid 1234 on otherhost` for a process of another machine."""
    parts = _owner_parts(owner)
    if parts is None:
        return repr(owner[:60])
    host, pid = parts
    return f"pid {pid}" if host == socket.gethostname() else f"pid {pid} on {host[:60]}"


def _stamp(moment: datetime) -> str:
    """A claim time: UTC ISO with microseconds always, so text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class DatabaseProbe:
    """What a database file holds, read without changing it (see `probe_database`)."""

    tickets: int
    """Tickets stored."""
    demo_tickets: int
    """Tickets the demo generated (source `demo`)."""
    other_rows: int
    """Label events, decisions and runs: anything but the tickets themselves."""
    marked_demo: bool
    """The database carries the demo's mark (`meta` key `demo`)."""


def probe_database(path: Path) -> DatabaseProbe | None:
    """Look into a database file read-only: no migration, no WAL switch, nothing created.
    None when no file is there.

    Raises:
        StoreError: The file is not a SQLite database, or cannot be read.
    """
    if not path.exists() and not path.is_symlink():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{path}: cannot read: {exc}") from None
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return DatabaseProbe(0, 0, 0, marked_demo=False)
        if "tickets" not in tables:
            raise StoreError(f"{path}: not a triagedesk database")
        tickets, demo = conn.execute(
            "SELECT count(*), count(CASE WHEN source = 'demo' THEN 1 END) FROM tickets"
        ).fetchone()
        other = sum(
            int(conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0])
            for name in ("label_events", "decisions", "runs")
            if name in tables
        )
        marked = "meta" in tables and bool(
            conn.execute("SELECT 1 FROM meta WHERE key = 'demo'").fetchone()
        )
        return DatabaseProbe(int(tickets), int(demo), other, marked_demo=marked)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a triagedesk database: {exc}") from None
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class Cursor:
    """Keyset position in an inbox ordering: the last row's sort key."""

    seq: int
    confidence: float | None = None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _shown(value: str, limit: int = 40) -> str:
    """A user-supplied string for an error line: quoted, escaped (no newline or bidi control
    reaches the terminal), and cut to `limit` characters."""
    cut = value if len(value) <= limit else value[:limit] + "…"
    return repr(cut)


def describe_unusable_labels(found: Mapping[str, tuple[str, int]]) -> str:
    """One warning line for `Store.unusable_labels()`: each label escaped, with its reason."""
    n = sum(count for _, count in found.values())
    shown = "; ".join(
        f"{_shown(label)} ({reason}, {count} ticket{'s' if count != 1 else ''})"
        for label, (reason, count) in sorted(found.items())[:10]
    )
    more = f"; and {len(found) - 10} more" if len(found) > 10 else ""
    return (
        f"skipping {n} ticket{'s' if n != 1 else ''} whose label is unusable"
        " (written by an older version):"
        f" {shown}{more}; relabel them with `triagedesk label ID LABEL`"
    )


def _content(ticket: Ticket) -> tuple[Any, ...]:
    """A ticket's `CONTENT_COLUMNS` values; dates compare as instants, not as strings."""
    return (ticket.subject, ticket.text, ticket.customer, ticket.channel, ticket.created_at)


DB_FILE_MODE = 0o600
"""The database file: customer text, readable by its owner only. SQLite gives the -wal and
-shm files the database file's own mode, so they are private too."""

_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT = 3, 8, 10, 11
_SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 13, 14, 26
"""SQLite's primary result codes (the low byte of `sqlite3.Error.sqlite_errorcode`)."""


def _companions(path: Path) -> tuple[Path, ...]:
    """The database file and the -wal / -shm files SQLite keeps beside it."""
    return (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))


def _read_only_reason(path: Path) -> str | None:
    """Why the database cannot be written, when the file system or permissions say so."""
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    for part in _companions(path):
        if part.exists() and not os.access(part, os.W_OK):
            return f"no write permission on {part.name}"
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        return f"no write permission on its folder {folder}"
    return None


def _disk_full(path: Path) -> bool:
    try:
        return os.statvfs(path.parent).f_bavail == 0
    except OSError:
        return False


def storage_problem(path: Path, exc: BaseException) -> str | None:
    """One line naming `path` for a failure of the disk or of the file itself (read-only, disk
    full, cannot open, not a database, damaged), or None for any other error.

    SQLite reports these as generic `OperationalError`s ("attempt to write a readonly
    database", "unable to open database file"); the result code tells them apart, and the
    file system says why a database is read-only. Constraint violations and programming
    errors give None: they stay what they are.
    """
    if isinstance(exc, OSError):
        if exc.errno == errno.EROFS:
            return f"{path}: database is read-only (read-only file system)"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"{path}: database is read-only (permission denied: {exc.strerror})"
        if exc.errno == errno.ENOSPC:
            return f"{path}: disk full; nothing was stored"
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.Error) or not isinstance(code, int):
        return None
    primary = code & 0xFF
    if primary in (_SQLITE_READONLY, _SQLITE_PERM):
        why = _read_only_reason(path) or str(exc)
        return f"{path}: database is read-only ({why}); the change was not stored"
    if primary == _SQLITE_FULL or (primary == _SQLITE_IOERR and _disk_full(path)):
        return (
            f"{path}: disk full ({exc}); the change was not stored, "
            "everything stored before is intact"
        )
    if primary == _SQLITE_IOERR:
        return f"{path}: I/O error ({exc}); the change was not stored"
    if primary == _SQLITE_CANTOPEN:
        reason = _read_only_reason(path)
        if reason is not None:
            return f"{path}: database is read-only ({reason}); cannot open it"
        return f"{path}: cannot open the database file ({exc})"
    if primary == _SQLITE_NOTADB:
        return f"{path}: not a triagedesk database (not an SQLite file)"
    if primary == _SQLITE_CORRUPT:
        return f"{path}: the database file is damaged ({exc}); restore it from a backup"
    return None


def _storage_error(path: Path, exc: BaseException, fallback: str) -> StoreError:
    return StoreError(storage_problem(path, exc) or f"{path}: {fallback}: {exc}")


def _prepare_database_file(path: Path, *, create: bool, make_folder: bool) -> None:
    """Make sure the database file exists and is private before SQLite opens it.

    SQLite would create a new file 0644 minus the umask, and gives its -wal and -shm files
    the database file's own mode: creating the file 0600 ourselves first makes all three
    private whatever the umask. An existing file of ours that other users may read (made
    by an older version) loses its bits for others; group bits are kept, they may be a
    deliberate team share.
    """
    if path.is_dir():
        raise StoreError(f"{path}: is a folder, not a database")
    if path.is_symlink() and not path.exists():
        raise StoreError(f"{path}: a link to nothing, not a database")
    if path.exists():
        for part in _companions(path):
            try:
                info = part.stat()
                if info.st_uid == os.geteuid() and info.st_mode & 0o007:
                    part.chmod(info.st_mode & 0o770)
            except OSError:  # gone meanwhile, or a read-only file system: nothing to tighten
                continue
        return
    if not create:
        raise StoreError(f"no database at {path} (`triagedesk import FILE` creates one)")
    folder = path.parent
    if not folder.is_dir():
        if not make_folder:
            raise StoreError(f"{path}: folder {folder} does not exist; create it first")
        from tui.safe_files import private_dir

        try:
            private_dir(folder)
        except OSError as exc:
            raise StoreError(f"{path}: cannot create folder {folder}: {exc.strerror}") from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, DB_FILE_MODE)
    except FileExistsError:  # another process created it meanwhile
        return
    except OSError as exc:
        raise _storage_error(path, exc, "cannot create the database") from None
    try:
        os.fchmod(fd, DB_FILE_MODE)  # the umask may have taken bits off, 0o200 included
    finally:
        os.close(fd)


class Store:
    """A connection to one triagedesk database.

    The connection may be used from any thread (the TUI's workers); a lock serialises calls,
    and WAL plus a busy timeout let other processes (a second TUI, a headless `route`) work
    on the same file at the same time.
    """

    BUSY_TIMEOUT_MS = 30_000

    def __init__(self, path: Path | str, *, create: bool = True, make_folder: bool = False) -> None:
        """Open the database at `path`, migrating it to the current schema.

        Args:
            create: Create the file when it is missing (commands that write). With False a
                missing database is a StoreError, so a read-only command leaves nothing behind.
            make_folder: Also create missing folders above it (0700). Only for our own data
                dir: a folder the user named must exist, so a typo does not grow a tree.

        Raises:
            StoreError: One line naming the path: no database, folder missing, read-only,
                disk full, not a triagedesk database, damaged, or a newer schema.
        """
        self.path = Path(path)
        self._lock = threading.RLock()
        _prepare_database_file(self.path, create=create, make_folder=make_folder)
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
                isolation_level=None,
            )
        except (OSError, sqlite3.Error) as exc:
            raise _storage_error(self.path, exc, "cannot open database") from None
        self.conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {self.BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: index inserts at 1M rows
            self._migrate()
        except sqlite3.Error as exc:
            conn.close()
            raise _storage_error(self.path, exc, "not a triagedesk database") from None
        except BaseException:
            conn.close()
            raise

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
        """One short IMMEDIATE transaction; retried while another process holds the lock.

        A failure of the disk or of the file (read-only, disk full, damaged), in a statement
        or at COMMIT, rolls the transaction back and becomes a StoreError that names the path
        and says what happened (`storage_problem`): the command ends with one clear line, and
        everything committed before stays as it was. Other errors propagate unchanged.
        """
        with self._lock:
            for attempt in range(50):
                try:
                    self.conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        problem = storage_problem(self.path, exc)
                        if problem is not None:
                            raise StoreError(problem) from None
                        raise
                    time.sleep(min(0.05 * (attempt + 1), 1.0))
            else:
                raise StoreError(f"{self.path}: database stayed locked by another process")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as exc:
                # SQLite has already rolled back after some errors (a full disk among them):
                # a second ROLLBACK would raise and hide the error that matters.
                if self.conn.in_transaction:
                    with suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    problem = storage_problem(self.path, exc)
                    if problem is not None:
                        raise StoreError(problem) from None
                raise

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self.conn.execute(sql, params)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()

    # Tickets ------------------------------------------------------------------------------

    def import_tickets(
        self,
        tickets: Sequence[Ticket],
        labels: dict[str, str] | None = None,
        *,
        source: str = "",
        lines: Mapping[str, int] | None = None,
    ) -> ImportResult:
        """Insert tickets and their labels, atomically: all of them or, on a problem, none.

        An id already present with the same content (`CONTENT_COLUMNS`) is skipped, and its
        label, when the file gives a different one, is recorded as an `import` label event: a
        re-export whose label column was corrected upstream relabels, visibly in the history.
        An id already present with other content is a conflict, as a repeated id with other
        content is within one file: the whole import is refused with `ImportRejected`.

        Args:
            tickets: The file's tickets.
            labels: Ticket id -> agent label; each must pass `check_label_name`.
            source: The file's name, for the tickets' `source` column and error lines.
            lines: Ticket id -> the line its record starts on, for the error lines.

        Raises:
            ImportRejected: Conflicting ids or unusable labels; nothing was written.
        """
        labels = labels or {}
        lines = lines or {}
        problems: list[tuple[str, str]] = []
        for tid, lab in labels.items():
            try:
                if check_label_name(lab) != lab:
                    raise ValueError("label has surrounding whitespace")
            except ValueError as exc:
                problems.append((tid, f"field 'label': {exc}"))
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
            # Labels may name stored tickets the list does not repeat: look those up too.
            stored = self._stored_content(
                conn, list(dict.fromkeys([*(t.id for t in tickets), *labels]))
            )
            for t in tickets:
                found = stored.get(t.id)
                if found is not None and found[0] != _content(t):
                    problems.append((t.id, f"id {t.id} already imported with other content"))
            if problems:
                from tui.ingest import RowError

                errors = [RowError(line=lines.get(tid, 0), reason=why) for tid, why in problems]
                errors.sort(key=lambda e: e.line)
                raise ImportRejected(source, errors)
            existing = {tid: found[1] for tid, found in stored.items()}
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
    def _stored_content(
        conn: sqlite3.Connection, ids: list[str]
    ) -> dict[str, tuple[tuple[Any, ...], str | None]]:
        """Ticket id -> (its `CONTENT_COLUMNS` values, its current label) for stored ids."""
        found: dict[str, tuple[tuple[Any, ...], str | None]] = {}
        columns = ", ".join(CONTENT_COLUMNS)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for tid, label, subject, text, customer, channel, created in conn.execute(
                f"SELECT id, label, {columns} FROM tickets WHERE id IN ({marks})", chunk
            ):
                found[tid] = ((subject, text, customer, channel, _dt(created)), label)
        return found

    @staticmethod
    def _ticket(row: sqlite3.Row) -> Ticket:
        # STORED: an id an older version accepted (a newline in it) must still load.
        return Ticket.model_validate(
            {
                "id": row["id"],
                "text": row["text"],
                "subject": row["subject"],
                "customer": row["customer"],
                "channel": row["channel"],
                "created_at": _dt(row["created_at"]),
                "received_at": _dt(row["received_at"]) or utcnow(),
                "meta": json.loads(row["meta"] or "{}"),
            },
            context=STORED,
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
        rows = self._read(
            "SELECT DISTINCT label FROM tickets WHERE label IS NOT NULL ORDER BY label"
        )
        return [r[0] for r in rows if label_problem(r[0]) is None]

    def unusable_labels(self) -> dict[str, tuple[str, int]]:
        """Current labels that today's rules refuse (empty, control characters, too long),
        as older versions could write them: label -> (reason, number of tickets).

        The readers that feed taxonomies, training and exports skip these; the commands warn
        with `describe_unusable_labels` so that the agent can relabel the tickets."""
        rows = self._read(
            "SELECT label, count(*) FROM tickets WHERE label IS NOT NULL GROUP BY label"
        )
        found: dict[str, tuple[str, int]] = {}
        for label, n in rows:
            problem = label_problem(label)
            if problem is not None:
                found[label] = (problem, int(n))
        return found

    # Runs ---------------------------------------------------------------------------------

    def open_run(self, backend: str, selection: str) -> RunInfo:
        """Resume the unfinished run of this backend and selection, or start a new one.

        Two processes started with the same backend and selection share the run: the claims
        (`claim_tickets`) split its tickets between them, so each is routed once."""
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

    def finish_run(self, run_id: str) -> bool:
        """Mark the run done, unless claims in it remain: another process sharing the run is
        still routing its part, or one died holding tickets the run has not decided yet (the
        next `route` resumes the run and takes them). Returns whether it was marked done."""
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM claims WHERE run_id = ? LIMIT 1", (run_id,)).fetchone():
                return False
            conn.execute(
                "UPDATE runs SET status = 'done', finished_at = ? WHERE id = ?",
                (_iso(utcnow()), run_id),
            )
            return True

    @staticmethod
    def _pending_sql(run_id: str, query: PendingQuery) -> tuple[str, list[Any]]:
        if query.unrouted_only:
            sql = "SELECT t.* FROM tickets t WHERE t.decision_id IS NULL AND t.seq > ?"
            params: list[Any] = [query.after_seq]
        else:
            sql = (
                "SELECT t.* FROM tickets t WHERE t.seq > ? AND NOT EXISTS "
                "(SELECT 1 FROM decisions d WHERE d.run_id = ? AND d.ticket_id = t.id)"
            )
            params = [query.after_seq, run_id]
        if query.ids is not None:
            sql += f" AND t.id IN ({','.join('?' * len(query.ids))})"
            params.extend(query.ids)
        params.append(query.limit)
        return sql + " ORDER BY t.seq LIMIT ?", params

    def pending_in_run(
        self, run_id: str, *, ids: Sequence[str] | None = None, after_seq: int = 0, limit: int = 500
    ) -> list[tuple[int, Ticket]]:
        """Tickets of the selection without a decision in this run yet, in import order."""
        if ids is not None and not ids:
            return []
        query = PendingQuery(None if ids is None else tuple(ids), False, after_seq, limit)
        sql, params = self._pending_sql(run_id, query)
        return [(r["seq"], self._ticket(r)) for r in self._read(sql, params)]

    # Claims -------------------------------------------------------------------------------

    def claim_tickets(
        self, owner: str, run_id: str, which: Sequence[str] | PendingQuery, lease_s: float
    ) -> Claimed:
        """Claim tickets for `owner` in one IMMEDIATE transaction, so that two runs can never
        both take one: the tickets of `which` (ids, or a page of a run's pending tickets)
        that no other owner holds. A claim is void, and taken over, once its lease has run
        out or when its owner is a process of this host that no longer exists; the owner's
        own claims are renewed. Ids with no ticket are left out.

        Args:
            owner: Who claims (`claim_owner()`): one routing session.
            run_id: The run the tickets are routed in (and, for a `PendingQuery`, whose
                decisions say what is still pending).
            which: Ticket ids, or a page of pending tickets.
            lease_s: Seconds the claims hold without `renew_claims`.
        """
        if not (math.isfinite(lease_s) and lease_s >= 0):
            raise StoreError(f"claim lease {lease_s!r}: must be a finite number of seconds >= 0")
        now = utcnow()
        now_s, expires = _stamp(now), _stamp(now + timedelta(seconds=lease_s))
        with self._write() as conn:
            if isinstance(which, PendingQuery):
                if which.ids is not None and not which.ids:
                    return Claimed([], {}, which.after_seq)
                sql, params = self._pending_sql(run_id, which)
                rows = self._rows(conn, sql, params)
                last_seq = max([which.after_seq, *(r["seq"] for r in rows)])
            else:
                ids = list(dict.fromkeys(which))
                rows = []
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows += self._rows(conn, f"SELECT * FROM tickets WHERE id IN ({marks})", chunk)
                rows.sort(key=lambda r: int(r["seq"]))
                last_seq = max([0, *(r["seq"] for r in rows)])
            claims = self._claims_on(conn, [r["id"] for r in rows])
            alive: dict[str, bool] = {}
            taken: list[sqlite3.Row] = []
            held: Counter[str] = Counter()
            for row in rows:
                found = claims.get(row["id"])
                if found is not None and found[0] != owner and found[1] > now_s:
                    if found[0] not in alive:
                        alive[found[0]] = owner_alive(found[0])
                    if alive[found[0]]:
                        held[found[0]] += 1
                        continue
                taken.append(row)
            conn.executemany(
                "INSERT INTO claims (ticket_id, owner, run_id, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (ticket_id) DO UPDATE SET owner = excluded.owner,"
                " run_id = excluded.run_id, expires_at = excluded.expires_at",
                [(row["id"], owner, run_id, expires) for row in taken],
            )
        return Claimed([(r["seq"], self._ticket(r)) for r in taken], dict(held), last_seq)

    @staticmethod
    def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        cur = conn.execute(sql, params)
        cur.row_factory = sqlite3.Row
        return cur.fetchall()

    @staticmethod
    def _claims_on(conn: sqlite3.Connection, ids: list[str]) -> dict[str, tuple[str, str]]:
        """Ticket id -> (owner, expires_at) of the claims on these tickets."""
        found: dict[str, tuple[str, str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for tid, owner, expires in conn.execute(
                f"SELECT ticket_id, owner, expires_at FROM claims WHERE ticket_id IN ({marks})",
                chunk,
            ):
                found[tid] = (owner, expires)
        return found

    def release_claims(self, owner: str, ids: Sequence[str] | None = None) -> int:
        """Give back the owner's claims (only those on `ids`, when given); returns how many."""
        with self._write() as conn:
            if ids is None:
                return conn.execute("DELETE FROM claims WHERE owner = ?", (owner,)).rowcount
            released = 0
            unique = list(dict.fromkeys(ids))
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                released += conn.execute(
                    f"DELETE FROM claims WHERE owner = ? AND ticket_id IN ({marks})",
                    [owner, *chunk],
                ).rowcount
            return released

    def renew_claims(self, owner: str, lease_s: float) -> int:
        """Extend every claim of the owner to `lease_s` from now; returns how many it holds.
        Claims another owner has taken over (after this one's lease ran out) stay theirs."""
        if not (math.isfinite(lease_s) and lease_s >= 0):
            raise StoreError(f"claim lease {lease_s!r}: must be a finite number of seconds >= 0")
        expires = _stamp(utcnow() + timedelta(seconds=lease_s))
        with self._write() as conn:
            return conn.execute(
                "UPDATE claims SET expires_at = ? WHERE owner = ?", (expires, owner)
            ).rowcount

    def claim_holders(self, run_id: str | None = None) -> dict[str, int]:
        """Owners holding live claims (in one run, when given) -> how many tickets each."""
        sql = "SELECT owner, count(*) FROM claims WHERE expires_at > ?"
        params: list[Any] = [_stamp(utcnow())]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        rows = self._read(sql + " GROUP BY owner ORDER BY owner", params)
        return {owner: int(n) for owner, n in rows if owner_alive(owner)}

    # Meta ---------------------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        """Record a fact about the database itself (e.g. `demo`: it is a demo database)."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def decisions_in_run(self, run_id: str) -> int:
        return int(self._read("SELECT count(*) FROM decisions WHERE run_id = ?", (run_id,))[0][0])

    # Decisions ----------------------------------------------------------------------------

    def record_decisions(
        self, decisions: Sequence[Decision], *, owner: str | None = None
    ) -> list[Decision]:
        """Store a batch of decisions in one transaction and update each ticket's state and
        the statistics aggregates; with `owner`, release its claims on these tickets in the
        same transaction, so a ticket is claimed until the moment its decision is stored.

        A second decision for the same ticket in the same run is not stored (a resumed run
        never duplicates), but its call was made and paid: it goes into `duplicate_calls` and
        its cost into the cost totals, which always count every call. Returns the decisions
        that were stored, with their ids.
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
                    self._duplicate_call(conn, totals, hourly, d, created)
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
            if owner is not None:
                conn.executemany(
                    "DELETE FROM claims WHERE owner = ? AND ticket_id = ?",
                    [(owner, d.ticket_id) for d in decisions],
                )
        return stored

    @staticmethod
    def _duplicate_call(
        conn: sqlite3.Connection,
        totals: dict[str, list[Any]],
        hourly: dict[tuple[str, str], list[float]],
        d: Decision,
        created: str,
    ) -> None:
        """Book a call whose decision the run already had: in the ledger, and its cost in the
        totals (not in the decision counts: no decision was added)."""
        conn.execute(
            "INSERT INTO duplicate_calls (ticket_id, run_id, backend, cost_usd, error_class,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (d.ticket_id, d.run_id, d.backend, d.cost_usd, d.error_class, created),
        )
        row = totals.setdefault(d.backend, [d.backend_type, 0, 0, 0.0, 0, 0, 0, 0.0, 0])
        row[3] += d.cost_usd or 0.0
        hour = hourly.setdefault((created[:13], d.backend), [0.0, 0])
        hour[0] += d.cost_usd or 0.0

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
        """Record an agent's label as a new event and make it the ticket's current label.

        Raises:
            StoreError: An unknown ticket, or a label `check_label_name` refuses (checked
                here so that every door, CLI and TUI alike, gets the same rule).
        """
        try:
            checked = check_label_name(label)
        except ValueError as exc:
            raise StoreError(f"label {_shown(label)}: {exc}") from None
        if checked != label:
            raise StoreError(f"label {_shown(label)}: label has surrounding whitespace")
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
            event = LabelEvent.model_validate(  # the restored label is a stored row
                {"ticket_id": ticket_id, "label": label, "agent": agent, "source": "undo"},
                context=STORED,
            )
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
        return [LabelEvent.model_validate(dict(r), context=STORED) for r in rows]

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
