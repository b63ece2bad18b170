"""`triagedesk db upgrade` and `triagedesk db copy --to URL`: the schema, and moving a SQLite
database into PostgreSQL when one person's desk becomes a team's (SPEC "Team mode")."""

from __future__ import annotations

import click

from tui.cli.context import BadInput, Context, headless
from tui.cli.usage import Command, value_option


@click.group(name="db", help="upgrade the database's schema, or copy it into PostgreSQL")
def database() -> None:
    """The `db` commands."""


@database.command(name="upgrade", cls=Command, help="run the schema migrations (either engine)")
@headless
def upgrade(ctx: Context) -> int:
    """Opening a store migrates it (and refuses a newer schema); this says what it did."""
    from tui.core.store import SCHEMA_VERSION

    with ctx.store() as store:
        before = store.opened_at_version
    if before == SCHEMA_VERSION:
        ctx.say(f"{ctx.db_path}: schema at version {SCHEMA_VERSION}, nothing to do")
    else:
        ctx.say(f"{ctx.db_path}: schema upgraded from version {before} to {SCHEMA_VERSION}")
    return 0


@database.command(name="copy", cls=Command, help="copy this SQLite database into PostgreSQL")
@value_option("--to", "to", required=True, metavar="URL", help="postgresql://user@host:port/db")
@headless
def copy(ctx: Context, *, to: str) -> int:
    """Resumable (run it again after an interruption) and checked: every table's row count
    must match at the end."""
    from tui.core.store import PgTarget, Store, StoreError, is_database_url
    from tui.core.store.copy import copy_database

    if not is_database_url(to):
        raise BadInput(f"--to {to[:80]!r}: not a postgresql://user@host:port/dbname URL")
    try:
        target = PgTarget(to)
    except StoreError as exc:
        raise BadInput(f"--to: {exc}") from None
    if isinstance(ctx.db_path, PgTarget):
        raise BadInput(f"--db {ctx.db_path}: the source of a copy is a SQLite database file")
    with ctx.store() as source, Store(target) as dest:
        progress = ctx.progress()
        progress.start(source.ticket_count(), "copying")

        def moved(table: str, n: int) -> None:
            if table == "tickets":
                progress.advance(n)

        try:
            result = copy_database(source, dest, on_table=moved)
        finally:
            progress.stop()
    counts = result.counts
    ctx.say(
        f"{target}: copied {counts['tickets']} tickets, {counts['decisions']} decisions,"
        f" {counts['label_events']} label events, {counts['runs']} runs"
        f" ({result.sent} rows sent; counts checked)"
    )
    return 0
