"""The routing engine: tickets in, priced decisions out, written to the store in batches.

Textual-free so the headless CLI, the TUI and the benchmarks share it. One module per part:

- `router`: the `Router`, which builds backends on demand, routes, prices and stores;
- `engine`: `RoutingEngine`, the router's own thread and loop (the TUI routes there);
- `taxonomy`: `resolve_taxonomy`, the labels a run may answer with;
- `pending`: `page_pending`, the tickets still to route in a run, claimed page by page;
- `writer`: `DecisionWriter`, the one thread that stores a run's decisions;
- `shadow`: `ShadowPool`, the `[routing] shadow` backends answering beside the active one;
- `summary`: `RunSummary`, what a run did, and `percentile` for its figures.

Import from here (`from tui.services.routing import Router`): the names below are the API.
"""

from __future__ import annotations

from tui.core.claims import RunClaims
from tui.core.config import ConfigError
from tui.services.routing.engine import RoutingEngine
from tui.services.routing.pending import page_pending
from tui.services.routing.router import BATCH, FLUSH_EVERY_S, MAX_CONCURRENCY, Router
from tui.services.routing.shadow import SHADOW_DRAIN_S, ShadowPool, ShadowTally
from tui.services.routing.summary import RunSummary, percentile
from tui.services.routing.taxonomy import NoTaxonomy, resolve_taxonomy

__all__ = [
    "BATCH",
    "FLUSH_EVERY_S",
    "MAX_CONCURRENCY",
    "ConfigError",
    "SHADOW_DRAIN_S",
    "NoTaxonomy",
    "RunClaims",
    "Router",
    "RoutingEngine",
    "RunSummary",
    "ShadowPool",
    "ShadowTally",
    "page_pending",
    "percentile",
    "resolve_taxonomy",
]
