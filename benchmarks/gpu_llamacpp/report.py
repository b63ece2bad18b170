"""Turn the device's results.json into benchmarks/results/gpu_llamacpp.md, with costs.

Cost arithmetic is triagedesk's own (`tui.core.costs`): a GPU billed by the hour whether busy or
not, against gpt-4o-mini's token prices from the default config, at measured prompt tokens.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tui.core.costs import HOURS_PER_MONTH, break_even  # noqa: E402

GPT_4O_MINI = (0.15, 0.60)
"""USD per million input and output tokens, as in the default config."""
HOSTED_OUTPUT_TOKENS = 12
"""A `{"label": ..., "confidence": ...}` answer in gpt-4o-mini's tokenizer."""
PRICE_SOURCE = (
    "H200 SXM on-demand list prices in 2026 run about $2.50-3.50/GPU-hour at long-tail clouds,"
    " $3.50-4.50 at specialty GPU clouds and $4.50-7.00 at hyperscalers"
    " (https://www.mercatus-ai.com/blog/cloud-gpu-pricing)"
)
SENSITIVITY = (2.50, 6.00)


def _f(value: Any, pattern: str = "{:.0f}") -> str:
    return "–" if value is None else pattern.format(value)


def hosted_per_ticket(input_tokens: float) -> float:
    """gpt-4o-mini's price for one ticket with this prompt and a 12-token answer."""
    return (input_tokens * GPT_4O_MINI[0] + HOSTED_OUTPUT_TOKENS * GPT_4O_MINI[1]) / 1e6


def gpu_per_1k(price: float, tickets_per_s: float) -> float:
    """A fully busy GPU's cost of 1,000 tickets at this throughput."""
    return price / 3600 / tickets_per_s * 1000


def _runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in results["runs"] if r.get("ok")]


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| model | backend | conc. | ok/n | tickets/s | p50 ms | p95 ms | TTFT p50 ms"
        " | prompt tok | output tok | prompt ms p50 | gen ms p50 | gen ms/tok"
        " | p50 ms @12 tok | tickets/s @12 tok |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results["runs"]:
        backend = "llama-server (openai)" if r["kind"] == "server" else "llamacpp-local"
        if not r.get("ok"):
            why = r.get("failed") or f"{r.get('n')} errors"
            lines.append(f"| {r['shape']} | {backend} | {r['concurrency']} | 0 | {why} |")
            continue
        lines.append(
            f"| {r['shape']} | {backend} | {r['concurrency']} | {r['ok']}/{r['n']}"
            f" | {_f(r['tickets_per_s'], '{:.1f}')} | {_f(r['latency_ms']['p50'])}"
            f" | {_f(r['latency_ms']['p95'])} | {_f(r['ttft_ms']['p50'])}"
            f" | {_f(r['input_tokens_mean'])} | {_f(r['output_tokens_mean'], '{:.1f}')}"
            f" | {_f(r['server_prompt_ms']['p50'], '{:.1f}')}"
            f" | {_f(r['server_gen_ms']['p50'], '{:.1f}')}"
            f" | {_f(r['gen_ms_per_output_token'], '{:.2f}')}"
            f" | {_f(r['normalised_latency_ms']['p50'])}"
            f" | {_f(r['normalised_tickets_per_s'], '{:.1f}')} |"
        )
    return lines


def cost_rows(results: dict[str, Any], price: float) -> tuple[list[str], list[dict[str, Any]]]:
    """Per shape and backend, the fastest run: $/1k, break-even volume, capacity, slots."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in _runs(results):
        key = (r["shape"], r["kind"])
        if r.get("tickets_per_s") and (
            key not in best or r["tickets_per_s"] > best[key]["tickets_per_s"]
        ):
            best[key] = r
    lines = [
        f"| model | backend (best concurrency) | tickets/s | GPU $/1k tickets at ${price:.2f}/h"
        " | gpt-4o-mini $/1k | break-even tickets/day | one GPU's capacity/day"
        " | implied `gpu_parallel_slots` |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    figures = []
    prompt_tokens = {
        shape: max(
            (r["input_tokens_mean"] or 0 for r in _runs(results) if r["shape"] == shape),
            default=0,
        )
        for shape, _ in best
    }
    for (shape, kind), r in sorted(best.items()):
        hosted = hosted_per_ticket(r["input_tokens_mean"] or prompt_tokens[shape])
        even = break_even(hosted, price, gpu_ms_per_ticket=1000 / r["tickets_per_s"])
        slots = r["tickets_per_s"] * (r["latency_mean_ms"] or 0) / 1000
        backend = "llama-server" if kind == "server" else "llamacpp-local"
        lines.append(
            f"| {shape} | {backend} (c{r['concurrency']}) | {r['tickets_per_s']:.1f}"
            f" | {gpu_per_1k(price, r['tickets_per_s']):.4f} | {hosted * 1000:.4f}"
            f" | {_f(even.daily_volume, '{:,.0f}')} | {_f(even.gpu_capacity_per_day, '{:,.0f}')}"
            f" | {slots:.1f} |"
        )
        figures.append(
            {
                "shape": shape,
                "kind": kind,
                "concurrency": r["concurrency"],
                "tickets_per_s": r["tickets_per_s"],
                "gpu_usd_per_1k": gpu_per_1k(price, r["tickets_per_s"]),
                "hosted_usd_per_1k": hosted * 1000,
                "break_even_per_day": even.daily_volume,
                "capacity_per_day": even.gpu_capacity_per_day,
                "implied_slots": slots,
            }
        )
    return lines, figures


def write_report(results_path: Path, price: float, md: Path) -> None:
    """Write the markdown report (and a copy of the JSON beside it)."""
    results = json.loads(results_path.read_text())
    md.parent.mkdir(parents=True, exist_ok=True)
    if results_path.resolve() != md.with_suffix(".json").resolve():
        shutil.copy(results_path, md.with_suffix(".json"))
    costs, _ = cost_rows(results, price)
    monthly = price * HOURS_PER_MONTH
    out = [
        "# triagedesk on one H200 through llama.cpp (issue 8)",
        "",
        f"Measured {results.get('started', '?')} on the device machine ({results.get('gpu')}).",
        "Produced by `benchmarks/gpu_llamacpp/` (see its NOTES.md for method and caveats);",
        "raw figures in `gpu_llamacpp.json`.",
        "",
        "## Figures",
        "",
        *table(results),
        "",
        "`tickets/s` counts from the moment the model was loaded to the last answer;",
        "latencies are per ticket as `triagedesk eval` stored them (queueing included, which is",
        "why the one-at-a-time in-process backend's latency grows with concurrency).",
        "`prompt ms`/`gen ms` are llama.cpp's own timings of prompt processing and generation",
        "(prompt ms is after reuse of the shared system-prompt prefix). `@12 tok` rescales",
        "generation to a 12-token answer.",
        "",
        "## Cost per 1,000 tickets and break-even against gpt-4o-mini",
        "",
        f"GPU price: **${price:.2f} per H200-hour** (${monthly:,.0f} a month), a parameter",
        f"(`bench.py report --price`). Why: {PRICE_SOURCE}.",
        "Hosted: gpt-4o-mini at $0.15/$0.60 per Mtok with the measured prompt tokens and a",
        f"{HOSTED_OUTPUT_TOKENS}-token answer. The GPU is billed whether busy or not: the $/1k",
        "figure assumes it is kept busy; break-even is `tui.core.costs.break_even`.",
        "",
        *costs,
        "",
    ]
    for alt in SENSITIVITY:
        alt_lines, _ = cost_rows(results, alt)
        out += [f"At ${alt:.2f}/h:", "", *alt_lines, ""]
    if results.get("skipped"):
        out += ["## Not run", "", *[f"- {s}" for s in results["skipped"]], ""]
    md.write_text("\n".join(out))
    print(f"wrote {md}")
