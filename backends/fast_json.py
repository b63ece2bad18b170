"""JSON in and out of the HTTP backends at orjson's speed, with exactly `json`'s results.

A request body took `json.dumps` ~19 µs and every streamed event a `json.loads`, per ticket
(benchmarks/RESULTS.md §1 "Whole runs"); orjson does either in a fraction of that. Where the
two libraries disagree, `json` decides: orjson refuses what `json` reads (NaN, infinities,
lone surrogates, UTF-16, deep nesting) and writes what `json` refuses (NaN as null), and it
turns integers past 64 bits into floats; each such input goes to `json` itself, so what is
accepted, refused and raised is what it was.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_LONG_DIGITS = re.compile(rb"\d{19}")
"""A run of digits that may be an integer past orjson's 64 bits (which it reads as a float)."""
_LONG_DIGITS_TEXT = re.compile(r"\d{19}")
_PASS_THROUGH = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
"""Types `json.dumps` refuses or writes otherwise are not written by orjson either."""


def loads(data: bytes | str) -> Any:
    """`json.loads(data)`: the same value, or the same exception (ValueError, RecursionError).

    orjson reads it unless it refuses or the text holds 19 digits in a row (somewhere, maybe
    in a string: then `json` reads it, a little slower)."""
    pattern = _LONG_DIGITS if isinstance(data, bytes) else _LONG_DIGITS_TEXT
    if pattern.search(data) is None:  # type: ignore[arg-type]
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def dumps_body(body: Any) -> bytes:
    """The JSON request body httpx's `json=` writes (compact, UTF-8, NaN refused), or the
    exception it raises. Floats may be spelled shorter (`1e-5`, not `1e-05`): the same
    numbers."""
    try:
        encoded = orjson.dumps(body, option=_PASS_THROUGH)
    except (orjson.JSONEncodeError, TypeError):
        encoded = None
    if encoded is None or b"null" in encoded:  # orjson writes NaN as null; json refuses it
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8")
    return encoded
