"""Entry point: `triagedesk` opens the TUI; subcommands run headless (SPEC "Command line")."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichProgress:
    """The progress bar of `route`, `eval` and `demo`, drawn on stderr."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: Any = None

    def start(self, total: int | None, description: str) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _open_tui(args: Any, settings: Any, db_path: Any, *, make_folder: bool = False) -> int:
    from tui.app import run_app

    return run_app(settings, db_path, watch=args.watch, make_folder=make_folder)


def main(argv: Sequence[str] | None = None) -> int:
    from tui.cli import build_parser, run_command
    from tui.core import paths
    from tui.core.config import ConfigError, load_settings
    from tui.core.store import StoreError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in (None, "demo"):
        return run_command(args, progress=RichProgress)
    try:
        if args.command == "demo":
            from tui.services.demo_build import DemoRefused, build_demo, demo_paths

            try:
                target = demo_paths(args.db, args.config)  # only the demo's own files
            except DemoRefused as exc:
                print(f"triagedesk: error: {exc}", file=sys.stderr)
                return 2
            if args.db is None:  # the demo's database sits in our own data dir: make it
                from tui.core.safe_files import private_dir

                private_dir(target.db.parent)
            bar = RichProgress()
            bar.start(None, "routing the demo inbox")
            try:
                settings = build_demo(
                    target,
                    fresh=args.fresh,
                    size=args.size,
                    say=lambda s: print(s, file=sys.stderr),
                    on_decision=bar.advance,
                )
            finally:
                bar.stop()
            if args.no_tui:
                from tui.cli import Context, NoProgress, cmd_stats

                args.json = False
                ctx = Context(
                    settings, target.db, target.config, sys.stdout, sys.stderr, NoProgress
                )
                return cmd_stats(ctx, args)
            return _open_tui(args, settings, target.db)
        # A config the user named must exist; the TUI writes (labels, routes, --watch
        # imports), so it may create the database: in our own default data dir (made
        # 0700), or in a folder that already exists for a path the user named.
        config = paths.choose_config_path(args.config)
        settings = load_settings(config.path, required=config.explicit, origin=config.origin)
        db = paths.choose_db_path(args.db)
        return _open_tui(args, settings, db.path, make_folder=not db.explicit)
    except (ConfigError, StoreError) as exc:
        print(f"triagedesk: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
