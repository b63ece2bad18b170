"""A loopback OpenAI-compatible Chat Completions server that plays a model, and can misbehave.

It speaks real HTTP/1.1 (chunked SSE for streams) on 127.0.0.1, so the backends are tested
through httpx exactly as in production. Each request takes the next scripted `Reply` from a
queue (the default reply when the queue is empty) and is recorded for assertions.

The generic parts (`LoopbackServer`, `Reply`, `Recorded`, `ScriptedHandler`) are reused by the
Anthropic server.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import struct
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import urlsplit

Fault = Literal["reset", "reset_before", "stall", "truncate", "huge", "empty_choices", "redirect"]

LLAMA_CPP_PYTHON_REJECTION = (
    "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n"
    "  Input should be 'text' or 'json_object' [type=literal_error, input_value='json_schema', "
    "input_type=str]"
)
"""What llama-cpp-python's server answers (HTTP 500) to `response_format: json_schema`."""

_UNSET: Any = object()


@dataclass
class Reply:
    """How the server answers one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    """Raw body of a non-200 reply; a JSON error object when None."""
    label: str | None = None
    """Label to answer; None uses the server's."""
    confidence: Any = _UNSET
    """Confidence to answer (may be NaN, inf, negative); unset uses the server's."""
    content: str | None = None
    """The whole answer text, replacing the JSON the server would build (e.g. invalid JSON)."""
    fault: Fault | None = None
    stall_s: float = 2.0
    """How long a `stall` fault keeps the connection silent."""


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _ResetDone(Exception):
    """The handler reset the connection; nothing more may be written."""


class ScriptedHandler(BaseHTTPRequestHandler):
    """Reads and records a request, then hands it to the owning `LoopbackServer`."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Keep pytest output clean."""

    def handle(self) -> None:
        with contextlib.suppress(_ResetDone, ConnectionError, OSError, ValueError):
            super().handle()

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        record = Recorded(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(record)
            reply = owner.replies.popleft() if owner.replies else Reply()
        owner.respond(self, record, reply)

    do_GET = _dispatch
    do_POST = _dispatch

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def send_text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def reset(self) -> None:
        """Abort the connection with a TCP RST, the way a crashed proxy does."""
        with contextlib.suppress(OSError):
            self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        raise _ResetDone

    def stall(self, seconds: float) -> None:
        """Go silent without closing, waking early when the server stops."""
        self.server.owner.stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LoopbackServer


class LoopbackServer:
    """A threaded HTTP/1.1 server on 127.0.0.1:<free port>; subclasses implement `respond`."""

    api_prefix = ""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), ScriptedHandler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        """Queue the behaviour of the next requests, in order."""
        with self.lock:
            self.replies.extend(replies)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def respond(self, handler: ScriptedHandler, request: Recorded, reply: Reply) -> None:
        raise NotImplementedError

    def send_error_reply(self, handler: ScriptedHandler, reply: Reply) -> None:
        """Non-200 replies: the scripted body, else a vendor-neutral JSON error."""
        if reply.fault == "redirect":
            handler.send_text(reply.status, "moved", reply.headers)
        elif reply.body is not None:
            handler.send_text(reply.status, reply.body, reply.headers)
        else:
            error = {"message": f"scripted status {reply.status}", "type": "scripted"}
            handler.send_json(reply.status, {"error": error}, reply.headers)


def split_tokens(text: str) -> list[str]:
    """Cut text into token-like pieces (≤4 word characters, punctuation runs, spaces)."""
    return re.findall(r"\w{1,4}|\s+|[^\w\s]+", text) or [text]


def label_span(text: str) -> tuple[int, int] | None:
    """Character range of the label's string value in an answer, found independently of the
    backend's own search."""
    key = text.find('"label"')
    if key < 0:
        return None
    start = text.find('"', text.find(":", key) + 1) + 1
    end = text.find('"', start)
    return (start, end) if 0 < start <= end else None


class OpenAIServer(LoopbackServer):
    """Plays `POST /v1/chat/completions` and `GET /v1/models`."""

    def __init__(self) -> None:
        super().__init__()
        self.label = "billing"
        self.confidence: Any = 0.9
        self.model = "test-model"
        self.models: list[str] | None = ["test-model"]
        """Ids for GET /models; None answers 404."""
        self.usage: tuple[int, int, int] | None = (120, 12, 0)
        """(prompt_tokens, completion_tokens, cached_tokens), or None to report no usage."""
        self.label_probability: float | None = None
        """When set and logprobs are asked for, the label's tokens carry this probability."""
        self.reject_json_schema = False
        """Answer `json_schema` requests like llama-cpp-python: HTTP 500."""
        self.reject_logprobs = False
        """Answer requests asking for logprobs with HTTP 400."""
        self.timings: dict[str, float] | None = None
        """llama.cpp server's `timings` object, added to replies when set."""

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def completions(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def respond(self, handler: ScriptedHandler, request: Recorded, reply: Reply) -> None:
        if request.method == "GET" and request.path.endswith("/models"):
            if self.models is None:
                handler.send_json(404, {"error": {"message": "not found"}})
            else:
                data = [{"id": m, "object": "model"} for m in self.models]
                handler.send_json(200, {"object": "list", "data": data})
            return
        if reply.fault == "reset_before":
            handler.reset()
        if reply.status != 200:
            self.send_error_reply(handler, reply)
            return
        body = request.body if isinstance(request.body, dict) else {}
        rejection = self._rejection(body)
        if rejection is not None:
            status, text = rejection
            handler.send_json(status, {"error": {"message": text, "type": "invalid_request_error"}})
            return
        content = self._content(reply)
        if reply.fault == "huge":
            content = '{"label": "' + "x" * 2_000_000 + '"}'
        if reply.fault == "huge":
            tokens = [content[i : i + 65536] for i in range(0, len(content), 65536)]
        else:
            tokens = split_tokens(content)
        wants_logprobs = body.get("logprobs") and reply.fault != "huge"
        logprobs = self._logprobs(content, tokens) if wants_logprobs else None
        if body.get("stream"):
            self._stream(handler, reply, body, tokens, logprobs)
        else:
            self._whole(handler, reply, content, logprobs)

    def _rejection(self, body: dict[str, Any]) -> tuple[int, str] | None:
        kind = (body.get("response_format") or {}).get("type")
        if self.reject_json_schema and kind == "json_schema":
            return 500, LLAMA_CPP_PYTHON_REJECTION
        if self.reject_logprobs and body.get("logprobs"):
            return 400, "logprobs is not supported by this server"
        return None

    def _content(self, reply: Reply) -> str:
        if reply.content is not None:
            return reply.content
        confidence = self.confidence if reply.confidence is _UNSET else reply.confidence
        return json.dumps({"label": reply.label or self.label, "confidence": confidence})

    def _logprobs(self, content: str, tokens: list[str]) -> list[dict[str, Any]] | None:
        if self.label_probability is None:
            return None
        span = label_span(content)
        position = 0
        inside: list[int] = []
        for index, token in enumerate(tokens):
            end = position + len(token)
            if span and end > span[0] and position < span[1]:
                inside.append(index)
            position = end
        share = math.log(self.label_probability) / max(len(inside), 1)
        return [
            {
                "token": token,
                "logprob": share if index in inside else 0.0,
                "bytes": list(token.encode()),
                "top_logprobs": [],
            }
            for index, token in enumerate(tokens)
        ]

    def _usage(self) -> dict[str, Any] | None:
        if self.usage is None:
            return None
        prompt, completion, cached = self.usage
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    def _whole(
        self,
        handler: ScriptedHandler,
        reply: Reply,
        content: str,
        logprobs: list[dict[str, Any]] | None,
    ) -> None:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "logprobs": {"content": logprobs} if logprobs else None,
            "finish_reason": "stop",
        }
        payload: dict[str, Any] = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": self.model,
            "choices": [] if reply.fault == "empty_choices" else [choice],
            "usage": self._usage(),
        }
        if self.timings:
            payload["timings"] = self.timings
        if reply.fault == "reset":
            data = json.dumps(payload).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data[: len(data) // 2])
            handler.reset()
        if reply.fault == "stall":
            handler.stall(reply.stall_s)
        handler.send_json(200, payload)

    def _stream(
        self,
        handler: ScriptedHandler,
        reply: Reply,
        body: dict[str, Any],
        tokens: list[str],
        logprobs: list[dict[str, Any]] | None,
    ) -> None:
        def event(payload: Any) -> bytes:
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": self.model}
            return {**base, "choices": choices, **extra}

        handler.start_stream()
        handler.write_chunk(b": keep-alive\n\n")
        if reply.fault != "empty_choices":
            first = {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "finish_reason": None,
            }
            handler.write_chunk(event(chunk([first])))
            for index, token in enumerate(tokens):
                choice: dict[str, Any] = {
                    "index": 0,
                    "delta": {"content": token},
                    "finish_reason": None,
                }
                if logprobs:
                    choice["logprobs"] = {"content": [logprobs[index]]}
                handler.write_chunk(event(chunk([choice])))
                if index == 1 and reply.fault == "reset":
                    handler.reset()
                if index == 1 and reply.fault == "stall":
                    handler.stall(reply.stall_s)
                if index == 2 and reply.fault == "truncate":
                    handler.end_stream()
                    return
            last = {"index": 0, "delta": {}, "finish_reason": "stop"}
            handler.write_chunk(event(chunk([last])))
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        extra: dict[str, Any] = {"timings": self.timings} if self.timings else {}
        if include_usage and self.usage is not None:
            handler.write_chunk(event(chunk([], usage=self._usage(), **extra)))
        handler.write_chunk(b"data: [DONE]\n\n")
        handler.end_stream()


@contextlib.contextmanager
def openai_server() -> Iterator[OpenAIServer]:
    """Run an `OpenAIServer` for the duration of the block."""
    server = OpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()
