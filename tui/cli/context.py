"""What every headless command shares: the paths and settings it runs on, its output streams,
the progress bar it draws, and the mapping of failures to SPEC's exit statuses.

Rendering-free: progress goes through the `Progress` callbacks `tui.__main__` supplies, so the
command line stays importable without rich or textual.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import click

from tui.core import paths
from tui.core.config import ConfigError, Settings, load_settings
from tui.core.models import Taxonomy
from tui.core.store import DbTarget, PgTarget, Store, StoreError, describe_unusable_labels
from tui.services.evaluation import UnusableData
from tui.services.routing import NoTaxonomy, resolve_taxonomy


class BadInput(Exception):
    """Exit status 2: the user gave something unusable; the message says what and where."""


class Progress(Protocol):
    def start(self, total: int | None, description: str) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def stop(self) -> None: ...


class NoProgress:
    """The progress bar of a caller that draws none (tests, scripts)."""

    def start(self, total: int | None, description: str) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class Runtime:
    """What the caller of `tui.cli.run` hands every command (streams, the progress bar) and
    what the global options (`--db`, `--config`, `--watch`) said; click's `ctx.obj`."""

    out: TextIO
    err: TextIO
    progress: Callable[[], Progress]
    db: Path | PgTarget | None = None
    config: Path | None = None
    watch: Path | None = None


@dataclass
class Context:
    """What every command needs: settings, the database path and output streams."""

    settings: Settings
    db_path: DbTarget
    config_path: Path
    out: TextIO
    err: TextIO
    progress: Callable[[], Progress]
    db_origin: str | None = None
    """Who named the database (`--db`, `TRIAGEDESK_DB`), or None for our default path."""
    creates_db: bool = False
    """The command writes, so it may create a missing database (`creates_database`)."""

    def store(self) -> Store:
        """The command's database. Only a command that writes creates a missing one, and
        only in a folder that exists, except our own default data dir (made 0700)."""
        try:
            return Store(
                self.db_path,
                create=self.creates_db,
                make_folder=self.creates_db and self.db_origin is None,
            )
        except StoreError as exc:
            if self.db_origin == "TRIAGEDESK_DB":  # a stale variable is easy to miss
                raise StoreError(f"{exc} (from TRIAGEDESK_DB)") from None
            raise

    def say(self, text: str = "") -> None:
        """One line of the command's result, on its output stream."""
        print(text, file=self.out)

    def warn(self, text: str) -> None:
        """One `triagedesk: warning: ...` line on stderr; the command goes on."""
        print(f"triagedesk: warning: {text}", file=self.err)

    def warn_unusable_labels(self, store: Store) -> None:
        """Say which stored labels are skipped (empty or with control characters, as older
        versions wrote them): the command goes on without them instead of failing."""
        found = store.unusable_labels()
        if found:
            self.warn(describe_unusable_labels(found))

    def labels_known(self, store: Store) -> Taxonomy:
        """The taxonomy the command answers with (`resolve_taxonomy`), after warning of the
        stored labels it skips; none known is bad input."""
        self.warn_unusable_labels(store)
        try:
            return resolve_taxonomy(self.settings, store)
        except NoTaxonomy as exc:
            raise BadInput(str(exc)) from None


def creates_database(command: str, params: Mapping[str, Any]) -> bool:
    """Whether the command may create a missing database: only commands that store something
    new without needing anything stored already.

    - `import`, `eval --store`, `sync`, `webhooks`: yes, they bring their own tickets.
    - `route`, `label`, `train`, `finetune`, `export`, `tune-cascade`, `stats`, `eval --curve`:
      no, they read or change what is stored; on a missing database they say "no database at
      PATH" (exit 2) instead of leaving an empty file (and folders) behind a typo.
    - `backends`, and `train`/`finetune`/`tune-cascade`/`eval` with `--data`: never open the
      database.
    """
    if command in ("import", "sync", "webhooks"):  # they bring the helpdesk's tickets
        return True
    return command == "eval" and bool(params.get("store", False))


def make_context(runtime: Runtime, command: str, params: Mapping[str, Any]) -> Context:
    """Settings and paths for a command. A config the user named (`--config`,
    `TRIAGEDESK_CONFIG`) must exist; only our own default may be absent."""
    config = paths.choose_config_path(runtime.config)
    settings = load_settings(config.path, required=config.explicit, origin=config.origin)
    db = paths.choose_db_path(runtime.db)
    return Context(
        settings,
        db.path,
        config.path,
        runtime.out,
        runtime.err,
        runtime.progress,
        db_origin=db.origin,
        creates_db=creates_database(command, params),
    )


def headless(command: Callable[..., int]) -> Callable[..., int]:
    """Make `command(ctx, **options)` a click callback: build its Context from the global
    options, run it, and map failures to SPEC's exit statuses (the caller returns them).

    2 bad usage or bad input, with one `triagedesk: error: ...` line naming the file, key or
    line; 130 interrupted; 1 anything else, still one line, never a traceback.
    """

    @functools.wraps(command)
    def callback(**params: Any) -> int:
        click_ctx = click.get_current_context()
        runtime = click_ctx.find_object(Runtime)
        assert runtime is not None, "tui.cli.run sets the Runtime"
        err = runtime.err
        try:
            ctx = make_context(runtime, click_ctx.info_name or "", params)
            return command(ctx, **params)
        except (BadInput, ConfigError, StoreError, UnusableData) as exc:
            print(f"triagedesk: error: {exc}", file=err)
            return 2
        except KeyboardInterrupt:
            print("triagedesk: interrupted; run the same command again to resume", file=err)
            return 130
        except Exception as exc:
            print(f"triagedesk: error: {type(exc).__name__}: {exc}", file=err)
            return 1

    return callback


def wait_printer(ctx: Context) -> Callable[[str, Any], None]:
    """A `Router.on_wait` that prints retry waits on stderr, one line per backend and reason
    every few seconds (`backends.retry.WaitAnnouncer`), e.g. `gpt-4o-mini: rate limited
    (HTTP 429), waiting 20 s until 22:41:07 UTC (retry 2 of 3)`: a run held by a rate limit
    once showed a progress bar at 0 for hours with no word."""
    from backends.retry import WaitAnnouncer

    announcer = WaitAnnouncer()

    def show(backend: str, wait: Any) -> None:
        line = announcer.line(backend, wait)
        if line is not None:
            # the progress bar redirects sys.stderr while it draws: print above it
            stream = sys.stderr if ctx.err is sys.__stderr__ else ctx.err
            print(line, file=stream, flush=True)

    return show
