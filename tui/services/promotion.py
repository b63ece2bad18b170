"""Promotion: make a shadow backend the active one, with the evidence it was promoted on.

`triagedesk promote NAME` and the TUI's palette action both come here. The config file is
rewritten atomically (`[routing] backend = NAME`; NAME leaves `shadow` and the backend it
replaces takes its place there, so the comparison goes on the other way round), and the
promotion is recorded in the database with the comparison figures of that moment, the time
and the agent. The event is committed only once the config was rewritten, in the same
transaction, so neither happens without the other.

Textual-free and print-free; blocking (SQLite, the file): call it in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.core.config import Settings
from tui.core.config.errors import short
from tui.core.config_write import write_routing
from tui.core.store import Promotion, Store
from tui.services.shadow_compare import ShadowComparison, compare_shadows


class PromotionRefused(ValueError):
    """The promotion was not made (not a shadow, no evidence, no config file); one line."""


@dataclass(frozen=True, slots=True)
class Promoted:
    """A promotion made: the event stored and the routing now in the config."""

    event: Promotion
    backend: str
    shadows: tuple[str, ...]
    config_path: Path

    def to_json(self) -> dict[str, Any]:
        """The recorded event as `promote --json` prints it (SPEC)."""
        e = self.event
        return {
            "id": e.id,
            "backend": e.backend,
            "previous_backend": e.previous_backend,
            "agent": e.agent,
            "forced": e.forced,
            "created_at": e.created_at,
            "shadows": list(self.shadows),
            "evidence": e.evidence,
        }


def evidence_for(
    store: Store, settings: Settings, name: str, *, active: str | None = None
) -> ShadowComparison:
    """The comparison of shadow `name` with the active backend, now.

    Raises:
        PromotionRefused: `name` is not a configured shadow.
    """
    routing = settings.routing
    if name not in routing.shadow:
        listed = ", ".join(short(n) for n in routing.shadow) or "none configured"
        raise PromotionRefused(
            f"{short(name)} is not a shadow backend ([routing] shadow: {listed})"
        )
    types = {n: c.type for n, c in settings.backends.items()}
    (found,) = compare_shadows(store, active or routing.backend, [name], types)
    return found


def promote(
    store: Store,
    settings: Settings,
    name: str,
    *,
    agent: str,
    force: bool = False,
    active: str | None = None,
) -> Promoted:
    """Make shadow `name` the active backend, in the config and on the record.

    Args:
        settings: As loaded from the config file, which is rewritten.
        agent: Who promotes (recorded).
        force: Promote without evidence (no agent-labelled ticket both answered).
        active: The backend the evidence compares with; default the config's.

    Raises:
        PromotionRefused: Not a shadow, no evidence without `force`, or no config file.
        ConfigError: The rewritten config would not load (the file is left as it was).
    """
    comparison = evidence_for(store, settings, name, active=active)
    previous = settings.routing.backend
    if not comparison.has_evidence and not force:
        raise PromotionRefused(
            f"no evidence for {short(name)} yet: no agent-labelled ticket that both it and"
            f" {short(comparison.active.backend)} answered (route and label tickets first,"
            " or pass --force)"
        )
    path = settings.source
    if path is None or not path.exists():
        raise PromotionRefused("no config file to promote in (the built-in defaults are in use)")
    shadows = tuple(previous if n == name else n for n in settings.routing.shadow)
    event = store.record_promotion(
        backend=name,
        previous=previous,
        agent=agent,
        evidence=comparison.to_json(),
        forced=force and not comparison.has_evidence,
        apply=lambda: write_routing(path, name, shadows),
    )
    return Promoted(event, name, shadows, path)
