"""Opening a database: a SQLite file (privately, with the pragmas, the write lock and the
transactions) or a PostgreSQL server (`tui.core.store.pg`, which says why both engines share
one SQL text).

`StoreBase` owns the connection every part of the store shares. Writes go through `_write`
(one short transaction: IMMEDIATE on SQLite, retried while another process holds the lock;
under the write lock on PostgreSQL); reads through `_read` and `_reading`. A failure of the
disk or of the file itself becomes a `StoreError` naming the path (`storage_problem`), so a
command ends with one clear line. The mixins see `Conn`, the part of `sqlite3.Connection`
they use, which `PgConnection` also provides.
"""

from __future__ import annotations

import errno
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

from tui.core.database_url import DbTarget, PgTarget, database_target
from tui.core.store.errors import StoreError
from tui.core.store.migrations import migrate, migrate_pg, pg_schema_version

if TYPE_CHECKING:
    import sqlite_utils

    from tui.core.store.pg import PgEngine

Engine = Literal["sqlite", "postgresql"]


class Cursor(Protocol):
    """What the store reads from a statement's cursor (sqlite3's, or `PgCursor`)."""

    @property
    def rowcount(self) -> int: ...
    @property
    def lastrowid(self) -> int | None: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """The part of `sqlite3.Connection` the mixins use inside a transaction; `PgConnection`
    gives PostgreSQL the same face, so the mixins hold one SQL text for both engines."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...
    @property
    def total_changes(self) -> int: ...
    @property
    def in_transaction(self) -> bool: ...


class Row(Protocol):
    """A result row, readable by index and by column name (`sqlite3.Row`, `PgRow`)."""

    def __getitem__(self, key: Any, /) -> Any: ...
    def keys(self) -> list[str]: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...


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
        from tui.core.safe_files import private_dir

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


class StoreBase:
    """A connection to one triagedesk database: what every part of `Store` builds on.

    The connection may be used from any thread (the TUI's workers); a lock serialises calls,
    and WAL plus a busy timeout let other processes (a second TUI, a headless `route`) work
    on the same file at the same time.
    """

    BUSY_TIMEOUT_MS = 30_000

    def __init__(
        self, path: Path | str | PgTarget, *, create: bool = True, make_folder: bool = False
    ) -> None:
        """Open the database at `path` (a file, or a `postgresql://` URL or `PgTarget`),
        migrating it to the current schema.

        Args:
            create: Create the file when it is missing (commands that write). With False a
                missing database is a StoreError, so a read-only command leaves nothing behind.
            make_folder: Also create missing folders above it (0700). Only for our own data
                dir: a folder the user named must exist, so a typo does not grow a tree.

        Raises:
            StoreError: One line naming the path: no database, folder missing, read-only,
                disk full, not a triagedesk database, damaged, or a newer schema.
        """
        target = database_target(path)
        self._lock = threading.RLock()
        self._pg: PgEngine | None = None
        self.path: DbTarget = target
        if isinstance(target, PgTarget):
            from tui.core.store.pg import PgEngine

            self.engine: Engine = "postgresql"
            self._pg = PgEngine(target)
            try:
                with self._pg.transaction() as pg:
                    self.opened_at_version = migrate_pg(pg, target)
            except BaseException:
                self._pg.close()
                raise
            return
        self.engine = "sqlite"
        self.file = target
        _prepare_database_file(self.file, create=create, make_folder=make_folder)
        try:
            conn = sqlite3.connect(
                self.file,
                timeout=self.BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
                isolation_level=None,
            )
        except (OSError, sqlite3.Error) as exc:
            raise _storage_error(self.file, exc, "cannot open database") from None
        self.conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {self.BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: index inserts at 1M rows
            # Statement journals in memory: a statement that writes many rows (an import's
            # 50-ticket INSERTs, the label events' INSERT ... SELECT) keeps the old content of
            # each page it changes, to undo that one statement if it fails; on disk that was a
            # temporary file taking 300,000 writes for a 300,000-ticket import (a fifth of
            # its CPU time, the most of it in the kernel). They never serve crash recovery
            # (the WAL does), so holding them in memory changes nothing that is durable.
            conn.execute("PRAGMA temp_store = MEMORY")
            self._migrate()
        except sqlite3.Error as exc:
            conn.close()
            raise _storage_error(self.file, exc, "not a triagedesk database") from None
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
        if self._pg is not None:
            self._pg.close()
            return
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        if self._pg is not None:
            from tui.core.store.pg import PgConnection

            with self._pg.connection() as raw:
                return pg_schema_version(PgConnection(raw))
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    opened_at_version: int = 0
    """The schema version the database was at before this open migrated it (`db upgrade`)."""

    def _migrate(self) -> None:
        with self._write():
            self.opened_at_version = migrate(self.conn, self.file)

    @contextmanager
    def _write(self, *, serial: bool = True) -> Iterator[Conn]:
        """One short IMMEDIATE transaction; retried while another process holds the lock.

        A failure of the disk or of the file (read-only, disk full, damaged), in a statement
        or at COMMIT, rolls the transaction back and becomes a StoreError that names the path
        and says what happened (`storage_problem`): the command ends with one clear line, and
        everything committed before stays as it was. Other errors propagate unchanged.

        On PostgreSQL `serial` takes the write lock that makes writers run one at a time, as
        SQLite does; only code written for concurrent writers (the agent leases) passes False.
        """
        if self._pg is not None:
            with self._pg.transaction(serial=serial) as pg:
                yield pg
            return
        with self._lock:
            for attempt in range(50):
                try:
                    self.conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        problem = storage_problem(self.file, exc)
                        if problem is not None:
                            raise StoreError(problem) from None
                        raise
                    time.sleep(min(0.05 * (attempt + 1), 1.0))
            else:
                raise StoreError(f"{self.file}: database stayed locked by another process")
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
                    problem = storage_problem(self.file, exc)
                    if problem is not None:
                        raise StoreError(problem) from None
                raise

    @contextmanager
    def _foreign_keys_unchecked(self) -> Iterator[None]:
        """The block's transactions on SQLite without foreign-key enforcement, which is on
        again afterwards; PostgreSQL's constraints are untouched.

        For a bulk write whose references hold by construction (the import's label events,
        selected from the tickets they reference): SQLite looks up the parent of every row
        it inserts, a third of the time of 100,000 events. The writer checks whatever does
        not hold by construction itself. SQLite ignores the pragma inside a transaction, so
        the lock is held from before BEGIN until after the pragma is set back.
        """
        if self._pg is not None:
            yield
            return
        with self._lock:
            self.conn.execute("PRAGMA foreign_keys = OFF")
            try:
                yield
            finally:
                self.conn.execute("PRAGMA foreign_keys = ON")

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        if self._pg is not None:
            return self._pg.read(sql, params)
        with self._lock:
            cur = self.conn.execute(sql, params)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()

    def analyze(self) -> None:
        """Refresh the planner's statistics (PostgreSQL, after a bulk load; SQLite's planner
        needs none for the store's queries)."""
        if self.engine == "postgresql":
            with self._write(serial=False) as conn:
                conn.execute("ANALYZE")

    @property
    def pushes_changes(self) -> bool:
        """Whether `wait_for_change` hears other writers (PostgreSQL's LISTEN/NOTIFY); SQLite
        has no such signal, and its readers poll."""
        return self._pg is not None

    def wait_for_change(self, timeout: float) -> bool:
        """Block up to `timeout` seconds until another process commits a change; True when
        one did (or may have: SQLite, which cannot tell, always says True after the wait)."""
        if self._pg is not None:
            return self._pg.wait_for_change(timeout)
        time.sleep(timeout)
        return True

    @contextmanager
    def _reading(self) -> Iterator[Conn]:
        """A connection for several reads in a row (no transaction on PostgreSQL: each
        statement sees what is committed when it runs, as `_read` does)."""
        if self._pg is not None:
            from tui.core.store.pg import PgConnection

            with self._pg.connection() as raw:
                yield PgConnection(raw)
            return
        with self._lock:
            yield self.conn


def fetch_rows(conn: Conn, sql: str, params: Sequence[Any]) -> list[Row]:
    """Rows readable by name from a connection inside a transaction (`_read` takes the lock)."""
    cur = conn.execute(sql, params)
    if isinstance(cur, sqlite3.Cursor):
        cur.row_factory = sqlite3.Row
    return cur.fetchall()
