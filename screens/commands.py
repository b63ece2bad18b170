"""One table of commands: it yields the key bindings, the footer and the command palette.

Keeping keys and palette entries in one place means they cannot drift apart. Dynamic
entries (each configured backend, each inbox filter, promoting a shadow backend when shadows
are configured) come from `InboxCommands`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

from screens.format import highlight_plain

if TYPE_CHECKING:
    from textual.screen import Screen

    from tui.services.desk import Desk


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One user command: its binding id, key, action and palette text."""

    id: str
    key: str
    action: str
    title: str
    help: str
    show: bool = True
    key_display: str | None = None


INBOX_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("ticket.route", "r", "route_ticket", "Route", "Route the selected ticket"),
    CommandSpec(
        "inbox.route-unrouted",
        "R",
        "route_unrouted",
        "Route all",
        "Route every unrouted ticket with the active backend (hot swap applies mid-run)",
        key_display="R",
    ),
    CommandSpec("backend.pick", "b", "pick_backend", "Backend", "Pick the backend (hot swap)"),
    CommandSpec("ticket.compare", "c", "compare", "Compare", "Run the ticket on every backend"),
    CommandSpec("label.accept", "enter", "accept_label", "Accept", "Accept the predicted label"),
    CommandSpec("label.correct", "l", "correct_label", "Label", "Pick the right label (fuzzy)"),
    CommandSpec("label.undo", "u", "undo_label", "Undo", "Undo your last label"),
    CommandSpec("inbox.filter", "f", "pick_filter", "Filter", "Filter the inbox"),
    CommandSpec("inbox.next", "n", "next_attention", "Next", "Next ticket that needs attention"),
    CommandSpec(
        "ticket.claim-next",
        "N",
        "claim_next",
        "Claim next",
        "Take the oldest unlabelled ticket no other agent holds (team mode) and open it",
        show=False,
        key_display="N",
    ),
    CommandSpec(
        "routing.auto", "a", "toggle_auto_route", "Auto-route", "Route new tickets as they arrive"
    ),
    CommandSpec("stats.show", "s", "show_stats", "Stats", "Statistics, costs and break-even"),
    CommandSpec(
        "specialist.retrain",
        "t",
        "retrain_specialist",
        "Retrain",
        "Retrain the specialist on the agents' labels and hot-swap it in",
        show=False,
    ),
    CommandSpec(
        "model.finetune",
        "F",
        "finetune",
        "Fine-tune an open model…",
        "Fine-tune a local model on the agents' labels in the background, then offer it",
        show=False,
    ),
    CommandSpec(
        "inbox.retry-errors",
        "E",
        "retry_errors",
        "Retry errors",
        "Route every ticket whose last attempt failed again",
        show=False,
    ),
)
"""Commands of the inbox, in footer order."""


def bindings(specs: tuple[CommandSpec, ...]) -> list[BindingType]:
    """Bindings with stable ids (remappable through `App.set_keymap`)."""
    return [
        Binding(
            spec.key,
            spec.action,
            spec.title,
            show=spec.show,
            key_display=spec.key_display,
            tooltip=spec.help,
            id=spec.id,
        )
        for spec in specs
    ]


def palette_entries(
    screen: Screen[Any], specs: tuple[CommandSpec, ...]
) -> Iterator[tuple[str, str, Callable[[], object]]]:
    """(title, help, callback) of each command, running the action on `screen`."""
    for spec in specs:
        key = spec.key_display or spec.key
        yield f"{spec.title} ({key})", spec.help, partial(screen.run_action, spec.action)


FILTER_TITLES: dict[str, str] = {
    "all": "All tickets",
    "unlabelled": "Unlabelled",
    "low_confidence": "Low confidence first",
    "disagreement": "Backends disagree",
    "errors": "Errors",
    "unrouted": "Unrouted",
}


class InboxCommands(Provider):
    """Palette entries that depend on the config: one per backend and one per filter."""

    def _entries(self) -> list[tuple[str, str, Callable[[], object]]]:
        screen = self.screen
        names = getattr(screen, "backend_names", ())
        if not names:
            return []
        out: list[tuple[str, str, Callable[[], object]]] = []
        for name in names:
            out.append(
                (
                    f"Use backend: {name}",
                    "Hot swap: the next ticket goes to this backend",
                    partial(screen.run_action, f"use_backend({name!r})"),
                )
            )
        desk = getattr(screen, "desk", None)
        if desk is not None and desk.router.shadows.names:
            out.append(
                (
                    "Promote a shadow backend…",
                    "Make a shadow the active backend, with the evidence recorded",
                    partial(self._promote, screen, desk),
                )
            )
        if getattr(getattr(screen, "finetune", None), "running", False):
            out.append(
                (
                    "Cancel the fine-tune",
                    "Stop the running fine-tune; nothing it wrote is kept",
                    partial(screen.run_action, "cancel_finetune"),
                )
            )
        for key, title in FILTER_TITLES.items():
            out.append(
                (
                    f"Filter: {title}",
                    "Show only these tickets",
                    partial(screen.run_action, f"set_filter({key!r})"),
                )
            )
        return out

    @staticmethod
    def _promote(screen: Screen[Any], desk: Desk) -> None:
        from screens.promote_shadow import PromoteShadowModal

        agent = getattr(screen, "agent", "agent")
        screen.app.push_screen(PromoteShadowModal(desk, agent))

    async def discover(self) -> Hits:
        for title, help_text, callback in self._entries():
            yield DiscoveryHit(Content(title), callback, text=title, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score, highlight_plain(matcher, title), callback, text=title, help=help_text
                )
