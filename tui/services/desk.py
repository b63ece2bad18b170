"""The three services the TUI's screens work with, as one object.

The app builds a `Desk` once from what `run_app` opened and hands it down whole, so a screen
or modal takes one argument for its services (and the ones it was not handed cannot drift
from the app's). Textual-free, like the rest of `tui.services`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tui.core.config import BackendConfig, Settings
from tui.core.store import Store
from tui.services.routing import Router, RoutingEngine
from tui.services.routing.worker import RoutingWorker, worker_wanted


@dataclass(slots=True)
class Desk:
    """The settings, the ticket store and the router of one TUI session."""

    settings: Settings
    store: Store
    router: Router
    """Routes with `settings`' backends and writes its decisions to `store`."""
    worker: bool | None = None
    """Route runs in a worker process (`RoutingWorker`); None asks `worker_wanted`
    (`TRIAGEDESK_ROUTING_WORKER`, else a worker for backends of 128 calls at once or more)."""
    engine: RoutingEngine | RoutingWorker = field(init=False)
    """Where routing runs, never on the UI's loop: a worker process for runs (its GIL is its
    own, so 1,000 tickets in flight do not hold the UI thread), or the router's own thread
    and loop. Either way every coroutine that uses the router's
    backends goes through it (`await desk.engine.call(...)`, `desk.engine.route(...)`)."""

    def __post_init__(self) -> None:
        use_worker = worker_wanted(self.settings) if self.worker is None else self.worker
        self.engine = (
            RoutingWorker(self.router, self.store) if use_worker else RoutingEngine(self.router)
        )

    def add_backend(self, name: str, config: BackendConfig) -> None:
        """One more backend for the rest of the session (the backend picker lists it; the
        worker process reads the new config with its next run).

        Raises:
            ConfigError: A backend of that name is already configured.
        """
        self.router.add_backend(name, config)
        self.settings = self.router.settings
