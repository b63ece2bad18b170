"""Pick the right label by typing a few letters: fuzzy search over names (and descriptions),
so a taxonomy of 77 labels is as quick as one of 8."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.fuzzy import Matcher
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from screens.format import highlight_plain


def ranked(query: str, choices: tuple[tuple[str, str], ...]) -> list[tuple[str, str, Content]]:
    """Choices matching `query`, best first; a name match beats a description match."""
    if not query.strip():
        return [(name, desc, Content(name)) for name, desc in choices]
    matcher = Matcher(query)
    scored: list[tuple[float, str, str, Content]] = []
    for name, desc in choices:
        score = matcher.match(name)
        prompt = highlight_plain(matcher, name) if score else Content(name)
        if not score and desc:
            score = matcher.match(desc) * 0.5
        if score > 0:
            scored.append((score, name, desc, prompt))
    scored.sort(key=lambda item: -item[0])
    return [(name, desc, prompt) for _, name, desc, prompt in scored]


def clip(text: str, width: int) -> str:
    """One line of at most `width` characters, so each label stays on one row."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


class LabelPickerModal(ModalScreen[str | None]):
    """Type to filter, up/down to move, enter to pick, escape to cancel."""

    BINDINGS = [
        Binding("escape", "dismiss_none", "Cancel", id="label-picker.cancel"),
        Binding("down", "move(1)", "Down", show=False, id="label-picker.down"),
        Binding("up", "move(-1)", "Up", show=False, id="label-picker.up"),
    ]

    def __init__(
        self, choices: tuple[tuple[str, str], ...], current: str | None, subject: str = ""
    ) -> None:
        super().__init__()
        self.choices = choices
        self.current = current
        self.subject = subject

    def compose(self) -> ComposeResult:
        with Vertical(id="label-dialog"):
            yield Label(
                Content.assemble("Label for ", (self.subject[:60], "bold")), id="label-title"
            )
            yield Input(placeholder=f"Type to search {len(self.choices)} labels", id="label-query")
            yield OptionList(id="label-options")

    def on_mount(self) -> None:
        self._show("")
        options = self.query_one(OptionList)
        if self.current is not None:
            for index, (name, _) in enumerate(self.choices):
                if name == self.current:
                    options.highlighted = index
        self.query_one(Input).focus()

    def _show(self, query: str) -> None:
        options = self.query_one(OptionList)
        options.set_options(
            Option(
                Content.assemble(prompt, ("  " + clip(desc, 72 - len(name)), "$text-muted")),
                id=name,
            )
            for name, desc, prompt in ranked(query, self.choices)
        )
        if options.option_count:
            options.highlighted = 0

    @on(Input.Changed, "#label-query")
    def search(self, event: Input.Changed) -> None:
        self._show(event.value)

    @on(Input.Submitted, "#label-query")
    def pick_highlighted(self) -> None:
        option = self.query_one(OptionList).highlighted_option
        if option is not None:
            self.dismiss(option.id)

    @on(OptionList.OptionSelected, "#label-options")
    def pick_clicked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_move(self, step: int) -> None:
        options = self.query_one(OptionList)
        if options.option_count:
            current = options.highlighted if options.highlighted is not None else -1
            options.highlighted = max(0, min(options.option_count - 1, current + step))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
