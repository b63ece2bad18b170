"""The `triagedesk` group: the global options, and the bare command, which opens the TUI.

The global options (`--db`, `--config`, `--watch`) come before the command, as SPEC writes
them (`triagedesk [--db PATH] [--config PATH] [COMMAND ...]`); each command reads them from
the `Runtime` in click's `ctx.obj`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tui.cli.context import Runtime
from tui.cli.usage import DatabaseType, Group, PathType, value_option

if TYPE_CHECKING:
    from tui.core.database_url import PgTarget

DESCRIPTION = "Route support tickets through LLM APIs, local models or your own specialist."


@click.group(
    cls=Group,
    name="triagedesk",
    default="tui",
    default_if_no_args=True,
    help=DESCRIPTION,
    options_metavar="[-h] [--db DB] [--config CONFIG] [--watch DIR]",
    subcommand_metavar="COMMAND ...",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@value_option(
    "--db",
    type=DatabaseType(),
    help="SQLite file or postgresql://user@host:port/dbname (default: $TRIAGEDESK_DB)",
)
@value_option("--config", type=PathType(), help="TOML config (default: $TRIAGEDESK_CONFIG)")
@value_option("--watch", type=PathType(), metavar="DIR", help="import files dropped into DIR")
@click.pass_obj
def triagedesk(
    runtime: Runtime, db: Path | PgTarget | None, config: Path | None, watch: Path | None
) -> None:
    runtime.db, runtime.config, runtime.watch = db, config, watch


@triagedesk.command(name="tui", hidden=True)
@click.pass_obj
def open_tui(runtime: Runtime) -> int:
    """The bare `triagedesk [--watch DIR]`: the TUI on the configured database.

    A config the user named must exist; the TUI writes (labels, routes, --watch imports), so
    it may create the database: in our own default data dir (made 0700), or in a folder that
    already exists for a path the user named.
    """
    from tui.core import paths
    from tui.core.config import ConfigError, load_settings
    from tui.core.store import StoreError

    try:
        config = paths.choose_config_path(runtime.config)
        settings = load_settings(config.path, required=config.explicit, origin=config.origin)
        db = paths.choose_db_path(runtime.db)
        from tui.services.opening import Opening

        # The database opens (and, without [labels], its taxonomy is read) on a thread
        # while the main thread imports Textual and the screens: neither waits for the other.
        opening = Opening(settings, db.path, make_folder=not db.explicit)
        from tui.app import run_app

        return run_app(
            settings,
            db.path,
            watch=runtime.watch,
            make_folder=not db.explicit,
            opening=opening,
        )
    except (ConfigError, StoreError) as exc:
        print(f"triagedesk: error: {exc}", file=runtime.err)
        return 2
