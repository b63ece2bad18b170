"""The statistics screen's plots draw what they are given (issue 18): the latency histogram
with ms on a labelled axis, tickets on the other and one colour per backend; cost over time
as points even with a single hour of data; the learning curve drawn, not only tabled."""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult

from screens.widgets.stats_plots import CostPlot, CurvePlot, LatencyPlot, backend_colors
from tui.core.learning.curve import CurvePoint
from tui.core.plot_series import latency_bins, money_ticks, percent_ticks

SCIENTIFIC = re.compile(r"\d(\.\d+)?[eE][-+]?\d")


class Plots(App[None]):
    def compose(self) -> ComposeResult:
        yield LatencyPlot(id="latency")
        yield CostPlot(id="cost")
        yield CurvePlot(id="curve")


def drawn(widget: Any) -> Text:
    """What the widget puts on screen: plotext's canvas at the widget's size, as Rich text."""
    rendered = widget.render()
    assert isinstance(rendered, Text)
    return rendered


def colours(text: Text) -> set[str]:
    return {str(span.style.color) for span in text.spans if span.style and span.style.color}


async def test_the_latency_histogram_has_labelled_axes_and_a_colour_per_backend() -> None:
    latencies = {"specialist": [1.5, 2.0, 2.2, 3.0], "gpt": [700.0, 780.0, 790.0, 1200.0]}
    colors = backend_colors(latencies)
    assert len(set(colors.values())) == 2
    async with Plots().run_test(size=(150, 30)) as pilot:
        widget = pilot.app.query_one(LatencyPlot)
        widget.show(latencies, colors)
        await pilot.pause()
        text = drawn(widget)
        plain = text.plain
        assert "latency, ms (log scale)" in plain and "tickets" in plain
        assert "100" in plain and "1k" in plain  # decades in ms, not log10 units
        assert "specialist" in plain and "gpt" in plain  # the legend
        assert len(colours(text)) >= 2
        assert not SCIENTIFIC.search(plain)


def test_latency_bins_are_shared_and_count_every_ticket() -> None:
    bins = latency_bins({"a": [0.5, 2.0, 2.0], "b": [900.0], "none": []}, bins=10)
    assert set(bins.counts) == {"a", "b"}
    assert sum(bins.counts["a"]) == 3 and sum(bins.counts["b"]) == 1
    assert bins.tick_labels == ("0.1", "1", "10", "100", "1k")
    assert latency_bins({}).centers == ()


async def test_one_hour_of_cost_is_drawn_as_points_with_dollar_ticks() -> None:
    timeline = [
        ("2026-03-14T09", "gpt", 0.00062, 19),
        ("2026-03-14T09", "specialist", 0.0000001, 37),
    ]
    async with Plots().run_test(size=(150, 30)) as pilot:
        widget = pilot.app.query_one(CostPlot)
        widget.show(timeline, backend_colors(["gpt", "specialist"]))
        await pilot.pause()
        plain = drawn(widget).plain
        legend = plain.count("●●")  # the legend's marker pair, one per backend
        assert legend == 2
        assert plain.count("●") >= legend * 2 + 2  # and a point per backend on the canvas
        assert "$0.00062" in plain and "09h" in plain and "hour (UTC), 03-14" in plain
        assert not SCIENTIFIC.search(plain)


async def test_the_learning_curve_is_drawn() -> None:
    points = [
        CurvePoint(per_class=5, n_train=40, accuracy=0.62, macro_f1=0.6),
        CurvePoint(per_class=20, n_train=160, accuracy=0.81, macro_f1=0.8),
        CurvePoint(per_class=None, n_train=400, accuracy=0.863, macro_f1=0.85),
    ]
    async with Plots().run_test(size=(150, 30)) as pilot:
        widget = pilot.app.query_one(CurvePlot)
        widget.show(points)
        await pilot.pause()
        plain = drawn(widget).plain
        assert "labels trained on" in plain and "accuracy" in plain
        assert "60%" in plain and "90%" in plain and "400" in plain
        assert plain.count("●") >= 3


def test_tick_labels_read_as_people_write_them() -> None:
    assert money_ticks(7.6e-6) == ((0.0, 3.8e-6, 7.6e-6), ("$0", "$0.0000038", "$0.0000076"))
    assert money_ticks(0.0) == ((0.0,), ("$0",))
    assert percent_ticks([62.0, 86.3]) == ((60.0, 70.0, 80.0, 90.0), ("60%", "70%", "80%", "90%"))
