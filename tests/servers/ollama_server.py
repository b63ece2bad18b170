"""A loopback HTTP server speaking Ollama's wire protocol, with scriptable faults.

It runs in a thread so the real `ollama.AsyncClient` talks to it over a real socket: the
tests exercise the client's own parsing and error raising, not a mock of it. Each request
takes the next scripted `Reply` (or the default one), and every request is recorded.

`LoopbackServer` and `Reply` are shared with the llama.cpp fake (`llamacpp_server.py`).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

STALL_LIMIT_S = 30.0
"""A stalled reply holds its connection at most this long (or until the server stops)."""


@dataclass(frozen=True)
class Reply:
    """One scripted behaviour for one request.

    `kind` is `answer` (the model writes `content`), `status` (HTTP error with `body`),
    `reset` (the connection is dropped with an RST), `stall` (accepted, never answered),
    `garbage` (a 200 whose body is not JSON) or `stream_error` (an error object mid-stream).
    """

    kind: str = "answer"
    content: str = ""
    status: int = 200
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    """Per-server knobs: timings, token counts, probabilities."""

    @classmethod
    def answer(cls, label: str, confidence: Any = 0.9, **extra: Any) -> Reply:
        """A model answer; `confidence` may be NaN or inf, written as JSON's NaN/Infinity."""
        return cls(content=json.dumps({"label": label, "confidence": confidence}), extra=extra)

    @classmethod
    def text(cls, content: str, **extra: Any) -> Reply:
        return cls(content=content, extra=extra)

    @classmethod
    def error(cls, status: int, message: str = "error", **headers: str) -> Reply:
        return cls(
            kind="status",
            status=status,
            body=json.dumps({"error": message}),
            headers=tuple((k.replace("_", "-"), v) for k, v in headers.items()),
        )

    @classmethod
    def reset(cls) -> Reply:
        return cls(kind="reset")

    @classmethod
    def stall(cls) -> Reply:
        return cls(kind="stall")

    @classmethod
    def garbage(cls) -> Reply:
        return cls(kind="garbage", body="<html>not json</html>")

    @classmethod
    def stream_error(cls, message: str) -> Reply:
        return cls(kind="stream_error", body=message)


@dataclass(frozen=True)
class Recorded:
    """A request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Resets and aborted clients are part of the tests; no tracebacks on stderr."""


class LoopbackServer:
    """Base of the fakes: a threaded HTTP/1.1 server on 127.0.0.1 with a reply queue.

    Subclasses implement `respond(handler, request, reply)` for their endpoints.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._queues: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def do_GET(self) -> None:  # noqa: N802
                owner._dispatch(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                owner._dispatch(self, "POST")

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def push(self, *replies: Reply, path: str = "") -> None:
        """Script the next replies for `path` (empty: the model endpoint)."""
        with self._lock:
            self._queues.setdefault(path, deque()).extend(replies)

    def next_reply(self, path: str) -> Reply | None:
        with self._lock:
            queue = self._queues.get(path)
            return queue.popleft() if queue else None

    def requests_to(self, path: str) -> list[Recorded]:
        return [request for request in self.requests if request.path == path]

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode(errors="replace")
        request = Recorded(method, handler.path, dict(handler.headers.items()), body)
        with self._lock:
            self.requests.append(request)
        self.respond(handler, request)

    def respond(self, handler: BaseHTTPRequestHandler, request: Recorded) -> None:
        raise NotImplementedError

    def fault(self, handler: BaseHTTPRequestHandler, reply: Reply) -> bool:
        """Play the transport-level faults; True when `reply` was one of them."""
        if reply.kind == "reset":
            handler.close_connection = True
            sock = handler.connection
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            return True
        if reply.kind == "stall":
            handler.close_connection = True
            self._closing.wait(STALL_LIMIT_S)
            return True
        if reply.kind == "status":
            send_json(handler, reply.status, reply.body, reply.headers)
            return True
        if reply.kind == "garbage":
            send_bytes(handler, 200, reply.body.encode(), "application/json")
            return True
        return False


def send_bytes(
    handler: BaseHTTPRequestHandler,
    status: int,
    data: bytes,
    content_type: str,
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    for key, value in headers:
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)


def send_json(
    handler: BaseHTTPRequestHandler,
    status: int,
    payload: Any,
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    send_bytes(handler, status, data.encode(), "application/json", headers)


def send_chunked(
    handler: BaseHTTPRequestHandler, content_type: str, pieces: Iterable[bytes]
) -> None:
    """A streamed 200 with chunked transfer encoding, one chunk per piece."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for piece in pieces:
        handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        handler.wfile.flush()
    handler.wfile.write(b"0\r\n\r\n")


def split_text(text: str, size: int = 4) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


DEFAULT_TIMINGS_NS = {
    "total_duration": 250_000_000,
    "load_duration": 12_345_678,
    "prompt_eval_count": 321,
    "prompt_eval_duration": 45_600_000,
    "eval_count": 17,
    "eval_duration": 98_765_432,
}
"""Server timings (nanoseconds, as Ollama sends them) and token counts of every answer."""


class OllamaServer(LoopbackServer):
    """Fake `ollama serve`: `/api/chat` (NDJSON stream or one object), `/api/tags`."""

    def __init__(self, models: Iterable[str] = ("llama3.1:8b",)) -> None:
        super().__init__()
        self.models = list(models)
        self.default = Reply.answer("billing", 0.9)

    def chat_requests(self) -> list[Recorded]:
        return self.requests_to("/api/chat")

    def respond(self, handler: BaseHTTPRequestHandler, request: Recorded) -> None:
        if request.path == "/api/tags":
            reply = self.next_reply("/api/tags")
            if reply is not None and self.fault(handler, reply):
                return
            send_json(handler, 200, {"models": [self._tag(name) for name in self.models]})
            return
        if request.path != "/api/chat" or request.method != "POST":
            send_json(handler, 404, {"error": "404 page not found"})
            return
        body = request.body if isinstance(request.body, dict) else {}
        model = str(body.get("model", ""))
        if model not in self.models:
            send_json(handler, 404, {"error": f"model '{model}' not found"})
            return
        reply = self.next_reply("") or self.default
        if self.fault(handler, reply):
            return
        stats = {**DEFAULT_TIMINGS_NS, **reply.extra}
        stamp = "2024-07-23T12:00:00.000000Z"
        if not body.get("stream", True):
            final = {
                "model": model,
                "created_at": stamp,
                "message": {"role": "assistant", "content": reply.content},
                "done": True,
                "done_reason": "stop",
                **stats,
            }
            send_json(handler, 200, final)
            return

        def lines() -> Iterator[bytes]:
            for piece in split_text(reply.content):
                part = {
                    "model": model,
                    "created_at": stamp,
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
                yield json.dumps(part).encode() + b"\n"
            if reply.kind == "stream_error":
                yield json.dumps({"error": reply.body}).encode() + b"\n"
                return
            final = {
                "model": model,
                "created_at": stamp,
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                **stats,
            }
            yield json.dumps(final).encode() + b"\n"

        send_chunked(handler, "application/x-ndjson", lines())

    @staticmethod
    def _tag(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": "2024-07-23T12:00:00Z",
            "size": 4_920_000_000,
            "digest": "a" * 64,
            "details": {"format": "gguf", "family": "llama", "parameter_size": "8.0B"},
        }
