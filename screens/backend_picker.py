"""Pick the backend that routes the next ticket: each configured one with its type, model,
prices, health (checked in a worker) and recent p50 latency."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from screens import format as fmt
from screens.messages import BackendChecked, LatenciesLoaded
from tui.core.backend import Health
from tui.core.config import BackendConfig, CascadeOptions
from tui.services.desk import Desk

HEALTH_TIMEOUT_S = 5.0
"""A backend that has not answered its health check by then is shown as not answering."""


def price(config: BackendConfig) -> str:
    """The backend's pricing in one short phrase."""
    if config.gpu_usd_per_hour is not None:
        return fmt.rate(config.gpu_usd_per_hour, "GPU-h")
    if config.input_usd_per_mtok is not None or config.output_usd_per_mtok is not None:
        return (
            f"{fmt.price(config.input_usd_per_mtok or 0)}"
            f"/{fmt.price(config.output_usd_per_mtok or 0)} per Mtok"
        )
    if config.type == "specialist":
        return "CPU time"
    if isinstance(config, CascadeOptions):
        return f"{config.first} → {config.then}"
    return "–"


class BackendPickerModal(ModalScreen[str | None]):
    """Enter picks the highlighted backend; the app hot-swaps it in."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="backend-picker.cancel")]

    def __init__(self, desk: Desk) -> None:
        super().__init__()
        self.desk = desk

    def compose(self) -> ComposeResult:
        with Vertical(id="backend-dialog"):
            yield Label("Route the next tickets with", id="backend-title")
            yield DataTable(id="backends", cursor_type="row")
            yield Label(
                "enter switch · escape cancel · in-flight tickets finish first", id="backend-help"
            )

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("", key="active", width=1)
        table.add_column("Backend", key="name", width=14)
        table.add_column("Type", key="type", width=10)
        table.add_column("Model", key="model", width=18)
        table.add_column("Price", key="price", width=21)
        table.add_column("Health", key="health", width=34)
        table.add_column("p50 ms", key="p50", width=7)
        for name, config in self.desk.settings.backends.items():
            table.add_row(
                Text("●" if name == self.desk.router.active else ""),
                Text(name),
                Text(config.type),
                Text(config.model_name, overflow="ellipsis"),
                Text(price(config)),
                Text("checking…", style=self.app.theme_variables.get("text-muted", "")),
                Text("…"),
                key=name,
            )
        table.move_cursor(row=list(self.desk.settings.backends).index(self.desk.router.active))
        table.focus()
        self.check_health()
        self.load_latencies()

    @work(exit_on_error=False, group="health")
    async def check_health(self) -> None:
        """Check every backend at once; a hanging one only delays its own cell."""

        async def check(name: str) -> Health:
            backend = self.desk.router.backend(name)
            return await asyncio.wait_for(backend.check(), HEALTH_TIMEOUT_S)

        async def one(name: str) -> None:
            try:  # on the routing engine's loop, which owns the backends' connections
                health = await self.desk.engine.call(check(name))
                ok, detail = health.ok, health.detail
            except TimeoutError:
                ok, detail = False, f"no answer in {HEALTH_TIMEOUT_S:.0f} s"
            except Exception as exc:  # a broken backend is shown, not raised
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            self.post_message(BackendChecked(name, ok, detail))

        await asyncio.gather(*(one(name) for name in self.desk.settings.backends))

    @on(BackendChecked)
    def show_health(self, message: BackendChecked) -> None:
        style = self.app.theme_variables.get("success" if message.ok else "error", "")
        mark = "✓ " if message.ok else "✗ "
        cell = Text(mark + message.detail, style=style, overflow="ellipsis", no_wrap=True)
        self.query_one(DataTable).update_cell(message.name, "health", cell)

    @work(thread=True, exit_on_error=False, group="latency")
    def load_latencies(self) -> None:
        store = self.desk.store
        found = {
            name: store.latency_percentiles(name)["p50"] for name in self.desk.settings.backends
        }
        self.post_message(LatenciesLoaded(found))

    @on(LatenciesLoaded)
    def show_latencies(self, message: LatenciesLoaded) -> None:
        table = self.query_one(DataTable)
        for name, p50 in message.p50_ms.items():
            table.update_cell(name, "p50", Text(fmt.ms(p50), justify="right"))

    @on(DataTable.RowSelected, "#backends")
    def pick(self, event: DataTable.RowSelected) -> None:
        self.dismiss(str(event.row_key.value))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
