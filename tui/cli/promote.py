"""`triagedesk promote NAME`: make a shadow backend the active one, recording the evidence."""

from __future__ import annotations

import json

import click

from tui.cli.context import BadInput, Context, headless
from tui.cli.usage import Command, flag, value_option


@click.command(
    name="promote", cls=Command, help="make a shadow backend the active one, recording the evidence"
)
@click.argument("name", metavar="name")
@value_option("--agent", default="cli", help="who promotes (recorded)")
@flag("--force", help="promote without evidence (no agent-labelled ticket both answered)")
@flag("--json", "as_json", help="print the recorded promotion and its evidence")
@headless
def promote(ctx: Context, *, name: str, agent: str, force: bool, as_json: bool) -> int:
    from tui.services.promotion import PromotionRefused
    from tui.services.promotion import promote as make_active

    with ctx.store() as store:
        try:
            done = make_active(store, ctx.settings, name, agent=agent, force=force)
        except PromotionRefused as exc:
            raise BadInput(str(exc)) from None
    if as_json:
        ctx.say(json.dumps(done.to_json(), indent=2))
        return 0
    evidence = done.event.evidence
    accuracy = evidence["accuracy"]
    shown = ", ".join(done.shadows) or "none"

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    ctx.say(
        f"promoted {name} (was {done.event.previous_backend}) in {done.config_path};"
        f" accuracy {pct(accuracy['shadow']['value'])} vs {pct(accuracy['active']['value'])}"
        f" on {evidence['labelled']} labels, agreement {pct(evidence['agreement'])};"
        f" shadows now: {shown}"
    )
    return 0
