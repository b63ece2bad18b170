"""The command line (SPEC "Command line"): argument parsing and the headless commands.

Rendering-free: progress goes through the `Progress` callbacks `tui.__main__` supplies, so
this module stays importable without rich or textual. Exit status: 0 done, 2 bad usage or
bad input (one line on stderr naming the file/key/line), 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TextIO

from tui.core import paths
from tui.core.claims import claim_lease_s
from tui.core.config import ConfigError, Settings, load_settings
from tui.core.store import (
    ImportRejected,
    Store,
    StoreError,
    describe_owner,
    describe_unusable_labels,
)
from tui.services.routing import (
    MAX_CONCURRENCY,
    NoTaxonomy,
    Router,
    RunClaims,
    RunSummary,
    page_pending,
    resolve_taxonomy,
)

if TYPE_CHECKING:
    from tui.core.ingest import ParsedFile


class BadInput(Exception):
    """Exit status 2: the user gave something unusable; the message says what and where."""


class Progress(Protocol):
    def start(self, total: int | None, description: str) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def stop(self) -> None: ...


class NoProgress:
    def start(self, total: int | None, description: str) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class Context:
    """What every command needs: settings, the database path and output streams."""

    settings: Settings
    db_path: Path
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


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse `type`: a whole number from `low` (to `high`). Out of range is bad usage,
    caught at parse time with one line naming the option (`--limit -1` used to mean "all
    but the last ticket", `--limit 0` "no limit" in one place and "nothing" in another)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number, got {text[:40]!r}"
            ) from None
        if value < low or (high is not None and value > high):
            span = f"at least {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def share(*, below_one: bool = False) -> Callable[[str], float]:
    """An argparse `type`: a finite number within [0, 1] (or [0, 1) with `below_one`)."""
    span = "[0, 1)" if below_one else "[0, 1]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None
        top_ok = value < 1.0 if below_one else value <= 1.0
        if not (math.isfinite(value) and value >= 0.0 and top_ok):
            raise argparse.ArgumentTypeError(f"must be within {span}, got {text[:40]!r}")
        return value

    parse.__name__ = "number"
    return parse


def id_list(text: str) -> list[str]:
    """`--ids`: comma-separated ticket ids, each stripped, repeats dropped (first order kept).
    A list that names no id (`--ids ","`, `--ids ""`) is bad usage: it used to fall back to
    routing every unrouted ticket."""
    ids = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not ids:
        raise argparse.ArgumentTypeError(f"expected comma-separated ticket ids, got {text!r}")
    return ids


id_list.__name__ = "ticket ids"


class UsageParser(argparse.ArgumentParser):
    """argparse, with bad usage as one line on stderr and exit status 2 (SPEC "Command line"):
    the message names the option, and points at `--help` instead of printing the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="triagedesk",
        description="Route support tickets through LLM APIs, local models or your own specialist.",
    )
    parser.add_argument("--db", type=Path, help="SQLite database (default: $TRIAGEDESK_DB)")
    parser.add_argument("--config", type=Path, help="TOML config (default: $TRIAGEDESK_CONFIG)")
    parser.add_argument("--watch", type=Path, metavar="DIR", help="import files dropped into DIR")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="build the offline demo inbox and open it")
    demo.add_argument("--fresh", action="store_true", help="rebuild the demo database")
    demo.add_argument("--no-tui", action="store_true", help="print the inbox instead")
    demo.add_argument(
        "--size", type=whole_number(100, 1_000_000), default=3000, help=argparse.SUPPRESS
    )

    imp = sub.add_parser("import", help="add tickets from JSONL, CSV, .eml or mbox files")
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE")
    imp.add_argument("--format", choices=["csv", "jsonl", "eml", "mbox"])

    route = sub.add_parser("route", help="route tickets headless")
    route.add_argument("--backend")
    which = route.add_mutually_exclusive_group()
    which.add_argument("--unrouted", action="store_true", help="tickets never routed (default)")
    which.add_argument("--all", action="store_true", help="every ticket")
    which.add_argument("--ids", type=id_list, help="comma-separated ticket ids")
    route.add_argument(
        "--concurrency",
        type=whole_number(1, MAX_CONCURRENCY),
        default=None,
        help=f"tickets in flight, 1 to {MAX_CONCURRENCY} (default: the backend's max_concurrency)",
    )
    route.add_argument("--limit", type=whole_number(1), default=None)

    label = sub.add_parser("label", help="record an agent's label")
    label.add_argument("ticket_id")
    label.add_argument("label")
    label.add_argument("--agent", default="cli")

    train = sub.add_parser("train", help="train the local specialist")
    train.add_argument("--data", type=Path, help="labelled JSONL/CSV instead of the database")
    train.add_argument("--out", type=Path, help="where to save the model")
    train.add_argument("--kind", default="tfidf", help="tfidf (default) or a stronger kind")
    train.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where a fine-tune trains: auto (a GPU when torch sees one), cpu or cuda",
    )

    ev = sub.add_parser("eval", help="score a backend on a labelled file")
    ev.add_argument("--backend", required=True)
    ev.add_argument("--data", type=Path, required=True)
    ev.add_argument("--limit", type=whole_number(1))
    ev.add_argument(
        "--concurrency",
        type=whole_number(1, MAX_CONCURRENCY),
        default=None,
        help=f"tickets in flight, 1 to {MAX_CONCURRENCY} (default: the backend's max_concurrency)",
    )
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--store", action="store_true", help="also store the decisions")
    ev.add_argument("--curve", action="store_true", help="also the specialist's learning curve")
    ev.add_argument("--train", type=Path, help="labelled file for --curve (default: the database)")
    ev.add_argument("--seed", type=int, default=13, help="seed of the --curve samples")

    tune = sub.add_parser("tune-cascade", help="pick a cascade threshold from labelled data")
    tune.add_argument("--first", required=True, help="backend that answers first")
    tune.add_argument("--then", required=True, help="backend for low-confidence tickets")
    tune.add_argument("--data", type=Path, help="labelled JSONL/CSV instead of the database")
    tune.add_argument("--target-accuracy", type=share(), default=0.9)
    tune.add_argument("--write", action="store_true", help="save it in [backends.cascade]")
    tune.add_argument("--json", action="store_true")

    exp = sub.add_parser("export", help="write retraining data from agent labels")
    exp.add_argument("--format", choices=["openai", "hf", "csv"], required=True)
    exp.add_argument("--out", type=Path, required=True)
    exp.add_argument("--val-fraction", type=share(below_one=True), default=0.2)
    exp.add_argument("--seed", type=int, default=13)
    exp.add_argument("--scrub-pii", action="store_true")
    exp.add_argument("--include-predictions", action="store_true", help=argparse.SUPPRESS)

    stats = sub.add_parser("stats", help="per-backend decisions, accuracy, latency and cost")
    stats.add_argument("--json", action="store_true")

    backends = sub.add_parser("backends", help="list the configured backends")
    backends.add_argument("--check", action="store_true", help="check that each one answers")
    backends.add_argument("--json", action="store_true")
    return parser


def creates_database(args: argparse.Namespace) -> bool:
    """Whether the command may create a missing database: only commands that store something
    new without needing anything stored already.

    - `import`, `eval --store`: yes, they bring their own tickets.
    - `route`, `label`, `train`, `export`, `tune-cascade`, `stats`, `eval --curve`: no, they
      read or change what is stored; on a missing database they say "no database at PATH"
      (exit 2) instead of leaving an empty file (and folders) behind a typo.
    - `backends`, and `train`/`tune-cascade`/`eval` with `--data`: never open the database.
    """
    if args.command == "import":
        return True
    return args.command == "eval" and bool(getattr(args, "store", False))


def make_context(args: argparse.Namespace, out: TextIO, err: TextIO, progress: Any) -> Context:
    """Settings and paths for a command. A config the user named (`--config`,
    `TRIAGEDESK_CONFIG`) must exist; only our own default may be absent."""
    config = paths.choose_config_path(args.config)
    settings = load_settings(config.path, required=config.explicit, origin=config.origin)
    db = paths.choose_db_path(args.db)
    return Context(
        settings,
        db.path,
        config.path,
        out,
        err,
        progress,
        db_origin=db.origin,
        creates_db=creates_database(args),
    )


def _print(ctx: Context, text: str = "") -> None:
    print(text, file=ctx.out)


def _warn_unusable_labels(ctx: Context, store: Store) -> None:
    """Say which stored labels are skipped (empty or with control characters, as older
    versions wrote them): the command goes on without them instead of failing."""
    found = store.unusable_labels()
    if found:
        print(f"triagedesk: warning: {describe_unusable_labels(found)}", file=ctx.err)


def _ensure_labels_known(ctx: Context, store: Store) -> Any:
    _warn_unusable_labels(ctx, store)
    try:
        return resolve_taxonomy(ctx.settings, store)
    except NoTaxonomy as exc:
        raise BadInput(str(exc)) from None


def cmd_import(ctx: Context, args: argparse.Namespace) -> int:
    from tui.core.ingest import IngestError, parse_file

    failed = 0
    with ctx.store() as store:
        for path in args.files:
            try:
                parsed = parse_file(path, args.format)
            except IngestError as exc:
                print(f"triagedesk: error: {exc}", file=ctx.err)
                failed += 1
                continue
            errors = parsed.errors
            if not errors:
                try:
                    result = store.import_tickets(
                        parsed.tickets, parsed.labels, source=str(path), lines=parsed.lines
                    )
                except ImportRejected as exc:  # ids imported before with other content
                    errors = exc.errors
            if errors:
                failed += 1
                shown = errors[:20]
                for row in shown:
                    print(f"{path}:{row.line}: {row.reason}", file=ctx.err)
                more = len(errors) - len(shown)
                suffix = f" (and {more} more)" if more else ""
                print(
                    f"triagedesk: error: {path}: {len(errors)} bad rows{suffix};"
                    " nothing imported from this file",
                    file=ctx.err,
                )
                continue
            _print(
                ctx,
                f"{path}: imported {result.inserted} tickets"
                f" ({result.duplicates} already present, {result.labels_recorded} labels)",
            )
    return 2 if failed else 0


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


async def _route(ctx: Context, args: argparse.Namespace, store: Store) -> RunSummary:
    taxonomy = _ensure_labels_known(ctx, store)
    router = Router(ctx.settings, taxonomy, store)
    router.on_wait = wait_printer(ctx)
    backend = args.backend or ctx.settings.routing.backend
    config = ctx.settings.backend(backend)
    concurrency = args.concurrency or config.max_concurrency
    ids: list[str] | None = args.ids  # parsed by `id_list`: never empty, no repeats
    if ids is not None:
        missing = [i for i in ids if store.get_ticket(i) is None]
        if missing:
            raise BadInput(f"--ids: no ticket with id {missing[0]!r}")
    selection = "all" if args.all else ("ids:" + ",".join(ids) if ids is not None else "unrouted")
    lease_s = claim_lease_s()  # a bad TRIAGEDESK_CLAIM_LEASE_S is refused before any write
    run = store.open_run(backend, selection)
    claims = RunClaims(store, run.id, lease_s=lease_s)
    if ids is not None:
        total: int | None = len(store.pending_in_run(run.id, ids=ids, limit=len(ids)))
    elif args.all:
        total = store.ticket_count() - store.decisions_in_run(run.id)
    else:
        total = store.count_unrouted()
    if args.limit is not None and total is not None:
        total = min(total, args.limit)
    if run.resumed:
        holders = store.claim_holders(run.id)
        if holders:
            who = ", ".join(describe_owner(owner) for owner in holders)
            print(f"joining {run.id}, which another run ({who}) is routing", file=ctx.err)
        else:
            print(f"resuming {run.id}", file=ctx.err)
    progress = ctx.progress()
    progress.start(total, f"routing with {backend}")
    try:
        summary = await router.run(
            page_pending(
                store,
                run.id,
                ids=ids,
                unrouted_only=selection == "unrouted",
                limit=args.limit,
                claims=claims,
            ),
            run_id=run.id,
            backend=backend,
            concurrency=concurrency,
            on_decision=lambda _d: progress.advance(),
            claims=claims,
        )
    finally:
        progress.stop()
        await router.aclose()
    complete = args.limit is None or summary.routed < args.limit
    if complete:
        store.finish_run(run.id)  # left running while another run still holds its tickets
    if summary.skipped_line:
        print(f"triagedesk: {summary.skipped_line}", file=ctx.err)
    return summary


def cmd_route(ctx: Context, args: argparse.Namespace) -> int:
    if args.backend:
        ctx.settings.backend(args.backend)
    with ctx.store() as store:
        summary = asyncio.run(_route(ctx, args, store))
    line = (
        f"routed {summary.routed} tickets in {summary.elapsed_s:.1f} s"
        f" ({summary.per_second:.1f}/s), {summary.errors} failed"
    )
    if summary.error_classes:
        line += " (" + ", ".join(f"{k}: {v}" for k, v in summary.error_classes.most_common()) + ")"
    if summary.skipped_line:
        line += f"; {summary.skipped_line}"
    _print(ctx, line)
    return 0


def cmd_label(ctx: Context, args: argparse.Namespace) -> int:
    from tui.core.models import check_label_name

    try:
        label = check_label_name(args.label)
    except ValueError as exc:
        raise BadInput(f"label {args.label[:40]!r}: {exc}") from None
    taxonomy = ctx.settings.taxonomy()
    if taxonomy is not None and label not in taxonomy:
        raise BadInput(f"label {label!r} is not in the config's [labels]")
    with ctx.store() as store:
        try:
            event = store.add_label(args.ticket_id, label, agent=args.agent, source="cli")
        except StoreError as exc:
            raise BadInput(str(exc)) from None
    _print(ctx, f"{event.ticket_id}: labelled {event.label} by {event.agent}")
    return 0


def _labelled_file(path: Path) -> tuple[list[Any], dict[str, str]]:
    parsed = _labelled_parsed(path)
    return parsed.tickets, parsed.labels


def _labelled_parsed(path: Path) -> ParsedFile:
    """A labelled JSONL/CSV file as a ParsedFile (its lines name rows in later errors)."""
    from tui.core.ingest import IngestError, parse_file

    try:
        parsed = parse_file(path)
    except IngestError as exc:
        raise BadInput(str(exc)) from None
    if parsed.errors:
        first = parsed.errors[0]
        raise BadInput(f"{path}:{first.line}: {first.reason} ({len(parsed.errors)} bad rows)")
    if not parsed.labels:
        raise BadInput(f"{path}: no row carries a label")
    return parsed


def cmd_train(ctx: Context, args: argparse.Namespace) -> int:
    from tui.core.learning.model import SpecialistModel, TrainingError
    from tui.core.learning.training import specialist_file
    from tui.core.safe_files import UnwritablePath, check_writable_file

    out = args.out or specialist_file(ctx.settings)
    try:  # before training: minutes of work must not end in "cannot write there"
        check_writable_file(out)
    except UnwritablePath as exc:
        raise BadInput(f"--out {exc}" if args.out else str(exc)) from None
    if args.data:
        tickets, labels = _labelled_file(args.data)
        texts = [t.text for t in tickets if t.id in labels]
        targets = [labels[t.id] for t in tickets if t.id in labels]
        source = str(args.data)
    else:
        with ctx.store() as store:
            _warn_unusable_labels(ctx, store)
            examples = store.labelled_examples()
        texts = [text for text, _ in examples]
        targets = [label for _, label in examples]
        source = str(ctx.db_path)
    try:
        model = SpecialistModel.train(
            texts, targets, source=source, kind=args.kind, device=args.device
        )
    except TrainingError as exc:
        raise BadInput(str(exc)) from None
    except ImportError as exc:
        raise BadInput(f"--kind {args.kind}: {exc}") from None
    try:
        model.save(out)
    except OSError as exc:  # the disk filled up or went read-only while training
        raise BadInput(f"{out}: cannot save the model ({exc.strerror or exc})") from None
    info = model.info
    _print(
        ctx,
        f"trained {info.kind} specialist on {info.n_examples} tickets, {len(info.labels)} labels,"
        f" in {info.train_seconds:.1f} s -> {out}",
    )
    return 0


def eval_report(backend: str, decisions: Sequence[Any], truth: dict[str, str]) -> dict[str, Any]:
    """SPEC's `eval --json` object from decisions and the file's labels."""
    from tui.core.costs import per_1k
    from tui.core.scoring import score_pairs
    from tui.services.routing import percentile

    answered = [d for d in decisions if d.ok]
    scores = score_pairs([d.label for d in answered], [truth[d.ticket_id] for d in answered])
    n = len(decisions)
    correct = round((scores.accuracy or 0) * scores.support)
    latencies = [d.total_ms for d in answered if d.total_ms is not None]
    cost = sum(d.cost_usd or 0.0 for d in decisions)
    return {
        "backend": backend,
        "n": n,
        "errors": n - len(answered),
        "accuracy": correct / n if n else None,
        "macro_f1": scores.macro_f1,
        "latency_ms": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95)},
        "cost_usd": cost,
        "cost_per_1k_usd": per_1k(cost, n),
        "per_label": {
            label: {k: v for k, v in figures.items() if k in ("precision", "recall", "support")}
            for label, figures in scores.per_label.items()
        },
        "confusions": [{"true": t, "predicted": p, "count": c} for t, p, c in scores.confusions],
    }


def _route_passes(
    ctx: Context,
    router: Router,
    tickets: Sequence[Any],
    passes: Sequence[tuple[str, int]],
    *,
    description: str,
    run_prefix: str,
    on_decision: Callable[[Any], None],
) -> None:
    """Route the same tickets through each (backend, concurrency) in turn under one progress
    bar, then close the router. Decisions are stored only when the router has a store."""
    router.on_wait = wait_printer(ctx)
    progress = ctx.progress()
    progress.start(len(tickets) * len(passes), description)

    def collect(decision: Any) -> None:
        on_decision(decision)
        progress.advance()

    async def go() -> None:
        try:
            for name, concurrency in passes:
                await router.run(
                    tickets,
                    run_id=f"{run_prefix}-{name}",
                    backend=name,
                    concurrency=concurrency,
                    on_decision=collect,
                    store=router.store is not None,
                )
        finally:
            await router.aclose()

    try:
        asyncio.run(go())
    finally:
        progress.stop()


def cmd_eval(ctx: Context, args: argparse.Namespace) -> int:
    from tui.core.models import Taxonomy

    backend = args.backend
    config = ctx.settings.backend(backend)
    parsed = _labelled_parsed(args.data)
    labels = parsed.labels
    tickets = [t for t in parsed.tickets if t.id in labels][: args.limit]
    taxonomy = ctx.settings.taxonomy() or Taxonomy.from_names(set(labels.values()))
    store = ctx.store() if args.store else None
    if store is not None:
        kept = {t.id: labels[t.id] for t in tickets}  # --limit: only the routed tickets' labels
        store.import_tickets(tickets, kept, source=str(args.data), lines=parsed.lines)
    decisions: list[Any] = []
    try:
        _route_passes(
            ctx,
            Router(ctx.settings, taxonomy, store),
            tickets,
            [(backend, args.concurrency or config.max_concurrency)],
            description=f"evaluating {backend}",
            run_prefix="eval",
            on_decision=decisions.append,
        )
    finally:
        if store is not None:
            store.close()
    report = eval_report(backend, decisions, labels)
    points = _curve(ctx, args, tickets, labels) if args.curve else None
    if points is not None:
        report["curve"] = [p.to_dict() for p in points]
    if args.json:
        _print(ctx, json.dumps(report, indent=2))
    else:
        acc = report["accuracy"]
        _print(
            ctx,
            f"{backend}: n={report['n']} errors={report['errors']}"
            f" accuracy={acc:.3f} macro_f1={report['macro_f1'] or 0:.3f}"
            f" p50={report['latency_ms']['p50'] or 0:.1f} ms cost=${report['cost_usd']:.4f}"
            if acc is not None
            else f"{backend}: no tickets scored",
        )
        for c in report["confusions"][:5]:
            _print(ctx, f"  {c['true']} -> {c['predicted']}: {c['count']}")
        if points is not None:
            from tui.core.learning.curve import format_curve

            _print(ctx, "learning curve of the specialist (labels per class):")
            for line in format_curve(points):
                _print(ctx, "  " + line)
    return 0


def _curve(
    ctx: Context, args: argparse.Namespace, tickets: Sequence[Any], labels: dict[str, str]
) -> list[Any]:
    """The specialist's learning curve, trained on --train or the database, tested on --data.

    Training rows whose text is also a test ticket are left out, so an `eval --store` run
    (which imports the test file) cannot leak its answers into the curve.
    """
    from tui.core.learning.curve import learning_curve
    from tui.core.learning.model import TrainingError

    if args.train:
        train_tickets, train_labels = _labelled_file(args.train)
        examples = [(t.text, train_labels[t.id]) for t in train_tickets if t.id in train_labels]
    else:
        with ctx.store() as store:
            examples = store.labelled_examples()
    test_texts = [t.text for t in tickets]
    held_out = set(test_texts)
    examples = [(text, label) for text, label in examples if text not in held_out]
    try:
        return learning_curve(
            [text for text, _ in examples],
            [label for _, label in examples],
            test_texts,
            [labels[t.id] for t in tickets],
            seed=args.seed,
        )
    except (TrainingError, ValueError) as exc:
        source = args.train or ctx.db_path
        raise BadInput(f"--curve: {source}: {exc}") from None


def cmd_export(ctx: Context, args: argparse.Namespace) -> int:
    from tui.core import export

    with ctx.store() as store:
        taxonomy = _ensure_labels_known(ctx, store)
        try:
            report = export.export(
                store,
                taxonomy,
                fmt=args.format,
                out=args.out,
                val_fraction=args.val_fraction,
                seed=args.seed,
                scrub_pii=args.scrub_pii,
                include_predictions=args.include_predictions,
            )
        except export.ExportError as exc:
            raise BadInput(str(exc)) from None
    _print(
        ctx,
        f"wrote {report.train_rows} train / {report.validation_rows} validation rows to {args.out}",
    )
    return 0


def _tuning_data(ctx: Context, args: argparse.Namespace) -> tuple[list[Any], dict[str, str], Any]:
    """Labelled tickets for tune-cascade: --data, else the database's agent labels."""
    from tui.core.models import STORED, Taxonomy, Ticket

    if args.data:
        tickets, labels = _labelled_file(args.data)
        taxonomy = ctx.settings.taxonomy() or Taxonomy.from_names(set(labels.values()))
        return [t for t in tickets if t.id in labels], labels, taxonomy
    with ctx.store() as store:
        rows = store.export_rows()
        if not rows:
            raise BadInput(f"{ctx.db_path}: no agent-labelled tickets; label some or pass --data")
        taxonomy = _ensure_labels_known(ctx, store)
    tickets = [  # stored rows: an id an older version accepted must still load
        Ticket.model_validate({"id": tid, "text": text}, context=STORED) for tid, text, _, _ in rows
    ]
    return tickets, {tid: label for tid, _, label, _ in rows}, taxonomy


def _write_cascade(ctx: Context, first: str, then: str, threshold: float) -> Path:
    """Save the tuned threshold in the config's [backends.cascade], validated, atomically.

    The file keeps its permission bits (a new one is 0600: configs can name key sources),
    and a config that is a link (dotfiles) stays one: the file it points to is rewritten.
    """
    import tomllib

    from tui.core.cascade_tuning import update_cascade_block
    from tui.core.config import DEFAULT_BACKENDS, read_config_text
    from tui.core.safe_files import atomic_writer, private_dir

    path = ctx.config_path
    text = read_config_text(path) if path.exists() else ""  # as load_settings reads it (BOM)
    # A file without [backends] runs on the built-in ones; keep them once it gains a table.
    extra = (
        {}
        if "backends" in tomllib.loads(text)
        else {name: block for name, block in DEFAULT_BACKENDS.items() if name != "specialist"}
    )
    values = {"type": "cascade", "first": first, "then": then, "threshold": threshold}
    updated = update_cascade_block(text, values, extra)
    target = path.resolve() if path.is_symlink() else path
    private_dir(target.parent)
    with atomic_writer(target, keep_mode=True) as pending:
        pending.write(updated)
        pending.file.flush()
        try:
            load_settings(Path(pending.temp_path), required=True)
        except ConfigError as exc:  # leaving the block drops the temp file, keeps the config
            raise BadInput(f"{path}: not updated, the result would be invalid: {exc}") from None
    return path


def cmd_tune_cascade(ctx: Context, args: argparse.Namespace) -> int:
    from tui.core.cascade_tuning import table_rows, tune

    if not 0.0 <= args.target_accuracy <= 1.0:
        raise BadInput(f"--target-accuracy {args.target_accuracy}: must be within [0, 1]")
    if args.first == args.then:
        raise BadInput("--first and --then name the same backend")
    for name in (args.first, args.then):
        ctx.settings.backend(name)
    tickets, labels, taxonomy = _tuning_data(ctx, args)
    answers: dict[str, dict[str, Any]] = {args.first: {}, args.then: {}}

    def collect(decision: Any) -> None:
        answers[decision.backend][decision.ticket_id] = decision

    _route_passes(
        ctx,
        Router(ctx.settings, taxonomy, None),
        tickets,
        [(name, ctx.settings.backend(name).max_concurrency) for name in (args.first, args.then)],
        description=f"routing through {args.first} and {args.then}",
        run_prefix="tune",
        on_decision=collect,
    )
    ids = [t.id for t in tickets]
    first = [answers[args.first][i] for i in ids]
    then = [answers[args.then][i] for i in ids]
    result = tune(first, then, [labels[i] for i in ids], args.target_accuracy)
    errors = {"first": sum(not d.ok for d in first), "then": sum(not d.ok for d in then)}
    for name, stage in ((args.first, first), (args.then, then)):
        failed = [d for d in stage if not d.ok]
        if failed:
            print(
                f"triagedesk: warning: {name} failed on {len(failed)} of {len(stage)} tickets"
                f" (e.g. {failed[0].error_class}: {failed[0].error_message})",
                file=ctx.err,
            )
    if not args.data:
        print(
            "triagedesk: note: scored on the database's own labels; a specialist trained on"
            " them looks better here than on new tickets (--data FILE takes a held-out set)",
            file=ctx.err,
        )
    written = None
    if args.write:
        written = _write_cascade(ctx, args.first, args.then, result.pick.threshold)
    if args.json:
        payload = {"first": args.first, "then": args.then, "errors": errors, **result.to_dict()}
        payload["written"] = None if written is None else str(written)
        _print(ctx, json.dumps(payload, indent=2))
        return 0
    _print(
        ctx,
        f"cascade {args.first} -> {args.then} on {result.n} labelled tickets"
        f" ({errors['first']} / {errors['then']} errors)",
    )
    for name, row in ((args.first, result.first_only), (args.then, result.then_only)):
        cost = row.cost_per_1k_usd
        _print(ctx, f"  {name} alone: accuracy {row.accuracy:.1%}, ${cost:.4f} per 1k")
    _print(ctx, f"{'threshold':>10}{'accuracy':>10}{'$/1k':>12}{'escalated':>11}")
    for row in table_rows(result):
        mark = "  <- pick" if row == result.pick else ""
        _print(
            ctx,
            f"{row.threshold:>10.2f}{row.accuracy:>10.1%}{row.cost_per_1k_usd:>12.4f}"
            f"{row.escalated:>11.1%}{mark}",
        )
    pick = result.pick
    summary = (
        f"threshold {pick.threshold:.2f}: accuracy {pick.accuracy:.1%},"
        f" ${pick.cost_per_1k_usd:.4f} per 1k tickets, {pick.escalated:.0%} escalated"
    )
    if result.reached:
        _print(ctx, f"pick: {summary} (cheapest reaching {result.target:.1%})")
    else:
        _print(ctx, f"no threshold reaches {result.target:.1%}; most accurate: {summary}")
    if written is not None:
        _print(ctx, f"wrote threshold {pick.threshold:.2f} to [backends.cascade] in {written}")
    return 0


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def cmd_stats(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.store() as store:
        stats = store.backend_stats(daily_volume=ctx.settings.routing.daily_volume)
    if args.json:
        _print(ctx, json.dumps([s.model_dump() for s in stats], indent=2))
        return 0
    if not stats:
        _print(ctx, "no decisions yet: run `triagedesk route`")
        return 0
    header = f"{'backend':<18}{'n':>8}{'errors':>8}{'accuracy':>10}{'macro-F1':>10}"
    header += f"{'p50 ms':>10}{'p95 ms':>10}{'cost $':>12}{'$/1k':>10}{'$/month':>12}"
    _print(ctx, header)
    for s in stats:
        _print(
            ctx,
            f"{s.backend:<18}{s.n:>8}{s.errors:>8}{_fmt(s.accuracy, '{:.1%}'):>10}"
            f"{_fmt(s.macro_f1, '{:.3f}'):>10}{_fmt(s.latency_ms['p50'], '{:.1f}'):>10}"
            f"{_fmt(s.latency_ms['p95'], '{:.1f}'):>10}{s.cost_usd:>12.4f}"
            f"{_fmt(s.cost_per_1k_usd, '{:.4f}'):>10}"
            f"{_fmt(s.projected_monthly_usd, '{:,.0f}'):>12}",
        )
    _print(ctx, f"(monthly projection at {ctx.settings.routing.daily_volume:,} tickets/day)")
    return 0


async def _check_all(ctx: Context) -> list[dict[str, Any]]:
    from tui.core.registry import BackendLoadError, UnknownBackendType, create_backend

    async def one(name: str) -> dict[str, Any]:
        config = ctx.settings.backends[name]
        entry: dict[str, Any] = {
            "name": name,
            "type": config.type,
            "model": config.model_name,
            "ok": None,
            "detail": "",
        }
        try:
            backend = create_backend(
                config, resolve=lambda n: create_backend(ctx.settings.backend(n))
            )
            try:
                health = await asyncio.wait_for(backend.check(), config.timeout_s + 5)
                entry["ok"], entry["detail"] = health.ok, health.detail
            finally:
                await backend.aclose()
        except (UnknownBackendType, BackendLoadError) as exc:
            entry["ok"], entry["detail"] = False, str(exc)
        except TimeoutError:
            entry["ok"], entry["detail"] = False, "no answer within the timeout"
        except Exception as exc:  # a check must report, never crash the listing
            entry["ok"], entry["detail"] = False, f"{type(exc).__name__}: {exc}"
        return entry

    return list(await asyncio.gather(*(one(name) for name in ctx.settings.backends)))


def _price(config: Any) -> str:
    if config.gpu_usd_per_hour is not None:
        return f"${config.gpu_usd_per_hour}/GPU-h"
    if config.input_usd_per_mtok is not None or config.output_usd_per_mtok is not None:
        return f"${config.input_usd_per_mtok or 0}/${config.output_usd_per_mtok or 0} per Mtok"
    if config.type == "specialist":
        from tui.core.config import DEFAULT_CPU_USD_PER_HOUR

        return f"${config.cpu_usd_per_hour or DEFAULT_CPU_USD_PER_HOUR}/vCPU-h"
    return "-"


def cmd_backends(ctx: Context, args: argparse.Namespace) -> int:
    from backends.secrets import redact

    if args.check:
        entries = asyncio.run(_check_all(ctx))
    else:
        entries = [
            {"name": n, "type": c.type, "model": c.model_name, "ok": None, "detail": _price(c)}
            for n, c in ctx.settings.backends.items()
        ]
    from backends.secrets import api_key

    secrets = [api_key(c) for c in ctx.settings.backends.values()]
    for entry in entries:
        entry["detail"] = redact(str(entry["detail"]), *secrets)
    if args.json:
        _print(ctx, json.dumps(entries, indent=2))
        return 0
    active = ctx.settings.routing.backend
    for e in entries:
        mark = "*" if e["name"] == active else " "
        status = "" if e["ok"] is None else ("ok   " if e["ok"] else "FAIL ")
        _print(ctx, f"{mark} {e['name']:<18}{e['type']:<16}{e['model']:<28}{status}{e['detail']}")
    return 0


COMMANDS: dict[str, Callable[[Context, argparse.Namespace], int]] = {
    "import": cmd_import,
    "route": cmd_route,
    "label": cmd_label,
    "train": cmd_train,
    "eval": cmd_eval,
    "export": cmd_export,
    "tune-cascade": cmd_tune_cascade,
    "stats": cmd_stats,
    "backends": cmd_backends,
}


def run_command(
    args: argparse.Namespace,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    progress: Callable[[], Progress] = NoProgress,
) -> int:
    """Run a headless command and map failures to SPEC's exit statuses."""
    try:
        ctx = make_context(args, out, err, progress)
        return COMMANDS[args.command](ctx, args)
    except (BadInput, ConfigError, StoreError) as exc:
        print(f"triagedesk: error: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        print("triagedesk: interrupted; run the same command again to resume", file=err)
        return 130
    except Exception as exc:
        print(f"triagedesk: error: {type(exc).__name__}: {exc}", file=err)
        return 1
