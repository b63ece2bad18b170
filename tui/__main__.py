"""Entry point: `triagedesk` opens the TUI; subcommands run headless (SPEC "Command line")."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress


class RichProgress:
    """The progress bar of `route`, `eval` and `demo`, drawn on stderr.

    Rich loads with the first bar: the commands that draw none (`import`, `stats`, `label`)
    would otherwise spend 0.05-0.09 s of their start-up importing its console and progress."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: Any = None

    def start(self, total: int | None, description: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

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


def main(argv: Sequence[str] | None = None) -> int:
    from tui.cli import run

    return run(argv, progress=RichProgress)


if __name__ == "__main__":
    sys.exit(main())
