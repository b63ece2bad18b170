"""`triagedesk demo`: build the offline demo database, train its specialist, route its inbox.

Everything happens locally: the inbox is generated (tui.core.demo), the specialist trains on
four fifths of the third of it that "agents" labelled (the other fifth is held back, so its
accuracy is measured on labels it never saw), then routes the rest. No key, no server, no GPU.

The demo works on its own files only. `--db` and `--config` may name other places, but what is
there already must be the demo's: a database carrying the demo's mark (or, from before the
mark, holding only demo tickets), a config carrying the demo's first line. Anything else is
refused (`DemoRefused`, exit status 2) before a byte is written, so `demo --fresh --db
real.db` can never delete a real inbox, nor `demo --db real.db` mix 3,000 invented tickets
into it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tui.core import paths
from tui.core.config import Settings, load_settings
from tui.core.safe_files import private_dir, write_private
from tui.core.store import StoreError, probe_database

if TYPE_CHECKING:
    from tui.core.store import Store

DEMO_MARK_KEY = "demo"
"""The `meta` key that marks a demo database; its value is when the demo built it."""
DEMO_CONFIG_MARK = (
    "# Written by `triagedesk demo`: `demo --fresh` rewrites this file; copy it to keep changes.\n"
)
"""First line of the config the demo writes: the mark that lets `--fresh` rewrite it."""
DEMO_HOLD_OUT_EVERY = 5
"""Every fifth agent label is kept out of the demo specialist's training: the stats screen
then measures its accuracy on labels it never saw, as it would a real team's."""


class DemoRefused(Exception):
    """`--db` or `--config` names a file that is not the demo's: bad usage, nothing touched."""


@dataclass(frozen=True, slots=True)
class DemoPaths:
    db: Path
    config: Path
    model: Path
    embeddings_model: Path

    def models(self) -> dict[str, tuple[str, Path]]:
        """Per demo backend block that runs a trained model: its kind and its file."""
        return {
            "specialist": ("tfidf", self.model),
            "embeddings": ("embeddings", self.embeddings_model),
        }


DEMO_SAMPLE = 300
"""Tickets the demo also routes through each other offline backend, so the statistics,
histogram and break-even compare real alternatives from the first screen."""
OFFLINE_ALTERNATIVES = ("embeddings", "local-cascade")


def demo_paths(db: Path | None = None, config: Path | None = None) -> DemoPaths:
    """The demo's files: its own, or the `--db`/`--config` given, once they pass
    `check_demo_db` and `check_demo_config`.

    Raises:
        DemoRefused: A given file exists and is not the demo's.
    """
    target = DemoPaths(
        db=db or paths.demo_db_path(),
        config=config or paths.data_dir() / "demo.toml",
        model=paths.models_dir() / "demo-specialist.joblib",
        embeddings_model=paths.models_dir() / "demo-embeddings.joblib",
    )
    check_demo_db(target.db)
    check_demo_config(target.config)
    return target


def check_demo_db(path: Path) -> None:
    """Accept a database path for the demo: none there yet, or one holding only tickets the demo
    generated and either carrying the demo's mark, or holding some (built before the mark),
    or empty at the demo's own default path (an interrupted build).

    Raises:
        DemoRefused: Anything else: a real inbox, a demo database someone imported real tickets
            into, an empty database of the user's, a file that is not a database; with one
            line saying what to do instead.
    """
    leave_out = f"leave out --db (the demo uses {paths.demo_db_path()}) or name a new file"
    try:
        probe = probe_database(path)
    except StoreError as exc:
        raise DemoRefused(
            f"--db {exc}; the demo builds only its own database: {leave_out}"
        ) from None
    if probe is None:
        return
    foreign = probe.tickets - probe.demo_tickets
    if foreign:
        raise DemoRefused(
            f"--db {path}: not a demo database (it holds {foreign}"
            f" {'ticket' if foreign == 1 else 'tickets'} the demo did not make); {leave_out}"
        )
    if probe.marked_demo or probe.tickets:
        return
    if not probe.other_rows and _same(path, paths.demo_db_path()):
        return
    raise DemoRefused(
        f"--db {path}: not a demo database (an empty database the demo did not make); {leave_out}"
    )


def check_demo_config(path: Path) -> None:
    """Accept a config path for the demo: none there yet, one the demo wrote (its first line is
    `DEMO_CONFIG_MARK`), or the demo's own default path (written before the mark).

    Raises:
        DemoRefused: Another config, which the demo would use as its own or, with `--fresh`,
            overwrite.
    """
    if not path.exists() and not path.is_symlink():
        return
    if _same(path, paths.data_dir() / "demo.toml"):
        return
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            first = handle.readline(len(DEMO_CONFIG_MARK) + 1)
    except OSError as exc:
        raise DemoRefused(f"--config {path}: cannot read: {exc.strerror or exc}") from None
    if first != DEMO_CONFIG_MARK:
        raise DemoRefused(
            f"--config {path}: not a config the demo wrote; the demo uses its own: leave out"
            f" --config (the demo uses {paths.data_dir() / 'demo.toml'}) or name a new file"
        )


def _same(path: Path, other: Path) -> bool:
    """Whether two paths name one place (either may not exist yet)."""
    try:
        return path.resolve() == other.resolve()
    except OSError:
        return False


def write_demo_config(target: DemoPaths) -> None:
    from tui.core.demo import demo_config_toml

    text = demo_config_toml()
    for name, (_kind, model) in target.models().items():
        block = f'[backends.{name}]\ntype = "specialist"\n'
        if block not in text:
            raise RuntimeError(f"demo config template lost its [backends.{name}] block")
        # The demo trains its own model files so it never overwrites the user's specialist.
        text = text.replace(block, f"{block}path = {json.dumps(str(model))}\n", 1)
    text = DEMO_CONFIG_MARK + text
    private_dir(target.config.parent)
    write_private(target.config, text)


def build_demo(
    target: DemoPaths,
    *,
    fresh: bool = False,
    size: int = 3000,
    say: Callable[[str], None] = print,
    on_decision: Callable[[], None] | None = None,
) -> Settings:
    """Create (or reuse) the demo database and return the settings to open it with.

    Raises:
        DemoRefused: `target` names a database or config that is not the demo's (checked
            again here: only the demo's own database is ever deleted or filled).
    """
    from tui.core.demo import demo_taxonomy, generate_inbox
    from tui.core.learning.model import SpecialistModel
    from tui.core.models import utcnow
    from tui.core.store import Store
    from tui.services.routing import Router, RunClaims, page_pending

    check_demo_db(target.db)
    check_demo_config(target.config)
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(str(target.db) + suffix).unlink(missing_ok=True)
    if not target.config.exists() or fresh:
        write_demo_config(target)
    settings = load_settings(target.config, required=True)
    existing = target.db.exists()
    with Store(target.db) as store:
        if store.get_meta(DEMO_MARK_KEY) is None:  # before any ticket: a half-built one is ours
            store.set_meta(DEMO_MARK_KEY, utcnow().isoformat())
        if existing and store.ticket_count() and target.model.exists():
            _train_missing(store, target, settings, say)
            say(f"demo database {target.db} already built (use --fresh to rebuild)")
            info = SpecialistModel.read_info(target.model)
            if info is None or not info.model_id:
                say(
                    "its specialist was trained before training sets were recorded, so its"
                    " accuracy counts its own training labels: `demo --fresh` rebuilds it"
                )
            return settings
        say(f"generating {size} demo tickets ...")
        inbox = generate_inbox(size)
        labels = {d.ticket.id: d.agent_label for d in inbox if d.agent_label is not None}
        store.import_tickets([d.ticket for d in inbox], labels, source="demo")
        _train_missing(store, target, settings, say, fresh=True)
        router = Router(settings, demo_taxonomy(), store)
        sample = [d.ticket.id for d in inbox[:DEMO_SAMPLE]]
        others = [name for name in OFFLINE_ALTERNATIVES if name in settings.backends]

        async def route(backend: str, ids: list[str] | None) -> None:
            run = store.open_run(backend, "demo")
            claims = RunClaims(store, run.id)
            summary = await router.run(
                page_pending(store, run.id, ids=ids, claims=claims),
                run_id=run.id,
                backend=backend,
                concurrency=2,
                on_decision=(lambda _d: on_decision()) if on_decision else None,
                claims=claims,
            )
            store.finish_run(run.id)
            say(f"routed {summary.routed} tickets with {backend} in {summary.elapsed_s:.1f} s")

        async def route_all() -> None:
            try:
                # the alternatives first, on a sample: the specialist's answers, routed last,
                # stay each ticket's decision in the inbox
                for name in others:
                    await route(name, sample)
                await route("specialist", None)
            finally:
                await router.aclose()

        asyncio.run(route_all())
    return settings


def _train_missing(
    store: Store,
    target: DemoPaths,
    settings: Settings,
    say: Callable[[str], None],
    *,
    fresh: bool = False,
) -> None:
    """Train each demo model the config uses that is not on disk yet (all of them with
    `fresh`): a demo built before the embeddings backend gains it on its next start."""
    from tui.core.learning.model import SpecialistModel
    from tui.core.learning.training import save_and_record

    examples = None
    held_back = 0
    for name, (kind, path) in target.models().items():
        if name not in settings.backends or (path.exists() and not fresh):
            continue
        if examples is None:  # every DEMO_HOLD_OUT_EVERY-th label measures, never trains
            labelled = store.training_examples()
            examples = [e for i, e in enumerate(labelled) if i % DEMO_HOLD_OUT_EVERY]
            held_back = len(labelled) - len(examples)
        model = SpecialistModel.train(
            [e.text for e in examples],
            [e.label for e in examples],
            source="demo",
            kind=kind,
            ticket_ids=[e.ticket_id for e in examples],
            label_event_ids=[e.label_event_id for e in examples],
        )
        save_and_record(model, path, store)
        say(
            f"trained {name} ({kind}) on {model.info.n_examples} agent-labelled tickets"
            f" in {model.info.train_seconds:.1f} s ({held_back} held back to measure its"
            " accuracy)"
        )
