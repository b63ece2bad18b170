"""`backends.fast_json` gives `json`'s value or `json`'s exception, whatever the input."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from backends import fast_json

HOSTILE = [
    b'{"usage": {"prompt_tokens": NaN}}',
    b"Infinity",
    b"-Infinity",
    b"1e400",
    b'{"n": 123456789012345678901}',
    b'{"n": -9223372036854775809}',
    b'{"n": 18446744073709551615}',
    b'"\\ud800"',
    '{"a": "\ud800"}',
    b"\xef\xbb\xbf{}",
    '{"x": 1}'.encode("utf-16"),
    b"[" * 5000 + b"]" * 5000,
    b'{"a":1,"a":2}',
    b"\xff\xfe",
    b'{"text": "caf\xc3\xa9 \xe2\x80\xa8"}',
    b'{"text": "\xc3"}',
    b"",
    b"   ",
    b"[1,]",
    b'{"a": 1} trailing',
    b"-0.0",
    b"1" * 5000,
    b'{"id": "order 1234567890123456789 in a string"}',
    b'"\\u0000\\u001f\\n"',
]


def _outcome(call: Any, data: Any) -> Any:
    try:
        value = call(data)
    except (ValueError, RecursionError, TypeError) as exc:
        return ("raised", type(exc), str(exc))
    return ("value", _canonical(value))


def _canonical(value: Any) -> Any:
    """A value comparable with ==, NaN included, and types kept (1 is not 1.0)."""
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value.hex())
    if isinstance(value, dict):
        return ("dict", [(k, _canonical(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_canonical(v) for v in value])
    return (type(value).__name__, value)


@pytest.mark.parametrize("data", HOSTILE)
def test_loads_matches_json_on_hostile_input(data: bytes | str) -> None:
    assert _outcome(fast_json.loads, data) == _outcome(json.loads, data)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**31, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, 10**30])
    if kind == 2:
        return rng.choice([0.0, -0.0, 0.93, 1e-5, 1e16, 2.5e-300, 1 / 3, 123456.789])
    if kind in (3, 4):
        alphabet = 'ab"\\/\n\t\r\b\f\x00\x1f\x7f é€😀\u2028\u2029'
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
    if kind in (5, 6):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{i}": _random_value(rng, depth + 1) for i in range(rng.randrange(4))}


def test_loads_matches_json_on_generated_documents() -> None:
    rng = random.Random(17)
    for _ in range(3000):
        text = json.dumps(_random_value(rng), ensure_ascii=rng.random() < 0.5)
        data: bytes | str = text.encode() if rng.random() < 0.7 else text
        assert _outcome(fast_json.loads, data) == _outcome(json.loads, data), text


def _httpx_body(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def test_dumps_body_writes_the_same_json_as_httpx() -> None:
    """Same text for everything but how a float's exponent is spelled; the same value always."""
    rng = random.Random(29)
    for _ in range(3000):
        body = {"messages": [{"role": "user", "content": _random_value(rng)}], "n": 1}
        ours, theirs = fast_json.dumps_body(body), _httpx_body(body)
        assert _canonical(json.loads(ours)) == _canonical(json.loads(theirs))
        if not _has_exponent(body):
            assert ours == theirs


def _has_exponent(value: Any) -> bool:
    """Whether a float in `value` is written with an exponent (`1e-05`, orjson `1e-5`)."""
    if isinstance(value, float):
        return "e" in repr(value)
    if isinstance(value, dict):
        return any(_has_exponent(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_exponent(v) for v in value)
    return False


@pytest.mark.parametrize(
    "body",
    [
        {"temperature": math.nan},
        {"temperature": math.inf},
        {"text": "\ud800"},
        {1: "int key"},
        {"n": 2**70},
        {"t": (1, 2)},
        {"s": {1, 2}},
        {"b": b"bytes"},
    ],
)
def test_dumps_body_raises_or_writes_as_httpx_does(body: Any) -> None:
    assert _outcome(fast_json.dumps_body, body) == _outcome(_httpx_body, body)
