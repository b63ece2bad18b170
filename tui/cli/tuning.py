"""How `tune-cascade` prints its result: the JSON object, or the table with the pick marked."""

from __future__ import annotations

import json
from pathlib import Path

from tui.cli.context import Context
from tui.core import money
from tui.core.cascade_tuning import TuningResult, table_rows


def print_tuning(
    ctx: Context,
    first: str,
    then: str,
    result: TuningResult,
    errors: dict[str, int],
    written: Path | None,
    *,
    as_json: bool,
) -> None:
    if as_json:
        payload = {"first": first, "then": then, "errors": errors, **result.to_dict()}
        payload["written"] = None if written is None else str(written)
        ctx.say(json.dumps(payload, indent=2))
        return
    ctx.say(
        f"cascade {first} -> {then} on {result.n} labelled tickets"
        f" ({errors['first']} / {errors['then']} errors)"
    )
    for name, row in ((first, result.first_only), (then, result.then_only)):
        cost = row.cost_per_1k_usd
        ctx.say(f"  {name} alone: accuracy {row.accuracy:.1%}, {money.per_1k_amount(cost)}")
    ctx.say(f"{'threshold':>10}{'accuracy':>10}{'per 1k':>12}{'escalated':>11}")
    for row in table_rows(result):
        mark = "  <- pick" if row == result.pick else ""
        ctx.say(
            f"{row.threshold:>10.2f}{row.accuracy:>10.1%}{money.usd(row.cost_per_1k_usd):>12}"
            f"{row.escalated:>11.1%}{mark}"
        )
    pick = result.pick
    summary = (
        f"threshold {pick.threshold:.2f}: accuracy {pick.accuracy:.1%},"
        f" {money.usd(pick.cost_per_1k_usd)} per 1k tickets, {pick.escalated:.0%} escalated"
    )
    if result.reached:
        ctx.say(f"pick: {summary} (cheapest reaching {result.target:.1%})")
    else:
        ctx.say(f"no threshold reaches {result.target:.1%}; most accurate: {summary}")
    if written is not None:
        ctx.say(f"wrote threshold {pick.threshold:.2f} to [backends.cascade] in {written}")
