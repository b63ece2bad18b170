"""A minimal OpenAI-compatible server for benchmarks: answers every chat completion at once.

Raw asyncio protocol with keep-alive and canned bytes, so that the server is not what is
measured: its ceiling is measured with a bare httpx loop and every client is reported as a
fraction of it. Streaming answers are chunked SSE with a final usage chunk, like OpenAI's.
Run: python -m benchmarks.fast_openai_server PORT [DELAY_MS]
"""

from __future__ import annotations

import asyncio
import json
import sys

ANSWER = '{"label": "billing", "confidence": 0.93}'
USAGE = {"prompt_tokens": 412, "completion_tokens": 14, "total_tokens": 426}

_plain = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": USAGE,
    }
).encode()
PLAIN = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(_plain)).encode()
    + b"\r\n\r\n"
    + _plain
)


def _chunk(obj: object) -> bytes:
    data = b"data: " + json.dumps(obj).encode() + b"\n\n"
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _delta(content: str | None, finish: str | None = None) -> dict[str, object]:
    delta = {"content": content} if content is not None else {}
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


_pieces = ['{"label": "', "billing", '", "confidence": ', "0.93", "}"]
STREAM = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    + b"".join(_chunk(_delta(p)) for p in _pieces)
    + _chunk(_delta(None, "stop"))
    + _chunk(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "bench-model",
            "choices": [],
            "usage": USAGE,
        }
    )
    + (lambda d: f"{len(d):x}\r\n".encode() + d + b"\r\n")(b"data: [DONE]\n\n")
    + b"0\r\n\r\n"
)
MODELS = json.dumps({"object": "list", "data": [{"id": "bench-model", "object": "model"}]})
MODELS_REPLY = (
    f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(MODELS)}\r\n\r\n"
    f"{MODELS}"
).encode()


class Handler(asyncio.Protocol):
    """Parses just enough HTTP/1.1 (headers + Content-Length body) to answer pipelined requests."""

    delay_s = 0.0
    """Answer this long after each request arrives (the TUI benchmark keeps tickets in flight)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            marker = head.find(b"content-length:")
            if marker >= 0:
                line_end = head.find(b"\r\n", marker)
                length = int(head[marker + 15 : line_end if line_end > 0 else None])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = self.buffer[end + 4 : total]
            self.buffer = self.buffer[total:]
            assert self.transport is not None
            if head.startswith(b"get"):
                reply = MODELS_REPLY
            elif b'"stream":true' in body.replace(b" ", b""):
                reply = STREAM
            else:
                reply = PLAIN
            if self.delay_s:
                asyncio.get_running_loop().call_later(self.delay_s, self._send, reply)
            else:
                self.transport.write(reply)

    def _send(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Handler, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) > 2:
        Handler.delay_s = float(sys.argv[2]) / 1000
    asyncio.run(serve(int(sys.argv[1])))
