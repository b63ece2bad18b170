"""The selected ticket through every configured backend at once, side by side: the
trade-off between label, confidence, latency, tokens and cost on one screen."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from screens import format as fmt
from screens.backend_picker import HEALTH_TIMEOUT_S
from screens.messages import CompareAnswered
from screens.widgets.route_runner import wait_notifier
from tui.core.models import Decision, Ticket
from tui.services.compare import compare_backends, store_compared, unavailable_backends
from tui.services.desk import Desk

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("backend", "Backend", 14),
    ("label", "Label", 18),
    ("confidence", "Conf", 5),
    ("source", "Source / error", 16),
    ("ms", "Latency ms", 10),
    ("tokens", "Tokens in/out", 13),
    ("cost", "Cost", 11),
    ("per1k", "$ per 1k", 10),
)


class CompareModal(ModalScreen[bool]):
    """Routes one ticket on every backend; the answers are stored when all are in.

    The active backend's answer is stored last so it stays the ticket's decision; the others
    feed the disagreement filter and the statistics. Dismisses with whether it stored any.
    """

    BINDINGS = [Binding("escape", "close", "Close", id="compare.close")]

    def __init__(self, ticket: Ticket, desk: Desk, new_run_id: Callable[[], str]) -> None:
        super().__init__()
        self.ticket = ticket
        self.desk = desk
        self.new_run_id = new_run_id
        self.stored = False
        self.answers: dict[str, str | None] = {}
        """Label per backend (None for a failed attempt), as the answers arrive."""

    def compose(self) -> ComposeResult:
        with Vertical(id="compare-dialog"):
            yield Label(
                Content.assemble(
                    ("Compare  ", "bold"), self.ticket.id, "  ", (self.ticket.subject[:80], "bold")
                ),
                id="compare-title",
            )
            yield DataTable(id="compare-table", cursor_type="row")
            yield Label("Routing on every backend…", id="compare-help")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, header, width in COLUMNS:
            table.add_column(header, key=key, width=width)
        muted = self.app.theme_variables.get("text-muted", "")
        for name in self.desk.settings.backends:
            marker = "● " if name == self.desk.router.active else "  "
            cells = [Text(marker + name, overflow="ellipsis"), Text("…", style=muted)]
            cells += [Text("") for _ in COLUMNS[2:]]
            table.add_row(*cells, key=name)
        table.focus()
        self.compare()

    @work(group="routing", exit_on_error=False)
    async def compare(self) -> None:
        """Route on every backend at once. Each backend's `timeout_s` bounds each of its
        attempts (a trickling server once kept this screen spinning forever), so every row
        ends as an answer or an error, and retry waits are shown as notifications."""
        router = self.desk.router
        if router.on_wait is None:
            router.on_wait = wait_notifier(self.app.notify)

        def answered(decision: Decision) -> None:
            self.post_message(CompareAnswered(decision))

        engine = self.desk.engine  # the backends' own loop: never route on the UI's
        unavailable = await engine.call(unavailable_backends(router, HEALTH_TIMEOUT_S))
        self.show_unavailable(unavailable)
        names = [name for name in router.settings.backends if name not in unavailable]
        decisions = await engine.call(
            compare_backends(router, self.ticket, self.new_run_id, answered, names=names)
        )
        if not decisions:
            self.query_one("#compare-help", Label).update(
                "No backend can answer now (see each row); escape to close"
            )
            return
        try:
            await asyncio.to_thread(store_compared, self.desk.store, decisions, router.active)
        except Exception as exc:  # the answers stay on screen; say why they were not kept
            self.query_one("#compare-help", Label).update(
                Content(f"Not stored ({type(exc).__name__}: {exc}); escape to close")
            )
            return
        self.stored = True
        self.post_message(CompareAnswered(decisions[0]))

    def show_unavailable(self, unavailable: dict[str, str]) -> None:
        """Backends that cannot answer now: one muted line each, not a failed attempt."""
        muted = self.app.theme_variables.get("text-muted", "")
        table = self.query_one(DataTable)
        for name, reason in unavailable.items():
            table.update_cell(name, "label", Text("unavailable", style=muted))
            table.update_cell(name, "source", Text(reason, style=muted, overflow="ellipsis"))

    @on(CompareAnswered)
    def show_answer(self, message: CompareAnswered) -> None:
        d = message.decision
        self.answers[d.backend] = d.label if d.ok else None
        theme = self.app.theme_variables
        table = self.query_one(DataTable)
        if d.ok:
            label = Text(d.label or "", style="bold")
        else:
            label = Text(f"⚠ {d.error_class}", style=theme.get("error", ""), overflow="ellipsis")
        values = {
            "label": label,
            "confidence": Text(fmt.confidence(d.confidence)),
            "source": Text(
                d.confidence_source or ("" if d.ok else d.error_message or ""), overflow="ellipsis"
            ),
            "ms": Text(fmt.ms(d.total_ms), justify="right"),
            "tokens": Text(fmt.tokens(d.input_tokens, d.output_tokens, d.tokens_estimated)),
            "cost": Text(fmt.usd(d.cost_usd), justify="right"),
            "per1k": Text(fmt.usd_per_1k(d.cost_usd), justify="right"),
        }
        for key, cell in values.items():
            table.update_cell(d.backend, key, cell)
        if self.stored:
            labels = {label for label in self.answers.values() if label is not None}
            failed = sum(label is None for label in self.answers.values())
            verdict = "all agree" if len(labels) == 1 else f"{len(labels)} different labels"
            if failed:
                verdict += f", {failed} failed"
            skipped = len(self.desk.settings.backends) - len(self.answers)
            if skipped:
                verdict += f", {skipped} unavailable"
            self.query_one("#compare-help", Label).update(
                f"Done: {verdict}; stored. escape to close"
            )

    def action_close(self) -> None:
        self.dismiss(self.stored)
