"""The command line (SPEC "Command line"), on click: `triagedesk` opens the TUI, each
subcommand runs headless.

One module per command group, each only parsing, calling the services and printing:

- `group`: the `triagedesk` group, its global options (`--db`, `--config`, `--watch`) and
  the bare command, which opens the TUI;
- `demo`: `demo`;  `labels`: `import`, `label`, `train`;  `route`: `route`;
- `evaluate`: `eval`, `tune-cascade`, `export` (and `tuning`, how tune-cascade prints);
- `report`: `stats`, `backends`;  `finetune`: `finetune`, `promote`: `promote` (SPEC
  "Growing the product");
- `sync`: `sync`, `webhooks` (helpdesk sync, SPEC "Growing the product");
- `serve`: `serve` (the TUI in a browser);
- `team`: `claim`, `release` (agent leases);  `database`: `db upgrade`, `db copy --to URL`
  (team mode on PostgreSQL);
- `context`: what every command shares (settings, paths, streams, exit statuses);
- `usage`: bad usage as one line on stderr, exit 2, and the value types that catch it.

Exit status: 0 done, 2 bad usage or bad input (one line on stderr naming the file/key/line),
1 anything else, 130 interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TextIO

import click

from tui.cli.context import BadInput, Context, NoProgress, Progress, Runtime
from tui.cli.database import database
from tui.cli.demo import demo
from tui.cli.evaluate import evaluate, export, tune_cascade
from tui.cli.finetune import finetune
from tui.cli.group import triagedesk
from tui.cli.labels import import_files, label, train
from tui.cli.promote import promote
from tui.cli.report import list_backends, stats
from tui.cli.route import route
from tui.cli.serve import serve
from tui.cli.sync import sync, webhooks
from tui.cli.team import claim, release
from tui.cli.usage import usage_line

for _command in (
    demo,
    import_files,
    route,
    label,
    train,
    evaluate,
    tune_cascade,
    export,
    stats,
    list_backends,
    finetune,
    promote,
    sync,
    webhooks,
    serve,
    claim,
    release,
    database,
):  # SPEC's order ("Growing the product" after), which `triagedesk --help` lists them in
    triagedesk.add_command(_command)


def run(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    progress: Callable[[], Progress] = NoProgress,
) -> int:
    """Run `triagedesk ARGV...` and return its exit status; the programmatic entry point.

    `out`/`err` default to the process's stdout/stderr (help always goes to stdout);
    `progress` makes the progress bar of `route`, `eval`, `tune-cascade` and `demo`.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    runtime = Runtime(out or sys.stdout, err or sys.stderr, progress)
    try:
        with triagedesk.make_context("triagedesk", args, obj=runtime) as ctx:
            status = triagedesk.invoke(ctx)
    except click.exceptions.Exit as exc:  # --help, once printed
        return exc.exit_code
    except click.UsageError as exc:
        print(usage_line(exc), file=runtime.err)
        return 2
    return int(status)


__all__ = ["BadInput", "Context", "NoProgress", "Progress", "run", "triagedesk"]
