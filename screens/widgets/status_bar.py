"""The live status bar: active backend, work in flight, speed, latency and what it costs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from screens import format as fmt
from tui.services.status_figures import StatusFigures


class AutoRouteToggle(Static):
    """A clickable switch: with auto-route on, new tickets are routed as they arrive."""

    class Toggled(Message):
        """The agent clicked the toggle."""

    def on_click(self) -> None:
        self.post_message(self.Toggled())


class StatusBar(Horizontal):
    """One line under the inbox, redrawn at most a few times a second."""

    figures: reactive[StatusFigures] = reactive(StatusFigures, init=False)
    """The numbers on display."""
    auto_route: reactive[bool] = reactive(False, init=False)
    """Whether new tickets are routed as they arrive."""

    def compose(self) -> ComposeResult:
        yield Static(id="status-text")
        yield AutoRouteToggle(id="auto-route")

    def on_mount(self) -> None:
        self.watch_figures(self.figures)
        self.watch_auto_route(self.auto_route)

    def watch_figures(self, figures: StatusFigures) -> None:
        flight = f"{figures.in_flight} in flight" if figures.in_flight else "idle"
        if figures.in_flight and figures.limit is not None:
            flight += f" (limit {figures.limit[0]}/{figures.limit[1]})"
        text = Content.assemble(
            (" ● ", "$success" if figures.in_flight else "$text-muted"),
            (figures.backend, "bold $accent"),
            f" │ {flight} │ {figures.per_second:.1f}/s",
            f" │ p50 {fmt.ms(figures.p50_ms)} p95 {fmt.ms(figures.p95_ms)} ms",
            f" │ spent {fmt.usd(figures.total_cost)}",
            f" │ {fmt.per_1k_amount(figures.per_1k)}",
            f" │ {fmt.monthly(figures.monthly)}",
        )
        self.query_one("#status-text", Static).update(text)

    def watch_auto_route(self, on: bool) -> None:
        toggle = self.query_one(AutoRouteToggle)
        toggle.update("auto-route ● on" if on else "auto-route ○ off")
        toggle.set_class(on, "-on")
