"""Text from files and servers made safe to put in an error message, a report or a toast.

Error texts travel to terminals, report files and the TUI, and the content they quote comes
from whoever wrote the file. Two rules keep that harmless: every quoted piece is a short
excerpt (a header row or a `/proc` file is never echoed whole), and control characters are
escaped, so a newline cannot forge extra report lines and an escape sequence cannot drive the
terminal. Markup is not this module's business: the UI renders all such text as plain text.
"""

from __future__ import annotations

EXCERPT_CHARS = 40
"""Longest piece of a file's content that an error message quotes."""
LINE_CHARS = 300
"""Longest error line (a row's reason, a report line) before it is cut."""
_ELLIPSIS = "…"


def _escape(char: str) -> str:
    """A non-printable character as its Python escape (`\\n`, `\\x1b`, `\\u202e`)."""
    return repr(char)[1:-1]


def printable(text: str, limit: int = LINE_CHARS) -> str:
    """`text` with every non-printable character escaped, cut to about `limit` characters.

    "Non-printable" is Python's `str.isprintable` (controls, format characters such as the
    bidi overrides, lone surrogates, line and paragraph separators) except the plain space.
    """
    if text.isprintable() and len(text) <= limit:
        return text
    out: list[str] = []
    size = 0
    for char in text:
        piece = char if char.isprintable() else _escape(char)
        if size + len(piece) > limit:
            out.append(_ELLIPSIS)
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A quoted excerpt of file content for an error message: at most `limit` characters of
    it, control characters escaped, with `…` after the quote when it was cut."""
    text = value if isinstance(value, str) else str(value)
    shown = repr(text[:limit])
    return shown + _ELLIPSIS if len(text) > limit else shown
