"""`triagedesk demo`: build the offline demo database, train its specialist, route its inbox.

Everything happens locally: the inbox is generated (tui.demo), the specialist trains on the
third of it that "agents" labelled, then routes the rest. No key, no server, no GPU.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tui import paths
from tui.config import Settings, load_settings


@dataclass(frozen=True, slots=True)
class DemoPaths:
    db: Path
    config: Path
    model: Path


def demo_paths(db: Path | None = None, config: Path | None = None) -> DemoPaths:
    data = paths.data_dir()
    return DemoPaths(
        db=db or paths.demo_db_path(),
        config=config or data / "demo.toml",
        model=paths.models_dir() / "demo-specialist.joblib",
    )


def write_demo_config(target: DemoPaths) -> None:
    from tui.demo import demo_config_toml

    block = '[backends.specialist]\ntype = "specialist"\n'
    text = demo_config_toml()
    if block not in text:
        raise RuntimeError("demo config template lost its [backends.specialist] block")
    # The demo trains its own model file so it never overwrites the user's real specialist.
    text = text.replace(block, f"{block}path = {json.dumps(str(target.model))}\n", 1)
    target.config.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.config.with_name(target.config.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target.config)


def build_demo(
    target: DemoPaths,
    *,
    fresh: bool = False,
    size: int = 3000,
    say: Callable[[str], None] = print,
    on_decision: Callable[[], None] | None = None,
) -> Settings:
    """Create (or reuse) the demo database and return the settings to open it with."""
    from backends.specialist_model import SpecialistModel
    from tui.demo import demo_taxonomy, generate_inbox
    from tui.routing import Router, page_pending
    from tui.store import Store

    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(str(target.db) + suffix).unlink(missing_ok=True)
    if not target.config.exists() or fresh:
        write_demo_config(target)
    settings = load_settings(target.config, required=True)
    existing = target.db.exists()
    with Store(target.db) as store:
        if existing and store.ticket_count() and target.model.exists():
            say(f"demo database {target.db} already built (use --fresh to rebuild)")
            return settings
        say(f"generating {size} demo tickets ...")
        inbox = generate_inbox(size)
        labels = {d.ticket.id: d.agent_label for d in inbox if d.agent_label is not None}
        store.import_tickets([d.ticket for d in inbox], labels, source="demo")
        examples = store.labelled_examples()
        model = SpecialistModel.train(
            [t for t, _ in examples], [lab for _, lab in examples], source="demo"
        )
        model.save(target.model)
        say(
            f"trained the specialist on {model.info.n_examples} agent-labelled tickets"
            f" in {model.info.train_seconds:.1f} s"
        )
        router = Router(settings, demo_taxonomy(), store)

        async def route_all() -> None:
            run = store.open_run("specialist", "unrouted")
            try:
                summary = await router.run(
                    page_pending(store, run.id, unrouted_only=True),
                    run_id=run.id,
                    backend="specialist",
                    concurrency=2,
                    on_decision=(lambda _d: on_decision()) if on_decision else None,
                )
            finally:
                await router.aclose()
            store.finish_run(run.id)
            say(f"routed {summary.routed} tickets in {summary.elapsed_s:.1f} s")

        asyncio.run(route_all())
    return settings
