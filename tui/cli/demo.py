"""`triagedesk demo`: build the offline demo inbox (our own files only), then open it."""

from __future__ import annotations

import click

from tui.cli.context import Context, NoProgress, Runtime
from tui.cli.report import print_stats
from tui.cli.usage import Command, WholeNumber, flag, value_option


@click.command(name="demo", cls=Command, help="build the offline demo inbox and open it")
@flag("--fresh", help="rebuild the demo database")
@flag("--no-tui", help="print the inbox instead")
@value_option("--size", type=WholeNumber(100, 1_000_000), default=3000, hidden=True)
@click.pass_obj
def demo(runtime: Runtime, fresh: bool, no_tui: bool, size: int) -> int:
    """Build (or reuse) the demo database beside the user's own, route it, open the TUI.

    It never touches the user's database, config or model: `--db`/`--config` may only name
    the demo's own files (`demo_paths` refuses others, exit 2).
    """
    from tui.core.config import ConfigError
    from tui.core.store import PgTarget, StoreError
    from tui.services.demo_build import DemoRefused, build_demo, demo_paths

    err = runtime.err
    try:
        if isinstance(runtime.db, PgTarget):
            print(
                "triagedesk: error: --db: the demo builds its own SQLite file; leave out --db",
                file=err,
            )
            return 2
        try:
            target = demo_paths(runtime.db, runtime.config)
        except DemoRefused as exc:
            print(f"triagedesk: error: {exc}", file=err)
            return 2
        if runtime.db is None:  # the demo's database sits in our own data dir: make it
            from tui.core.safe_files import private_dir

            private_dir(target.db.parent)
        bar = runtime.progress()
        bar.start(None, "routing the demo inbox")
        try:
            settings = build_demo(
                target,
                fresh=fresh,
                size=size,
                say=lambda s: print(s, file=err),
                on_decision=bar.advance,
            )
        finally:
            bar.stop()
        if no_tui:
            ctx = Context(settings, target.db, target.config, runtime.out, err, NoProgress)
            return print_stats(ctx, as_json=False)
        from tui.app import run_app

        return run_app(settings, target.db, watch=runtime.watch)
    except (ConfigError, StoreError) as exc:
        print(f"triagedesk: error: {exc}", file=err)
        return 2
