"""`triagedesk serve`: the same TUI in a browser, through textual-serve, behind a token.

Localhost by default; the access token comes from `--token`, `$TRIAGEDESK_SERVE_TOKEN` or is
generated and printed once at start, and is taken out of the environment the app processes
inherit. The server itself (aiohttp, textual-serve) is imported only when `serve` runs, so
the other commands start as fast as before; `serve_server` holds it and the token guard.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys

import click

from tui.cli.context import Runtime
from tui.cli.usage import Command, value_option
from tui.core.database_url import PgTarget

TOKEN_ENV = "TRIAGEDESK_SERVE_TOKEN"
"""Where `serve` reads the access token when `--token` is not given."""
MIN_TOKEN_CHARS = 16
"""A token shorter than this is refused: it guards starting processes as this user."""
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def app_command(runtime: Runtime) -> str:
    """The command line each visit's app process runs: this Python, the same database and
    config as `serve` was given."""
    args = [sys.executable, "-m", "tui"]
    if runtime.db is not None:
        db = runtime.db
        args += ["--db", str(db if isinstance(db, PgTarget) else db.resolve())]
    if runtime.config is not None:
        args += ["--config", str(runtime.config.resolve())]
    return shlex.join(args)


@click.command(name="serve", cls=Command, help="serve the TUI in a browser (token required)")
@value_option("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
@value_option("--port", type=click.IntRange(1, 65535), default=8000, help="port (default: 8000)")
@value_option("--token", help=f"access token (default: ${TOKEN_ENV}, else a new one)")
@click.pass_obj
def serve(runtime: Runtime, host: str, port: int, token: str | None) -> int:
    err = runtime.err
    generated = False
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if token is None:
        token, generated = secrets.token_urlsafe(24), True
    if len(token.strip()) < MIN_TOKEN_CHARS or token != token.strip():
        print(
            f"triagedesk: error: the access token (--token or ${TOKEN_ENV}) must be at least"
            f" {MIN_TOKEN_CHARS} characters without surrounding spaces",
            file=err,
        )
        return 2
    os.environ.pop(TOKEN_ENV, None)  # the app processes inherit this environment
    from tui.cli.serve_server import TokenServer

    server = TokenServer(app_command(runtime), host=host, port=port, token=token)
    if host not in LOCAL_HOSTS:
        print(
            f"triagedesk: warning: serving on {host}: reachable from other machines, over"
            " plain HTTP (put it behind TLS)",
            file=err,
        )
    address = f"{server.public_url}/"
    if generated:
        print(f"triagedesk serve: open {address}?token={token}", file=runtime.out, flush=True)
    else:
        print(
            f"triagedesk serve: open {address}?token=<your token> (the one you set)",
            file=runtime.out,
            flush=True,
        )
    print("press Ctrl+C to stop", file=err, flush=True)
    try:
        server.serve()
    except OSError as exc:
        print(f"triagedesk: error: cannot serve on {host}:{port}: {exc.strerror or exc}", file=err)
        return 2
    return 0
