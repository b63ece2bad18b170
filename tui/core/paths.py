"""Where triagedesk keeps its files, as functions so nothing is created at import time.

`TRIAGEDESK_HOME` moves everything under one folder (tests, demos, portable installs);
otherwise the platform's user directories are used.

A path the user chose (`--config`/`--db` or `TRIAGEDESK_CONFIG`/`TRIAGEDESK_DB`) is taken
at its word: a config that is not there is an error, not a reason to fall back to defaults,
and a database is only created in a folder that already exists. Only our own default folders
(the data dir under the platform dir or under `TRIAGEDESK_HOME`) are created on demand, and
then private (0700, `tui.core.safe_files.private_dir`), because they hold customer text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from platformdirs import user_config_path, user_data_path

if TYPE_CHECKING:
    from tui.core.config import BackendConfig
    from tui.core.database_url import DbTarget, PgTarget

APP_NAME = "triagedesk"


def _home() -> Path | None:
    home = os.environ.get("TRIAGEDESK_HOME")
    return Path(home).expanduser() if home else None


def config_dir() -> Path:
    home = _home()
    return home if home else user_config_path(APP_NAME, appauthor=False)


def data_dir() -> Path:
    home = _home()
    return home / "data" if home else user_data_path(APP_NAME, appauthor=False)


def models_dir() -> Path:
    return data_dir() / "models"


@dataclass(frozen=True, slots=True)
class ChosenPath:
    """A config or database path together with who chose it.

    `origin` is the flag or variable that named it (`--db`, `TRIAGEDESK_DB`), or None for our
    own default; error messages cite it so that a stale variable is easy to spot."""

    path: Path
    origin: str | None = None

    @property
    def explicit(self) -> bool:
        """The user named this path: it must exist (config) or its folder must (database)."""
        return self.origin is not None

    def describe(self) -> str:
        """The path as error messages name it: `PATH (from TRIAGEDESK_DB)` for a variable."""
        if self.origin and self.origin.startswith("TRIAGEDESK_"):
            return f"{self.path} (from {self.origin})"
        return str(self.path)


def _chosen(flag: Path | None, flag_name: str, variable: str, default: Path) -> ChosenPath:
    if flag is not None:
        return ChosenPath(flag.expanduser(), flag_name)
    env = os.environ.get(variable)
    if env:  # an empty variable counts as unset, as shells make it easy to export one
        return ChosenPath(Path(env).expanduser(), variable)
    return ChosenPath(default)


def choose_config_path(flag: Path | None = None) -> ChosenPath:
    """`--config`, else `TRIAGEDESK_CONFIG`, else the config dir's `config.toml`."""
    return _chosen(flag, "--config", "TRIAGEDESK_CONFIG", config_dir() / "config.toml")


@dataclass(frozen=True, slots=True)
class ChosenDatabase:
    """The database a command opens (a file, or a PostgreSQL URL) and who chose it."""

    path: DbTarget
    origin: str | None = None

    @property
    def explicit(self) -> bool:
        return self.origin is not None


def choose_db_path(flag: Path | PgTarget | None = None) -> ChosenDatabase:
    """`--db`, else `TRIAGEDESK_DB`, else the data dir's `triagedesk.db`. Either may name a
    PostgreSQL database by URL (`postgresql://user@host:port/dbname`, no password in it).

    Raises:
        StoreError: A URL the store refuses (a password in it, no database name).
    """
    from tui.core.database_url import PgTarget, database_target, is_database_url
    from tui.core.store_error import StoreError

    if isinstance(flag, PgTarget):
        return ChosenDatabase(flag, "--db")
    env = os.environ.get("TRIAGEDESK_DB")
    if flag is None and env and is_database_url(env):
        try:
            return ChosenDatabase(database_target(env), "TRIAGEDESK_DB")
        except StoreError as exc:
            raise StoreError(f"{exc} (from TRIAGEDESK_DB)") from None
    chosen = _chosen(flag, "--db", "TRIAGEDESK_DB", data_dir() / "triagedesk.db")
    return ChosenDatabase(chosen.path, chosen.origin)


def default_config_path() -> Path:
    return choose_config_path().path


def default_db_path() -> DbTarget:
    return choose_db_path().path


def default_specialist_path() -> Path:
    return models_dir() / "specialist.joblib"


def demo_db_path() -> Path:
    return data_dir() / "demo.db"


def specialist_path(config: BackendConfig) -> Path:
    """The model file one specialist backend reads: its `path`, else the data dir's."""
    from tui.core.config.options import SpecialistOptions

    if isinstance(config, SpecialistOptions) and config.path:
        return Path(config.path).expanduser()
    return default_specialist_path()
