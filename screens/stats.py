"""Statistics and costs: per-backend accuracy against the agents' labels, latency, cost, the
latency histogram, cost over time and the break-even between a hosted API and a GPU."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from screens import format as fmt
from screens.messages import CurveComputed, StatsComputed
from screens.widgets.stats_plots import CostPlot, CurvePlot, LatencyPlot, backend_colors
from tui.core.cost_report import break_even_rows, hosted_prices
from tui.core.learning.curve import curve_from_labels, format_curve
from tui.services.desk import Desk

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("backend", "Backend", 12),
    ("type", "Type", 10),
    ("n", "Decisions", 9),
    ("errors", "Errors", 6),
    ("labelled", "Labelled", 8),
    ("accuracy", "Accuracy", 8),
    ("f1", "Macro-F1", 8),
    ("p50", "p50 ms", 6),
    ("p95", "p95 ms", 6),
    ("per1k", "$ per 1k", 10),
    ("monthly", "$/month", 10),
)


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
        table.border_title = "Per backend, against the agents' labels"
        for key, header, width in COLUMNS:
            table.add_column(header, key=key, width=width)
        self.query_one("#break-even", Static).border_title = "Break-even"
        self.query_one("#learning-curve", Static).border_title = "How many labels? (specialist)"
        self.action_reload()

    def action_reload(self) -> None:
        self.compute()
        self.compute_curve()

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
        stats = tuple(store.backend_stats(daily_volume=settings.routing.daily_volume))
        names = [s.backend for s in stats]
        self.post_message(
            StatsComputed(
                stats=stats,
                latencies={name: store.latencies(name, limit=5000) for name in names},
                timeline=store.cost_timeline(bucket_chars=13),
                token_means={name: store.token_means(name) for name in settings.backends},
                counterfactual_mean=store.counterfactual_mean(),
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
                Text(fmt.count(s.labelled), justify="right"),
                Text(fmt.percent(s.accuracy), justify="right"),
                Text(fmt.percent(s.macro_f1), justify="right"),
                Text(fmt.ms(s.latency_ms.get("p50")), justify="right"),
                Text(fmt.ms(s.latency_ms.get("p95")), justify="right"),
                Text(fmt.usd(s.cost_per_1k_usd), justify="right"),
                Text(fmt.usd(s.projected_monthly_usd), justify="right"),
                key=s.backend,
            )
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
        self.query_one("#break-even", Static).update(Content("\n").join(lines))
