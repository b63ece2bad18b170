"""Server-sent events: the backends' own parser against httpx-sse's, on the same replies.

Measurements only (issue 13 asked whether `httpx-sse` can replace `backends.http_common`'s
`iter_lines` + `iter_sse`). Each case builds an in-memory httpx reply and reads it through

- triagedesk: `iter_sse(iter_lines(response))`, the path every streaming backend takes;
- httpx-sse: `EventSource(response).aiter_sse()`, the library's whole public API (it reads
  `response.aiter_text()` itself; there is no public way to feed it capped lines).

and reports time per event on an ordinary stream, peak Python memory (tracemalloc) on two
hostile ones, and what each hands the backend on three streams real servers send.

    uv run --group bench python -m benchmarks.sse_parsing [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import EventSource

from backends.http_reading import iter_lines, iter_sse
from tui.core.backend import BadResponse

RESULTS = Path(__file__).parent / "results"
CHUNK = 16_384


class _Stream(httpx.AsyncByteStream):
    """The reply's bytes in network-sized pieces, as a socket delivers them."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece


def _chunks(data: bytes, size: int = CHUNK) -> Iterable[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def reply(
    pieces: Iterable[bytes], content_type: str = "text/event-stream", encoding: str = ""
) -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    if encoding:
        headers["content-encoding"] = encoding
    return httpx.Response(200, headers=headers, stream=_Stream(pieces))


async def ours(response: httpx.Response) -> list[tuple[str, str]]:
    return [(e.event, e.data) async for e in iter_sse(iter_lines(response))]


async def library(response: httpx.Response) -> list[tuple[str, str]]:
    return [(e.event, e.data) async for e in EventSource(response).aiter_sse()]


PARSERS: dict[str, Callable[[httpx.Response], Awaitable[list[tuple[str, str]]]]] = {
    "triagedesk": ours,
    "httpx-sse": library,
}


def token_stream(tokens: int) -> bytes:
    """An OpenAI-style completion: one chunk per token, then `[DONE]`."""
    lines = []
    for i in range(tokens):
        chunk = {"id": "c1", "choices": [{"index": 0, "delta": {"content": f"t{i}"}}]}
        lines.append(f"data: {json.dumps(chunk)}\n\n")
    lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


async def speed(tokens: int, rounds: int) -> dict[str, float]:
    body = token_stream(tokens)
    out = {}
    for name, parse in PARSERS.items():
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            events = await parse(reply(_chunks(body)))
            best = min(best, time.perf_counter() - started)
        assert len(events) == tokens + 1
        out[name] = best / (tokens + 1) * 1e6
    return out


async def peak(
    parse: Callable[[httpx.Response], Awaitable[Any]], make: Callable[[], httpx.Response]
) -> dict[str, Any]:
    """Peak traced memory while reading one reply, and how the read ended."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        events = await parse(make())
        ending = f"{len(events)} events"
    except BadResponse as exc:
        ending = f"BadResponse: {exc}"
    except Exception as exc:  # the library's own failure, whatever it is
        ending = f"{type(exc).__name__}: {str(exc)[:80]}"
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "peak_mib": round(top / 2**20, 1),
        "seconds": round(time.perf_counter() - started, 2),
        "ended": ending,
    }


def endless_line(mib: int) -> httpx.Response:
    """A `data:` line that never ends: a broken or hostile server."""
    piece = b"a" * CHUNK
    return reply([b"data: ", *(piece for _ in range(mib * 2**20 // CHUNK))])


def gzip_bomb(mib: int) -> Callable[[], httpx.Response]:
    """`mib` MiB of one event's data, gzip-compressed to a few hundred KB."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    body = squeeze.compress(b"data: ") + b"".join(
        squeeze.compress(b"a" * 2**20) for _ in range(mib)
    )
    body += squeeze.compress(b"\n\n") + squeeze.flush()
    return lambda: reply(_chunks(body), encoding="gzip")


QUIRKS: dict[str, tuple[bytes, str]] = {
    "stream cut after its last data line (no blank line)": (
        b'data: {"delta": "a"}\n\ndata: {"delta": "b"}\n',
        "text/event-stream",
    ),
    "an id, then blank keep-alive lines": (b"id: 7\ndata: x\n\n\n\n\n", "text/event-stream"),
    "events from a server that labels them text/plain": (
        b"data: x\n\ndata: y\n\n",
        "text/plain; charset=utf-8",
    ),
}


async def quirks() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for case, (body, content_type) in QUIRKS.items():
        found[case] = {}
        for name, parse in PARSERS.items():
            try:
                events = await parse(reply([body], content_type))
                found[case][name] = json.dumps([data for _, data in events])
            except Exception as exc:
                found[case][name] = f"{type(exc).__name__}: {str(exc)[:60]}"
    return found


async def main(quick: bool) -> dict[str, Any]:
    size = 16 if quick else 64
    results: dict[str, Any] = {
        "us_per_event_200_token_stream": await speed(200, 5 if quick else 30),
        "endless_line_mib": size,
        "gzip_bomb_mib": size,
        "endless_line": {},
        "gzip_bomb": {},
    }
    bomb = gzip_bomb(size)
    for name, parse in PARSERS.items():
        results["endless_line"][name] = await peak(parse, lambda: endless_line(size))
        results["gzip_bomb"][name] = await peak(parse, bomb)
    results["quirks"] = await quirks()
    return results


def markdown(r: dict[str, Any]) -> str:
    speed_row = r["us_per_event_200_token_stream"]
    lines = [
        "| | triagedesk (`iter_lines` + `iter_sse`) | httpx-sse (`EventSource.aiter_sse`) |",
        "|---|---|---|",
        f"| µs per event, 200-token stream | {speed_row['triagedesk']:.1f} | {speed_row['httpx-sse']:.1f} |",
    ]
    for case in ("endless_line", "gzip_bomb"):
        label = f"{case.replace('_', ' ')} ({r[case + '_mib']} MiB)"
        cells = [f"peak {v['peak_mib']} MiB, {v['ended']}" for v in r[case].values()]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    for case, seen in r["quirks"].items():
        lines.append(f"| {case} | {seen['triagedesk']} | {seen['httpx-sse']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 MiB hostile replies, 5 rounds")
    args = parser.parse_args()
    data = asyncio.run(main(args.quick))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sse_parsing.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "sse_parsing.md").write_text(markdown(data), encoding="utf-8")
    print(markdown(data))
