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


@dataclass(slots=True)
class Desk:
    """The settings, the ticket store and the router of one TUI session."""

    settings: Settings
    store: Store
    router: Router
    """Routes with `settings`' backends and writes its decisions to `store`."""
    engine: RoutingEngine = field(init=False)
    """The router's own thread and loop: every coroutine that uses the router's backends
    runs there (`await desk.engine.call(...)`), never on the UI's loop."""

    def __post_init__(self) -> None:
        self.engine = RoutingEngine(self.router)

    def add_backend(self, name: str, config: BackendConfig) -> None:
        """One more backend for the rest of the session (the backend picker lists it).

        Raises:
            ConfigError: A backend of that name is already configured.
        """
        self.router.add_backend(name, config)
        self.settings = self.router.settings
