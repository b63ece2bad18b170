"""Promote a shadow backend: each `[routing] shadow` backend beside the active one on the
tickets both answered, and enter makes the highlighted one the active backend.

The same service as `triagedesk promote` does the work (config rewritten atomically, event
recorded with the evidence), in a thread worker; then the app hot-swaps the backend in and
the old active backend becomes a shadow, so the comparison goes on.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from screens import format as fmt
from screens.messages import PromotionFailed, ShadowPromoted, ShadowsCompared
from tui.services.desk import Desk
from tui.services.shadow_compare import ShadowComparison, compare_shadows


def accuracy_cell(c: ShadowComparison) -> str:
    """Shadow, then active, on the labels both answered: `92.0% vs 88.0% (n=50)`."""
    s, a = c.shadow.accuracy, c.active.accuracy
    if s.value is None or a.value is None:
        return "no held-out labels yet"
    return f"{fmt.percent(s.value)} vs {fmt.percent(a.value)} (n={s.n})"


class PromoteShadowModal(ModalScreen[str | None]):
    """Enter promotes the highlighted shadow; f promotes it without evidence."""

    BINDINGS = [
        Binding("escape", "dismiss_none", "Cancel", id="promote.cancel"),
        Binding("f", "promote(True)", "Force", id="promote.force"),
    ]

    def __init__(self, desk: Desk, agent: str) -> None:
        super().__init__()
        self.desk = desk
        self.agent = agent

    def compose(self) -> ComposeResult:
        with Vertical(id="promote-dialog"):
            yield Label(f"Promote a shadow backend in place of {self.active}", id="promote-title")
            yield DataTable(id="shadows", cursor_type="row")
            yield Label(
                "enter promote · f promote without evidence · escape cancel",
                id="promote-help",
            )

    @property
    def active(self) -> str:
        return self.desk.router.active

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, header, width in (
            ("name", "Shadow", 14),
            ("answered", "Answered", 8),
            ("skipped", "Skipped", 8),
            ("agree", "Agree", 7),
            ("accuracy", "Accuracy vs active", 24),
            ("p50", "p50 ms", 14),
            ("per1k", "$/1k", 16),
        ):
            table.add_column(header, key=key, width=width)
        table.focus()
        self.compare()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def compare(self) -> None:
        desk = self.desk
        types = {n: c.type for n, c in desk.settings.backends.items()}
        found = compare_shadows(desk.store, self.active, desk.router.shadows.names, types)
        self.post_message(ShadowsCompared(tuple(found)))

    @on(ShadowsCompared)
    def show(self, message: ShadowsCompared) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for c in message.comparisons:
            s, a = c.shadow, c.active
            table.add_row(
                Text(s.backend),
                Text(fmt.count(c.counts.routed), justify="right"),
                Text(fmt.count(c.counts.skipped), justify="right"),
                Text(fmt.percent(c.agreement), justify="right"),
                Text(accuracy_cell(c)),
                Text(f"{fmt.ms(s.p50_ms)} vs {fmt.ms(a.p50_ms)}"),
                Text(f"{fmt.usd(s.cost_per_1k_usd)} vs {fmt.usd(a.cost_per_1k_usd)}"),
                key=s.backend,
            )

    @on(DataTable.RowSelected, "#shadows")
    def picked(self, event: DataTable.RowSelected) -> None:
        self.promote_shadow(str(event.row_key.value), force=False)

    def action_promote(self, force: bool) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
            self.promote_shadow(str(key.value), force=force)

    @work(thread=True, exclusive=True, group="promote", exit_on_error=False)
    def promote_shadow(self, name: str, *, force: bool) -> None:
        """The config file as it is now (an earlier promotion may have changed it), then the
        promotion itself: SQLite and the file, so in a thread."""
        from tui.core.config import ConfigError, load_settings
        from tui.services.promotion import PromotionRefused, promote

        source = self.desk.settings.source
        try:
            if source is None:
                raise PromotionRefused("no config file to promote in (the defaults are in use)")
            settings = load_settings(source, required=True)
            done = promote(self.desk.store, settings, name, agent=self.agent, force=force)
        except (PromotionRefused, ConfigError) as exc:
            self.post_message(PromotionFailed(str(exc)))
            return
        except Exception as exc:  # the store failed: say so, keep the app up
            self.post_message(PromotionFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(ShadowPromoted(done))

    @on(PromotionFailed)
    def refused(self, message: PromotionFailed) -> None:
        self.notify(message.error, title="Not promoted", severity="error")

    @on(ShadowPromoted)
    async def promoted(self, message: ShadowPromoted) -> None:
        done = message.promoted
        await self.desk.engine.call(self.desk.router.shadows.set_names(done.shadows))
        swap = getattr(self.app, "swap_backend", None)
        if swap is not None:
            swap(done.backend)
        self.notify(
            f"{done.backend} is the active backend; {done.event.previous_backend} now shadows it"
            f" (recorded, {done.config_path} rewritten)",
            title="Promoted",
        )
        self.dismiss(done.backend)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
