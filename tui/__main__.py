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


def _open_tui(args: Any, settings: Any, db_path: Any) -> int:
    from tui.app import run_app

    return run_app(settings, db_path, watch=args.watch)


def main(argv: Sequence[str] | None = None) -> int:
    from tui import paths
    from tui.cli import build_parser, run_command
    from tui.config import ConfigError, load_settings

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in (None, "demo"):
        return run_command(args, progress=RichProgress)
    try:
        if args.command == "demo":
            from tui.demo_build import build_demo, demo_paths

            target = demo_paths(args.db, args.config)
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
        config_path = args.config or paths.default_config_path()
        settings = load_settings(config_path, required=args.config is not None)
        return _open_tui(args, settings, args.db or paths.default_db_path())
    except ConfigError as exc:
        print(f"triagedesk: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
