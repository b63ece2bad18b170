"""`triagedesk claim` and `triagedesk release`: agent leases from the command line (team mode),
for scripts and for agents who triage outside the TUI."""

from __future__ import annotations

import json

import click

from tui.cli.context import BadInput, Context, headless
from tui.cli.usage import Command, IdList, PositiveNumber, WholeNumber, flag, value_option


@click.command(name="claim", cls=Command, help="lease unlabelled tickets to an agent")
@value_option("--agent", help="who claims (default: [team] agent, else the OS user)")
@value_option("--n", "n", type=WholeNumber(1, 500), default=1, help="how many (default 1)")
@value_option("--lease-s", "lease_s", type=PositiveNumber(), help="lease in seconds")
@flag("--json", "as_json", help="print the claimed ids as a JSON list")
@headless
def claim(ctx: Context, *, agent: str | None, n: int, lease_s: float | None, as_json: bool) -> int:
    """The `n` oldest unlabelled tickets nobody holds become the agent's, until released,
    labelled or expired (`[team] lease_s`, default 120 s). Prints their ids."""
    from tui.core.claims import agent_name
    from tui.core.store import agent_owner

    who = agent_name(ctx.settings, agent)
    lease = ctx.settings.team.lease_s if lease_s is None else lease_s
    if not 1 <= lease <= 86_400:
        raise BadInput(f"--lease-s {lease:g}: must be from 1 to 86400 seconds")
    with ctx.store() as store:
        ids = store.claim_for_agent(who, agent_owner(who), lease_s=lease, n=n)
    if as_json:
        ctx.say(json.dumps(ids))
    else:
        for ticket_id in ids:
            ctx.say(ticket_id)
    return 0


@click.command(name="release", cls=Command, help="give back an agent's leased tickets")
@value_option("--agent", help="whose leases (default: [team] agent, else the OS user)")
@value_option("--ids", type=IdList(), help="only these ticket ids (comma-separated)")
@headless
def release(ctx: Context, *, agent: str | None, ids: list[str] | None) -> int:
    from tui.core.claims import agent_name

    who = agent_name(ctx.settings, agent)
    with ctx.store() as store:
        n = store.release_agent_claims(who, ids=ids)
    ctx.say(f"released {n} ticket{'s' if n != 1 else ''} held by {who}")
    return 0
