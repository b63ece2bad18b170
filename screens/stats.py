"""Statistics and costs: per-backend accuracy against the agents' labels (only those the
answering model did not train on, with a 95 % interval and the number of labels), latency,
cost, the latency histogram, cost over time and the break-even between a hosted API and a GPU;
with `[routing] shadow`, one line per shadow backend against the active one."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from screens import format as fmt
from screens.messages import CurveComputed, ShadowsCompared, StatsComputed
from screens.widgets.stats_plots import CostPlot, CurvePlot, LatencyPlot, backend_colors
from tui.core.cost_report import break_even_rows, hosted_prices
from tui.core.intervals import accuracy_text
from tui.core.learning.curve import curve_from_labels, format_curve
from tui.core.learning.training import held_out_stats
from tui.core.models import BackendStats
from tui.services.desk import Desk
from tui.services.shadow_compare import compare_shadows, interval_text

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("backend", "Backend", 11),
    ("type", "Type", 9),
    ("n", "Decisions", 9),
    ("errors", "Errors", 6),
    ("accuracy", "Accuracy (95% CI, n)", 22),
    ("f1", "Macro-F1", 8),
    ("p50", "p50 ms", 6),
    ("p95", "p95 ms", 6),
    ("per1k", "$ per 1k", 10),
    ("monthly", "$/month", 10),
)


def accuracy_cell(stats: BackendStats) -> str:
    """The accuracy on labels the answering model did not train on, with interval and n."""
    return accuracy_text(
        stats.accuracy,
        stats.accuracy_low,
        stats.accuracy_high,
        stats.scored_on,
        left_out=stats.excluded_trained,
    )


def left_out_note(stats: Sequence[BackendStats]) -> str:
    """Under the table: how many labels were left out because the model trained on them."""
    left_out = {s.backend: s.excluded_trained for s in stats if s.excluded_trained}
    if not left_out:
        return "accuracy on every agent label (no backend trained on them)"
    named = ", ".join(f"{name} {n:,}" for name, n in left_out.items())
    return f"labels a backend's model trained on are left out of its accuracy: {named}"


class StatsScreen(Screen[None]):
    """Read-only figures, computed in a thread worker each time the screen opens."""

    BINDINGS = [
        Binding("escape,s", "close", "Back", id="stats.close"),
        Binding("g", "reload", "Refresh", id="stats.refresh"),
    ]

    def __init__(self, desk: Desk) -> None:
        super().__init__()
        self.desk = desk

    def compose(self) -> ComposeResult:
        yield DataTable(id="stats-table", cursor_type="row")
        yield Static(id="shadow-compare")
        with Horizontal(id="stats-plots"):
            yield LatencyPlot(id="latency-plot")
            yield CostPlot(id="cost-plot")
            yield CurvePlot(id="curve-plot")
        with Horizontal(id="stats-bottom"):
            yield Static(id="break-even")
            yield Static("computing the learning curve ...", id="learning-curve")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.border_title = "Per backend, against agent labels its model did not train on"
        for key, header, width in COLUMNS:
            table.add_column(header, key=key, width=width)
        shadows = self.query_one("#shadow-compare", Static)
        shadows.border_title = (
            f"Shadows against {self.desk.router.active}, on tickets both answered"
        )
        shadows.display = False
        self.query_one("#break-even", Static).border_title = "Break-even"
        self.query_one("#learning-curve", Static).border_title = "How many labels? (specialist)"
        self.action_reload()

    def action_reload(self) -> None:
        self.compute()
        self.compute_curve()
        if self.desk.router.shadows.names:
            self.compare_shadows()

    @work(thread=True, exclusive=True, group="shadows", exit_on_error=False)
    def compare_shadows(self) -> None:
        desk = self.desk
        types = {n: c.type for n, c in desk.settings.backends.items()}
        found = compare_shadows(desk.store, desk.router.active, desk.router.shadows.names, types)
        self.post_message(ShadowsCompared(tuple(found)))

    @on(ShadowsCompared)
    def show_shadows(self, message: ShadowsCompared) -> None:
        """One line per shadow: shadow figures first, the active backend's after `vs`."""
        panel = self.query_one("#shadow-compare", Static)
        lines = []
        for c in message.comparisons:
            s, a = c.shadow, c.active
            lines.append(
                f"{s.backend}: {fmt.count(c.compared)} both answered, agree"
                f" {fmt.percent(c.agreement)} · accuracy {interval_text(s.accuracy)}"
                f" vs {interval_text(a.accuracy)} · p50"
                f" {fmt.ms(s.p50_ms)} vs {fmt.ms(a.p50_ms)} ms · $/1k"
                f" {fmt.usd(s.cost_per_1k_usd)} vs {fmt.usd(a.cost_per_1k_usd)}"
                f" · skipped {fmt.count(c.counts.skipped)}"
            )
        panel.update(Content("\n".join(lines)))
        panel.display = bool(lines)

    @work(thread=True, exclusive=True, group="curve", exit_on_error=False)
    def compute_curve(self) -> None:
        """Retrains the specialist on growing samples of the agents' labels: seconds of CPU,
        so it runs in its own worker and the figures above appear first."""
        examples = self.desk.store.labelled_examples()
        points, test_size = curve_from_labels(examples)
        self.post_message(CurveComputed(tuple(points), test_size, len(examples)))

    @on(CurveComputed)
    def show_curve(self, message: CurveComputed) -> None:
        panel = self.query_one("#learning-curve", Static)
        self.query_one(CurvePlot).show(message.points)
        if not message.points:
            panel.update(
                f"{message.labelled} labelled tickets: label at least 20, with 5 or more per"
                " label, to see how accuracy grows with labels."
            )
            return
        lines = format_curve(message.points)
        lines.append(
            f"held out {message.test_size} of {message.labelled} agent labels;"
            " compare with a hosted backend's accuracy above"
        )
        panel.update("\n".join(lines))

    def action_close(self) -> None:
        self.dismiss()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def compute(self) -> None:
        store, settings = self.desk.store, self.desk.settings
        stats = tuple(held_out_stats(settings, store))
        names = [s.backend for s in stats]
        self.post_message(
            StatsComputed(
                stats=stats,
                latencies={name: store.latencies(name, limit=5000) for name in names},
                timeline=store.cost_timeline(bucket_chars=13),
                token_means={name: store.token_means(name) for name in settings.backends},
                counterfactual_mean=store.counterfactual_mean(),
                helpdesks=tuple(store.helpdesk_states(list(settings.helpdesk))),
            )
        )

    @on(StatsComputed)
    def show(self, message: StatsComputed) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for s in message.stats:
            table.add_row(
                Text(s.backend),
                Text(s.backend_type or ""),
                Text(fmt.count(s.n), justify="right"),
                Text(fmt.count(s.errors), justify="right"),
                Text(accuracy_cell(s), justify="right"),
                Text(fmt.percent(s.macro_f1), justify="right"),
                Text(fmt.ms(s.latency_ms.get("p50")), justify="right"),
                Text(fmt.ms(s.latency_ms.get("p95")), justify="right"),
                Text(fmt.usd(s.cost_per_1k_usd), justify="right"),
                Text(fmt.usd(s.projected_monthly_usd), justify="right"),
                key=s.backend,
            )
        table.border_subtitle = left_out_note(message.stats)
        colors = backend_colors(s.backend for s in message.stats)
        self.query_one(LatencyPlot).show(message.latencies, colors)
        self.query_one(CostPlot).show(message.timeline, colors)
        self._show_break_even(message)

    def _show_break_even(self, message: StatsComputed) -> None:
        settings = self.desk.settings
        by_name = {s.backend: s for s in message.stats}
        hosted = hosted_prices(
            settings, by_name, message.token_means.__getitem__, message.counterfactual_mean
        )
        rows = break_even_rows(settings, hosted, by_name)
        volume = settings.routing.daily_volume
        lines: list[Content] = []
        if not any(c.gpu_usd_per_hour is not None for c in settings.backends.values()):
            lines.append(
                Content.styled(
                    "No self-hosted backend configured: give an ollama or llama.cpp backend"
                    " `gpu_usd_per_hour` (e.g. 1.10) to see where a GPU becomes cheaper.",
                    "$text-muted",
                )
            )
        elif not rows:
            lines.append(
                Content.styled(
                    "No hosted backend with a known per-ticket price yet: route some tickets"
                    " through one (or set reference_backend) to compare.",
                    "$text-muted",
                )
            )
        for row in rows:
            h, r = row.hosted, row.result
            where = (
                "never (hosted costs nothing per ticket)"
                if r.daily_volume is None
                else f"{r.daily_volume:,.0f} tickets/day"
            )
            gpu_monthly = r.gpu_monthly_usd
            lines.append(
                Content.assemble(
                    (f"{h.backend}", "bold"),
                    f" {fmt.per_1k(h.per_ticket)} ({h.how})  vs  ",
                    (f"{row.self_hosted}", "bold"),
                    f" {fmt.rate(row.gpu_usd_per_hour, 'GPU-h')} = {fmt.monthly(gpu_monthly)}\n",
                    "  the GPU is cheaper above ",
                    (where, "bold $accent"),
                    f"; at your {volume:,}/day: hosted {fmt.monthly(row.hosted_monthly)},"
                    f" GPU {fmt.monthly(gpu_monthly)} → ",
                    (row.cheaper, "bold $success"),
                    " is cheaper",
                )
            )
            if r.gpu_capacity_per_day:
                lines.append(
                    Content(
                        f"\n  one GPU serves ~{r.gpu_capacity_per_day:,.0f} tickets/day at its p50"
                    )
                )
        if message.helpdesks:  # small, and only where a helpdesk is configured
            lines.append(Content.styled("\nHelpdesk sync", "bold"))
            for state in message.helpdesks:
                style = "$warning" if state.failed or state.conflicts else ""
                lines.append(Content.styled(f"  {state.line()}", style))
                if state.last_error:
                    lines.append(Content.styled(f"    last error: {state.last_error}", "$error"))
        self.query_one("#break-even", Static).update(Content("\n").join(lines))
