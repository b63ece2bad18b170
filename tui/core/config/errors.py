"""How config problems are worded: the error type, quoted names, suggestions, dotted keys."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable


class ConfigError(Exception):
    """The config file is unreadable or invalid.

    The message names the file and the key; with several problems its first line says how
    many and each further line is one `file: key: problem`. `problems` holds those lines."""

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


def short(text: str, limit: int = 40) -> str:
    """A user-given name for an error line: quoted, escaped, cut to `limit` characters."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    return json.dumps(cut, ensure_ascii=True)


def suggest(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest candidate, or nothing."""
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_path(loc: Iterable[int | str]) -> str:
    """A TOML dotted key (`backends.gpt-4o-mini.timeout_s`, `labels.""`) for an error loc."""
    parts = []
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the dict key itself"
            continue
        text = str(part)
        parts.append(text if isinstance(part, int) or _BARE_KEY.fullmatch(text) else short(text))
    return ".".join(parts) or "(root)"
