"""The Textual app: wiring only. Screens live in `screens/`; the core in `tui/` never imports
this module. `make_app` builds the app for `run_app`, the tests and the snapshots alike."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from pathlib import Path

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen

from screens.commands import INBOX_COMMANDS, InboxCommands, palette_entries
from screens.inbox import InboxScreen
from screens.messages import BackendSwapped, InboxPageLoaded
from tui.core.config import ConfigError, Settings
from tui.core.store import DbTarget, Store, StoreError, describe_unusable_labels
from tui.services.desk import Desk
from tui.services.opening import Opening
from tui.services.routing import Router


class TriageApp(App[int]):
    """Holds the services (its `Desk`) and the app-wide state: the active backend and
    auto-route."""

    CSS_PATH = "app.tcss"
    TITLE = "triagedesk"
    COMMANDS = App.COMMANDS | {InboxCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True, id="app.force-quit"),
    ]

    active_backend: reactive[str] = reactive("")
    """The backend that gets the next dispatched ticket (mirrors `Router.active`)."""
    auto_route: reactive[bool] = reactive(False)
    """Route tickets as they arrive."""

    def __init__(
        self, settings: Settings, store: Store, router: Router, *, watch: Path | None = None
    ) -> None:
        super().__init__()
        self.desk = Desk(settings, store, router)
        self.watch_dir = watch
        self.set_reactive(TriageApp.active_backend, router.active)
        self.set_reactive(TriageApp.auto_route, settings.routing.auto_route)
        self._labels_checked = False
        """Whether the unusable-labels warning has been looked for (after the first page)."""

    @property
    def router(self) -> Router:
        """The desk's router: whose `active` backend and `in_flight` count the app mirrors."""
        return self.desk.router

    def get_default_screen(self) -> Screen[None]:
        return InboxScreen(self.desk, watch=self.watch_dir)

    def on_mount(self) -> None:
        if not self.router.taxonomy.labels:
            self.notify(
                "No labels known yet: add a [labels] table to the config or import labelled"
                " tickets; routing fails until then.",
                severity="warning",
                timeout=10,
            )

    LABEL_CHECK_DELAY_S = 1.0
    """How long after the inbox's first page the unusable-labels check starts."""

    @on(InboxPageLoaded)
    def _first_page_shown(self) -> None:
        """A moment after the inbox's first window has arrived, look for unusable labels.

        That look is a `GROUP BY` over the whole tickets table (half a second and more at a
        million tickets) on the store's one connection: started at mount, the inbox's first
        page query waited behind it, and started right after the first page it still held
        back what that frame reads next (`benchmarks/tui_scale.py`, 1M tickets: first paint
        1.7-2.0 s against 1.0-1.4 s without it). A warning toast can come a second later."""
        if not self._labels_checked:
            self._labels_checked = True
            self.set_timer(self.LABEL_CHECK_DELAY_S, self._warn_unusable_labels)

    @work(thread=True, exit_on_error=False)
    def _warn_unusable_labels(self) -> None:
        """Say which labels an older version stored that today's rules skip (the headless
        commands print the same line), so the agent can relabel those tickets."""
        found = self.desk.store.unusable_labels()
        if found:
            self.call_from_thread(
                self.notify, describe_unusable_labels(found), severity="warning", timeout=15
            )

    async def on_unmount(self) -> None:
        await self.desk.engine.aclose()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Every toast is plain text, whatever the caller asks: toasts carry file names, CSV
        headers, labels and server replies, and `[/]` in any of them would crash the app."""
        del markup
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, InboxScreen):
            for title, help_text, callback in palette_entries(screen, INBOX_COMMANDS):
                yield SystemCommand(title, help_text, callback)

    def swap_backend(self, name: str) -> None:
        """Hot swap: the next dispatched ticket goes to `name`; in-flight ones finish."""
        old = self.router.active
        try:
            self.router.swap(name)
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        self.active_backend = name
        if old != name:
            in_flight = self.desk.engine.in_flight  # a routing worker counts its own
            finishing = f"; {in_flight} in flight finish on {old}" if in_flight else ""
            self.notify(f"Backend: {old} → {name}{finishing}", title="Hot swap")
            self.screen.post_message(BackendSwapped(old, name))

    @work(group="shadow", exit_on_error=False)
    async def shadow_backend(self, name: str) -> None:
        """Shadow `name` from the next routed ticket on (a fine-tune just added offers it):
        appended to `[routing] shadow` in the config file, off the event loop."""
        from tui.core.config_write import write_routing

        settings = self.router.settings
        path = settings.source
        if path is None or not path.exists():
            self.notify("No config file to record the shadow in", severity="error")
            return
        if name == self.router.active:
            self.notify(f"{name} is the active backend: it cannot shadow itself", severity="error")
            return
        shadows = tuple(dict.fromkeys([*self.router.shadows.names, name]))
        try:
            await asyncio.to_thread(write_routing, path, settings.routing.backend, shadows)
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        routing = settings.routing.model_copy(update={"shadow": shadows})
        self.router.settings = settings.model_copy(update={"routing": routing})
        await self.desk.engine.call(self.router.shadows.set_names(shadows))
        self.notify(f"{name} now shadows {self.router.active} (written to {path})")

    def action_toggle_auto_route(self) -> None:
        self.auto_route = not self.auto_route
        state = "on: new tickets are routed as they arrive" if self.auto_route else "off"
        self.notify(f"Auto-route {state}")


def make_app(
    settings: Settings, store: Store, router: Router, *, watch: Path | None = None
) -> TriageApp:
    """The one way to build the app, for `run_app`, tests and snapshot apps."""
    return TriageApp(settings, store, router, watch=watch)


def run_app(
    settings: Settings,
    db_path: DbTarget,
    watch: Path | None = None,
    *,
    make_folder: bool = False,
    opening: Opening | None = None,
) -> int:
    """Open the TUI on a database; returns the process exit code.

    The database is created when missing (the app writes labels, decisions and imports),
    but its folder only with `make_folder` (our own default data dir): a folder the user
    named must exist. A database that cannot be opened is bad input: exit status 2.
    `opening`, when the caller started one before importing this module, is that database
    already being opened (`tui.services.opening`)."""
    if opening is None:
        opening = Opening(settings, db_path, make_folder=make_folder)
    try:
        store, taxonomy = opening.result()
    except StoreError as exc:
        print(f"triagedesk: error: {exc}", file=sys.stderr)
        return 2
    if watch is not None and not Path(watch).is_dir():
        print(f"triagedesk: error: --watch {watch}: not a folder", file=sys.stderr)
        store.close()
        return 2
    try:
        router = Router(settings, taxonomy, store)
        app = make_app(settings, store, router, watch=Path(watch) if watch else None)
        app.run()
        return app.return_code or 0
    finally:
        store.close()
