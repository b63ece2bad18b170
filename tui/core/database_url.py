"""Which database a command opens: a SQLite file (a path) or a PostgreSQL server (a URL).

`--db` and `TRIAGEDESK_DB` take either. A URL is `postgresql://user@host:port/dbname` (or
`postgres://`, libpq's query options such as `?sslmode=require` allowed); the password never
travels in it. libpq reads it from `PGPASSWORD` or `~/.pgpass` (`PGPASSFILE`) itself, so no
password is ever in triagedesk's config, its database, its logs or on its screens: a URL that
carries one is refused, with a message that names the URL without it.

Textual-free and psycopg-free: the CLI parses `--db` with it before any driver is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from tui.core.store_error import StoreError

SCHEMES = ("postgresql", "postgres")


def is_database_url(text: str) -> bool:
    """Whether `--db`'s text is a server URL rather than a file path."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def _without_password(text: str) -> str:
    """The URL with any password in its user part replaced by `***` (for error lines)."""
    parts = urlsplit(text)
    if parts.password is None:
        return text
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@dataclass(frozen=True, slots=True)
class PgTarget:
    """A PostgreSQL database named by URL; `str()` is the URL (which holds no password)."""

    url: str

    def __post_init__(self) -> None:
        if not is_database_url(self.url):
            raise StoreError(f"{self.url[:80]!r}: not a postgresql:// URL")
        parts = urlsplit(self.url)
        shown = _without_password(self.url)
        if parts.password is not None or any(
            key.lower() == "password" for key, _ in parse_qsl(parts.query)
        ):
            raise StoreError(
                f"{shown.split('?')[0]}: a password in the database URL is refused (it would"
                " show in process lists, shell history and config files); put it in"
                " PGPASSWORD or ~/.pgpass"
            )
        try:
            parts.port  # noqa: B018 -- urllib checks the port when it is read
        except ValueError:
            raise StoreError(f"{shown}: the port is not a number") from None
        if not parts.path.strip("/"):
            raise StoreError(f"{shown}: name the database (postgresql://user@host:port/dbname)")

    def __str__(self) -> str:
        return self.url

    @property
    def name(self) -> str:
        """The database name, for lines such as `copied into NAME`."""
        return urlsplit(self.url).path.strip("/")

    def exists(self) -> bool:
        """A server database counts as present: callers asking whether a database file is
        there (before reading labels from it) ask the server by opening it."""
        return True


DbTarget = Path | PgTarget
"""What `Store` opens."""


def database_target(value: Path | str | PgTarget) -> DbTarget:
    """A path or URL as typed (`--db`, `TRIAGEDESK_DB`) -> what `Store` opens.

    `Path("postgresql://h/db")` would fold the `//`: a URL is recognised from its text (and
    from a `Path` made of one, whose `postgresql:/` prefix gives it away).

    Raises:
        StoreError: A URL with a password, without a database name, or with a bad port.
    """
    if isinstance(value, PgTarget):
        return value
    text = str(value)
    if isinstance(value, Path):
        for scheme in SCHEMES:
            if text.lower().startswith(f"{scheme}:/") and not text.startswith(f"{scheme}://"):
                raise StoreError(
                    f"{text}: a database URL reached triagedesk as a file path; pass it as"
                    " `--db postgresql://user@host:port/dbname`"
                )
    if is_database_url(text):
        return PgTarget(text)
    return value if isinstance(value, Path) else Path(value).expanduser()


__all__ = ["DbTarget", "PgTarget", "database_target", "is_database_url"]
