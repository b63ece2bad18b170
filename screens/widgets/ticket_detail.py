"""The detail pane: the whole ticket, its latest decision with every timing and cost, and the
label history. It renders what it is given; the screen loads it in a worker."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.widgets import Static

from screens import format as fmt
from tui.core.models import Decision, LabelEvent, Ticket
from tui.core.store import TicketLink


def _pair(name: str, value: str) -> Content:
    return Content.assemble((f"{name:<15}", "$text-muted"), value, "\n")


def ticket_content(ticket: Ticket, link: TicketLink | None = None) -> Content:
    head = [
        Content.assemble((ticket.subject or "(no subject)", "bold"), "\n"),
        _pair("ticket", ticket.id),
        _pair("received", fmt.when(ticket.received_at)),
    ]
    if link is not None:
        head.append(_pair("helpdesk", link.line()))
    if ticket.customer:
        head.append(_pair("customer", ticket.customer))
    if ticket.channel:
        head.append(_pair("channel", ticket.channel))
    body = ticket.text
    if ticket.subject and body.startswith(ticket.subject + "\n"):
        body = body[len(ticket.subject) :].lstrip("\n")
    return Content("").join([*head, Content("\n"), Content(body)])


def decision_content(decisions: Sequence[Decision], reference: str | None) -> Content:
    """The latest decision in full, then one line per earlier attempt."""
    if not decisions:
        return Content.assemble(("not routed yet", "$text-muted"), " — press r to route it")
    d = decisions[-1]
    parts: list[Content] = []
    if d.ok:
        parts.append(Content.assemble(("label          ", "$text-muted"), (d.label or "", "bold")))
        parts.append(Content("\n"))
        source = d.confidence_source or "none"
        parts.append(_pair("confidence", f"{fmt.confidence(d.confidence)} ({source})"))
        if d.reason:
            parts.append(_pair("reason", d.reason))
    else:
        parts.append(
            Content.assemble(
                ("error          ", "$text-muted"), (d.error_class or "", "bold $error"), "\n"
            )
        )
        parts.append(_pair("message", (d.error_message or "")[:300]))
        parts.append(Content.assemble(("               r retries it\n", "$text-muted")))
    parts += [
        _pair("backend", f"{d.backend} ({d.backend_type}) · {d.model or '–'}"),
        _pair("prompt", d.prompt_version or "–"),
        _pair("client", f"ttft {fmt.ms(d.ttft_ms)} ms · total {fmt.ms(d.total_ms)} ms"),
    ]
    if any(v is not None for v in (d.server_load_ms, d.server_prompt_ms, d.server_gen_ms)):
        parts.append(
            _pair(
                "server",
                f"load {fmt.ms(d.server_load_ms)} · prompt {fmt.ms(d.server_prompt_ms)}"
                f" · gen {fmt.ms(d.server_gen_ms)} ms",
            )
        )
    parts.append(_pair("tokens in/out", fmt.tokens(d.input_tokens, d.output_tokens)))
    parts.append(_pair("cost", f"{fmt.per_1k(d.cost_usd)} ({fmt.usd(d.cost_usd)} this ticket)"))
    counterfactual = f"{fmt.per_1k(d.counterfactual_cost_usd)} on {reference or 'the reference'}"
    if d.tokens_estimated:
        counterfactual += " (tokens estimated)"
    parts.append(_pair("counterfactual", counterfactual))
    if len(decisions) > 1:
        parts.append(Content.assemble(("\nearlier attempts\n", "bold $text-muted")))
        for old in reversed(decisions[-6:-1]):
            answer = old.label if old.ok else f"⚠ {old.error_class}"
            parts.append(
                Content(f"  {old.backend:<12} {answer:<16} {fmt.confidence(old.confidence)}\n")
            )
    return Content("").join(parts)


def history_content(history: Sequence[LabelEvent]) -> Content:
    if not history:
        return Content.assemble(
            ("\nlabel history  ", "bold $text-muted"), ("none\n", "$text-muted")
        )
    parts = [Content.assemble(("\nlabel history\n", "bold $text-muted"))]
    for event in history[-8:]:
        label = event.label or "(unlabelled)"
        parts.append(
            Content(
                f"  {fmt.when(event.created_at)}  {event.source:<7} {label:<16} {event.agent}\n"
            )
        )
    return Content("").join(parts)


class TicketDetail(Horizontal):
    """Two columns under the table: the ticket, and what was decided about it."""

    def __init__(self, reference: str | None = None, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.reference = reference

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-ticket"):
            yield Static(id="detail-ticket-text")
        with VerticalScroll(id="detail-decision"):
            yield Static(id="detail-decision-text")

    def show(
        self,
        ticket: Ticket,
        decisions: Sequence[Decision],
        history: Sequence[LabelEvent],
        link: TicketLink | None = None,
    ) -> None:
        self.query_one("#detail-ticket-text", Static).update(ticket_content(ticket, link))
        decision = decision_content(decisions, self.reference)
        self.query_one("#detail-decision-text", Static).update(
            Content("").join([decision, history_content(history)])
        )

    def clear(self) -> None:
        self.query_one("#detail-ticket-text", Static).update(
            Content.styled("No ticket here. Import some, or change the filter (f).", "$text-muted")
        )
        self.query_one("#detail-decision-text", Static).update("")
