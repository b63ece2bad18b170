"""The demo inbox's words: templates, letter parts and vocabulary, read from the text files here.

The texts are data, not code, so a writer can add a template without touching Python and a
diff shows only the sentence that changed. Plain text beats TOML or JSON for this: nothing is
quoted or escaped, and one template is one paragraph. Every file follows the same few rules:

- `#` at the start of a line begins a comment;
- `[name]` on a line of its own starts a section (a department, or a list such as `greetings`);
- in `templates.txt` and `ambiguous.txt` a blank line separates two entries and the lines of
  one entry join with a space (` // ` starts a new paragraph); in every other file each line
  is one entry.

`config.toml` is the demo's commented config, kept whole (`demo_config_template()`).
The files are read on first use and cached, so `import tui.core.demo` reads nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TypeVar

T = TypeVar("T")

_SECTION = re.compile(r"^\[([a-z0-9_]+)\]$", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class DemoTexts:
    """Every pool of words the demo generator draws from, in file order (order is part of
    the seed: reordering a file changes which text a seed picks)."""

    templates: dict[str, tuple[str, ...]]
    """Full ticket bodies per department."""
    one_liners: dict[str, tuple[str, ...]]
    """Short, hurried tickets per department."""
    second_requests: dict[str, tuple[str, ...]]
    """Add-on sentences for requests that touch a second department."""
    subjects: dict[str, tuple[str, ...]]
    """E-mail subject lines per department."""
    generic_subjects: tuple[str, ...]
    """Subject lines that fit any department."""
    agent_replies: dict[str, tuple[str, ...]]
    """Earlier agent replies, quoted under the customer's answer, per department."""
    generic_agent_replies: tuple[str, ...]
    """Agent replies that fit any department."""
    ambiguous: tuple[tuple[dict[str, float], str], ...]
    """Tickets that truly belong to several departments: (label weights, text)."""
    greetings: tuple[str, ...]
    signoffs: tuple[str, ...]
    """Sign-offs; `|` marks a line break."""
    mobile_footers: tuple[str, ...]
    signature_roles: tuple[str, ...]
    filler: tuple[str, ...]
    """Rambling sentences that make a long letter long."""
    angry: tuple[str, ...]
    form_topics: tuple[str, ...]
    """Topics of the web contact form, shown as its subject."""
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    mail_domains: tuple[str, ...]
    products: tuple[str, ...]
    carriers: tuple[str, ...]
    cities: tuple[str, ...]
    countries: tuple[str, ...]
    colours: tuple[str, ...]
    sizes: tuple[str, ...]
    devices: tuple[str, ...]
    browsers: tuple[str, ...]
    promo_codes: tuple[str, ...]
    memberships: tuple[str, ...]
    agents: tuple[str, ...]
    companies: tuple[str, ...]
    streets: tuple[str, ...]


@cache
def demo_texts() -> DemoTexts:
    """Read and parse the text files once; later calls return the same object."""
    templates = _sections("templates.txt", _blocks)
    subjects = _sections("subjects.txt", _lines)
    replies = _sections("agent_replies.txt", _lines)
    letters = _sections("letters.txt", _lines)
    words = _sections("vocabulary.txt", _lines)
    return DemoTexts(
        templates=templates,
        one_liners=_sections("one_liners.txt", _lines),
        second_requests=_sections("second_requests.txt", _lines),
        generic_subjects=subjects.pop("any"),
        subjects=subjects,
        generic_agent_replies=replies.pop("any"),
        agent_replies=replies,
        ambiguous=_weighted(_read("ambiguous.txt")),
        greetings=letters["greetings"],
        signoffs=letters["signoffs"],
        mobile_footers=letters["mobile_footers"],
        signature_roles=letters["signature_roles"],
        filler=letters["filler"],
        angry=letters["angry"],
        form_topics=letters["form_topics"],
        first_names=words["first_names"],
        last_names=words["last_names"],
        mail_domains=words["mail_domains"],
        products=words["products"],
        carriers=words["carriers"],
        cities=words["cities"],
        countries=words["countries"],
        colours=words["colours"],
        sizes=words["sizes"],
        devices=words["devices"],
        browsers=words["browsers"],
        promo_codes=words["promo_codes"],
        memberships=words["memberships"],
        agents=words["agents"],
        companies=words["companies"],
        streets=words["streets"],
    )


@cache
def demo_config_template() -> str:
    """The demo's commented config, read verbatim: its `#` lines are the config's own comments.
    A `{labels}` line stands where `tui.core.demo` writes the taxonomy."""
    return _package_file("config.toml")


def _package_file(name: str) -> str:
    """One file of this package, found inside a wheel or a zip too."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _read(name: str) -> str:
    """One text file of this package without its comment lines."""
    text = _package_file(name)
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


def _sections(name: str, parse: Callable[[str], T]) -> dict[str, T]:
    """A file's `[name]` sections, in file order, each parsed by `parse`."""
    parts = _SECTION.split(_read(name))
    if parts[0].strip():
        raise ValueError(f"{name}: text before the first [section]")
    return {key: parse(body) for key, body in zip(parts[1::2], parts[2::2], strict=True)}


def _blocks(text: str) -> tuple[str, ...]:
    """Entries separated by blank lines; an entry's lines join with a space, ` // ` starts a
    new paragraph. Keeps hundreds of templates readable and under 100 columns."""
    out = []
    for block in _BLANK_LINES.split(text.strip()):
        joined = " ".join(line.strip() for line in block.strip().splitlines())
        out.append(joined.replace(" // ", "\n\n"))
    return tuple(out)


def _lines(text: str) -> tuple[str, ...]:
    """One entry per non-blank line, stripped."""
    return tuple(line.strip() for line in text.strip().splitlines() if line.strip())


def _weighted(text: str) -> tuple[tuple[dict[str, float], str], ...]:
    """Blocks whose first line is `label:weight ...` and whose rest is the text."""
    out = []
    for block in _BLANK_LINES.split(text.strip()):
        head, rest = block.strip().split("\n", 1)
        weights = {label: float(w) for label, w in (pair.split(":") for pair in head.split())}
        out.append((weights, " ".join(rest.split())))
    return tuple(out)
