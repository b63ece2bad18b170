"""The commands that report: stats (per-backend figures) and backends (the configured ones)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import click

from tui.cli.context import Context, headless
from tui.cli.usage import Command, flag
from tui.core.intervals import accuracy_text

if TYPE_CHECKING:
    from tui.core.models import BackendStats

if TYPE_CHECKING:
    from tui.services.shadow_compare import ShadowComparison
from tui.core import money


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _accuracy(s: BackendStats) -> str:
    return accuracy_text(
        s.accuracy, s.accuracy_low, s.accuracy_high, s.scored_on, left_out=s.excluded_trained
    )


def print_stats(ctx: Context, *, as_json: bool) -> int:
    """The stats table (or JSON list), also what `demo --no-tui` prints."""
    from tui.core.learning.training import held_out_stats
    from tui.services.shadow_compare import compare_shadows

    routing = ctx.settings.routing
    from backends.limiter import limit_key, read_snapshot

    with ctx.store() as store:
        stats = held_out_stats(ctx.settings, store)
        types = {name: config.type for name, config in ctx.settings.backends.items()}
        shadows = compare_shadows(store, routing.backend, routing.shadow, types)
        limits = {s.backend: read_snapshot(store.get_meta(limit_key(s.backend))) for s in stats}
    if as_json:
        entries = [s.model_dump() for s in stats]
        for entry in entries:  # the comparison is against the active backend only
            active = entry["backend"] == routing.backend
            entry["shadows"] = [c.to_json() for c in shadows] if active else []
            entry["concurrency_limit"] = limits.get(entry["backend"])
        ctx.say(json.dumps(entries, indent=2))
        return 0
    if not stats:
        ctx.say("no decisions yet: run `triagedesk route`")
        return 0
    header = f"{'backend':<18}{'n':>8}{'errors':>8}{'accuracy (95% CI, n)':>28}{'macro-F1':>10}"
    header += f"{'p50 ms':>10}{'p95 ms':>10}{'spent':>12}{'per 1k':>12}{'per month':>14}"
    ctx.say(header)
    for s in stats:
        ctx.say(
            f"{s.backend:<18}{s.n:>8}{s.errors:>8}{_accuracy(s):>28}"
            f"{_fmt(s.macro_f1, '{:.3f}'):>10}{_fmt(s.latency_ms['p50'], '{:.1f}'):>10}"
            f"{_fmt(s.latency_ms['p95'], '{:.1f}'):>10}{money.usd(s.cost_usd):>12}"
            f"{money.usd(s.cost_per_1k_usd):>12}{money.usd(s.projected_monthly_usd):>14}",
        )
    ctx.say(f"(monthly projection at {ctx.settings.routing.daily_volume:,} tickets/day)")
    learnt = [
        f"{name} {found['limit']} of {found.get('max', '?')}"
        for name, found in limits.items()
        if found
    ]
    if learnt:
        ctx.say("calls at once, as the last run learnt: " + ", ".join(learnt))
    for c in shadows:
        ctx.say(shadow_line(c))
    left_out = [f"{s.backend} {s.excluded_trained:,}" for s in stats if s.excluded_trained]
    if left_out:
        ctx.say(
            "(accuracy leaves out the labels the answering model trained on: "
            + ", ".join(left_out)
            + ")"
        )
    return 0


def shadow_line(c: ShadowComparison) -> str:
    """One shadow against the active backend, on the tickets both answered."""
    from tui.services.shadow_compare import interval_text

    s, a = c.shadow, c.active
    return (
        f"shadow {s.backend} vs {a.backend}: {c.compared} both answered, agreement"
        f" {_fmt(c.agreement, '{:.1%}')}; accuracy {interval_text(s.accuracy)} vs"
        f" {interval_text(a.accuracy)}; p50 {_fmt(s.p50_ms, '{:.1f}')} vs"
        f" {_fmt(a.p50_ms, '{:.1f}')} ms; $/1k {_fmt(s.cost_per_1k_usd, '{:.4f}')} vs"
        f" {_fmt(a.cost_per_1k_usd, '{:.4f}')}; {c.counts.skipped} skipped,"
        f" {c.counts.errors} failed"
    )


@click.command(name="stats", cls=Command, help="per-backend decisions, accuracy, latency and cost")
@flag("--json", "as_json")
@headless
def stats(ctx: Context, *, as_json: bool) -> int:
    return print_stats(ctx, as_json=as_json)


def _price(config: Any) -> str:
    if config.gpu_usd_per_hour is not None:
        return money.rate(config.gpu_usd_per_hour, "GPU-h")
    if config.input_usd_per_mtok is not None or config.output_usd_per_mtok is not None:
        inp, out = config.input_usd_per_mtok or 0, config.output_usd_per_mtok or 0
        return f"{money.price(inp)}/{money.price(out)} per Mtok"
    if config.type == "specialist":
        from tui.core.config import DEFAULT_CPU_USD_PER_HOUR

        return money.rate(config.cpu_usd_per_hour or DEFAULT_CPU_USD_PER_HOUR, "vCPU-h")
    return "-"


@click.command(name="backends", cls=Command, help="list the configured backends")
@flag("--check", help="check that each one answers")
@flag("--json", "as_json")
@headless
def list_backends(ctx: Context, *, check: bool, as_json: bool) -> int:
    from backends.secrets import api_key, redact

    if check:
        from tui.services.backend_checks import check_backends

        entries = asyncio.run(check_backends(ctx.settings))
    else:
        entries = [
            {"name": n, "type": c.type, "model": c.model_name, "ok": None, "detail": _price(c)}
            for n, c in ctx.settings.backends.items()
        ]
    secrets = [api_key(c) for c in ctx.settings.backends.values()]
    for entry in entries:
        entry["detail"] = redact(str(entry["detail"]), *secrets)
    if as_json:
        ctx.say(json.dumps(entries, indent=2))
        return 0
    active = ctx.settings.routing.backend
    for e in entries:
        mark = "*" if e["name"] == active else " "
        status = "" if e["ok"] is None else ("ok   " if e["ok"] else "FAIL ")
        ctx.say(f"{mark} {e['name']:<18}{e['type']:<16}{e['model']:<28}{status}{e['detail']}")
    return 0
