"""The statistics screen's three plots, each a widget that draws what it is given.

Each answers one question at a glance (issue 18): how fast is each backend (a histogram with
milliseconds on a labelled axis, tickets on the other, one colour per backend), what has each
cost so far (points per hour, so one hour of data is a visible point, not an empty line), and
how accuracy grows with labels (the learning curve drawn, with its table beside it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from textual_plotext import PlotextPlot

from tui.core.cost_report import cumulative_costs
from tui.core.learning.curve import CurvePoint
from tui.core.plot_series import latency_bins, money_ticks, percent_ticks

PALETTE = ("cyan+", "orange+", "magenta+", "green+", "red+", "blue+", "yellow", "gray+")
"""Plot colours, assigned to backends in name order so a backend keeps its colour on every
plot of the screen."""


def backend_colors(names: Iterable[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


class LatencyPlot(PlotextPlot):
    """Tickets per latency bin, per backend, over shared log-spaced bins."""

    def show(self, latencies: Mapping[str, Sequence[float]], colors: Mapping[str, str]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("Latency per ticket")
        plt.xlabel("latency, ms (log scale)")
        plt.ylabel("tickets")
        bins = latency_bins(latencies)
        names = sorted(bins.counts)
        if names:
            # side by side within each shared bin, so no backend's bars hide another's
            step = bins.centers[1] - bins.centers[0] if len(bins.centers) > 1 else 1.0
            for i, name in enumerate(names):
                shift = step * ((i + 0.5) / len(names) - 0.5)
                points = [
                    (c + shift, n)
                    for c, n in zip(bins.centers, bins.counts[name], strict=True)
                    if n
                ]
                plt.bar(
                    [x for x, _ in points],
                    [n for _, n in points],
                    width=0.9 / len(names),
                    color=colors.get(name, PALETTE[0]),
                    label=name,
                )
            plt.xticks(list(bins.ticks), list(bins.tick_labels))
            top = max(max(row) for row in bins.counts.values())
            yticks = sorted({0, top // 2, top})
            plt.yticks([float(t) for t in yticks], [f"{t:,}" for t in yticks])
        self.refresh()


class CostPlot(PlotextPlot):
    """Cumulative cost per backend by hour, with dollar ticks people read."""

    def show(self, timeline: list[tuple[str, str, float, int]], colors: Mapping[str, str]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("Cumulative cost")
        plt.xlabel("hour (UTC)")
        plt.ylabel("spent")
        series = cumulative_costs(timeline)
        top = 0.0
        for backend, (xs, ys) in series.lines.items():
            color = colors.get(backend, PALETTE[0])
            if len(xs) > 1:
                plt.plot(xs, ys, marker="braille", color=color)
            # points as well as lines: an hour of data is one point per backend
            plt.scatter(xs, ys, marker="●", color=color, label=backend)
            top = max([top, *ys])
        buckets = series.buckets
        if buckets:
            ticks = sorted({0, len(buckets) // 2, len(buckets) - 1})
            # short labels ("09h"), the day in the axis title: a 9-character label at the
            # canvas edge was dropped or kept from one render to the next
            labels = [buckets[i][11:13] + "h" for i in ticks]
            plt.xticks([float(tick) for tick in ticks], labels)
            days = sorted({bucket[5:10] for bucket in buckets})
            span = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
            plt.xlabel(f"hour (UTC), {span}")
            # a fixed x range: every hour's point and tick label inside the canvas, so the
            # last label is never dropped at the edge (one hour: a point in the middle)
            plt.xlim(
                -0.5 if len(buckets) > 1 else -1, len(buckets) - 0.5 if len(buckets) > 1 else 1
            )
            yticks, ylabels = money_ticks(top)
            plt.yticks(list(yticks), list(ylabels))
            plt.ylim(0, top * 1.1 if top > 0 else 1)
        self.refresh()


class CurvePlot(PlotextPlot):
    """The specialist's held-out accuracy against the number of labels it trained on."""

    def show(self, points: Sequence[CurvePoint]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("Held-out accuracy vs labels")
        plt.xlabel("labels trained on")
        plt.ylabel("accuracy")
        if points:
            xs = [p.n_train for p in points]
            ys = [p.accuracy * 100 for p in points]
            plt.plot(xs, ys, marker="braille", color=PALETTE[0])
            plt.scatter(xs, ys, marker="●", color=PALETTE[0])
            yticks, ylabels = percent_ticks(ys)
            plt.yticks(list(yticks), list(ylabels))
            plt.ylim(yticks[0], yticks[-1])
            plt.xticks([float(x) for x in xs], [f"{x:,}" for x in xs])
        self.refresh()
