"""Loopback wire-protocol servers that play one fault per ticket, for the reliability tests.

They subclass the servers in `tests/servers/` and add what those lack: a *plan* that decides
each request's behaviour from the ticket it carries (so retries and concurrency stay
deterministic), and the faults missing there (a read timeout before any header on a stream,
a reset, stall or clean cut in the middle of an NDJSON/SSE stream, a body that is not JSON,
an enormous reply, a reply trickled a byte at a time, a stream of keep-alives that never
ends). Tickets are recognised by a `[case-N]` tag in their text.

The endless faults (`trickle`, `keepalive_forever`) write until the client hangs up or the
server stops, so a client without a bound on the whole request waits for the test's guard.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import struct
import threading
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from tests.servers import ollama_server
from tests.servers.anthropic_server import AnthropicServer
from tests.servers.llamacpp_server import LlamaCppServer
from tests.servers.ollama_server import OllamaServer, send_chunked
from tests.servers.openai_server import OpenAIServer, Recorded, Reply, ScriptedHandler

FaultName = Literal[
    "ok",
    "connect_refused",
    "reset_before_reply",
    "reset_mid_reply",
    "read_timeout",
    "stalled_stream",
    "http_429",
    "http_429_retry_after",
    "http_500",
    "http_502",
    "http_503",
    "truncated_stream",
    "body_not_json",
    "answer_not_json",
    "unknown_label",
    "nan_confidence",
    "inf_confidence",
    "negative_confidence",
    "empty_choices",
    "enormous_reply",
    "trickle",
    "keepalive_forever",
    "html_body",
    "broken_chunked",
    "absurd_tokens",
    "negative_tokens",
    "absurd_timing",
]

RETRY_AFTER_S = 0.05
"""Retry-After the 429 fault sends; distinct from the tiny jittered backoff of the tests."""
STALL_S = 30.0
"""How long a stalled server stays silent (it wakes as soon as the server stops)."""
TRICKLE_S = 0.05
"""Pause between the bytes of a trickling reply or the events of an endless keep-alive: far
shorter than any read timeout, so only a bound on the whole request ends it."""
ENORMOUS_CHARS = 2_000_000
"""Twice the backends' 1 MB reply cap."""
NOT_JSON = "Sure! This ticket is clearly about billing."
GOOD_LABEL = "billing"

_CASE = re.compile(r"\[case-(\d+)\]")


def case_key(body: Any) -> str:
    """The `[case-N]` tag of the ticket a request carries ('' when it carries none)."""
    found = _CASE.search(json.dumps(body) if not isinstance(body, str) else body)
    return found.group(1) if found else ""


@dataclass
class Plan:
    """Which fault each request plays: the first `times` requests of every ticket get `fault`
    (all of them when `times` is None), later ones are answered normally."""

    fault: FaultName = "ok"
    times: int | None = None

    def __post_init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()

    def next_fault(self, body: Any) -> FaultName:
        key = case_key(body)
        with self.lock:
            count = self.seen[key]
            self.seen[key] += 1
        if self.times is None or count < self.times:
            return self.fault
        return "ok"


class CasePlan(Plan):
    """A fault for some tickets only, by `[case-N]` number; the others are answered well.

    Lets one ticket of a batch misbehave, to show it does not take the others with it.
    """

    def __init__(self, faults: dict[int, FaultName]) -> None:
        super().__init__()
        self.faults = {str(case): fault for case, fault in faults.items()}

    def next_fault(self, body: Any) -> FaultName:
        key = case_key(body)
        with self.lock:
            self.seen[key] += 1
        return self.faults.get(key, "ok")


def _reset(connection: socket.socket) -> None:
    """Abort a connection with a TCP RST, like a crashed proxy."""
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()


def endless(
    handler: BaseHTTPRequestHandler,
    piece: bytes,
    stopping: threading.Event,
    *,
    content_type: str,
    chunked: bool,
) -> None:
    """A 200 whose body never ends: `piece` every `TRICKLE_S` until the client hangs up or
    the server stops. Each write resets a per-read timeout; only a whole-request bound ends
    it. Without `chunked`, the body announces a Content-Length it never reaches."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    if chunked:
        handler.send_header("Transfer-Encoding", "chunked")
    else:
        handler.send_header("Content-Length", "1000000")
    handler.end_headers()
    handler.close_connection = True
    with contextlib.suppress(OSError, ValueError):
        handler.wfile.flush()
        while not stopping.wait(TRICKLE_S):
            data = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
            handler.wfile.write(data)
            handler.wfile.flush()


ABSURD_TOKENS = 10**30
"""A token count no model reports: SQLite cannot even store it (OverflowError)."""
ABSURD_MS = 1e300
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in - Corporate SSO</title></head>"
    b"<body><form action='/login'>user <input name=u></form></body></html>"
)
"""What a captive portal or an SSO proxy answers, with HTTP 200, in place of the API."""


def html_page(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.send_header("Content-Length", str(len(HTML_PAGE)))
    handler.end_headers()
    handler.wfile.write(HTML_PAGE)
    handler.wfile.flush()


def broken_chunks(handler: BaseHTTPRequestHandler, content_type: str, first: bytes) -> None:
    """A chunked 200 whose second chunk header is not hexadecimal, then a hang-up.

    Status line, headers and both chunks go out in one write, as a proxy relaying a damaged
    reply sends them. (When the bad chunk arrives in a later packet, aiohttp's C parser
    swallows the error and the read stalls until `timeout_s`: see
    `tests/reliability/test_hangs.py::test_broken_chunk_after_the_headers_is_retryable`.)
    """
    head = (
        "HTTP/1.1 200 OK\r\n"
        f"Content-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    body = f"{len(first):x}\r\n".encode() + first + b"\r\nZZZ\r\nbroken\r\n"
    handler.wfile.write(head + body)
    handler.wfile.flush()
    handler.close_connection = True


KEEPALIVE_SSE = b": keep-alive\n\n"
"""An SSE comment: what proxies and servers send to keep an idle stream open."""
ANTHROPIC_PING = b'event: ping\ndata: {"type": "ping"}\n\n'
"""Anthropic's own keep-alive event."""


def _enormous_answer() -> str:
    return '{"label": "' + "x" * ENORMOUS_CHARS + '", "confidence": 0.9}'


class _PlannedHTTP:
    """Shared by the OpenAI and Anthropic fakes (the `openai_server.LoopbackServer` family)."""

    plan: Plan
    stopping: threading.Event
    keepalive: bytes = KEEPALIVE_SSE
    """The keep-alive this server's streams send."""
    retry_after: str = str(RETRY_AFTER_S)
    """The Retry-After of the `http_429_retry_after` fault; tests may ask for an hour."""

    def planned_reply(self, fault: FaultName) -> Reply | None:
        """The parent server's own Reply for a fault, or None when this class plays it."""
        simple: dict[str, Reply] = {
            "ok": Reply(),
            "reset_before_reply": Reply(fault="reset_before"),
            "reset_mid_reply": Reply(fault="reset"),
            "http_429": Reply(status=429),
            "http_429_retry_after": Reply(status=429, headers={"Retry-After": self.retry_after}),
            "http_500": Reply(status=500),
            "http_502": Reply(status=502),
            "http_503": Reply(status=503),
            "answer_not_json": Reply(content=NOT_JSON),
            "unknown_label": Reply(label="vip_escalation"),
            "nan_confidence": Reply(confidence=math.nan),
            "inf_confidence": Reply(confidence=math.inf),
            "negative_confidence": Reply(confidence=-0.25),
            "empty_choices": Reply(fault="empty_choices"),
            "enormous_reply": Reply(fault="huge"),
        }
        return simple.get(fault)

    def play(self, handler: ScriptedHandler, request: Recorded, fault: FaultName) -> bool:
        """Faults the parent servers lack; True when one was played."""
        streamed = isinstance(request.body, dict) and bool(request.body.get("stream"))
        if fault == "trickle":  # a byte at a time of a reply that never completes
            content_type = "text/event-stream" if streamed else "application/json"
            endless(handler, b" ", self.stopping, content_type=content_type, chunked=streamed)
            return True
        if fault == "keepalive_forever":
            if streamed:
                endless(
                    handler,
                    self.keepalive,
                    self.stopping,
                    content_type="text/event-stream",
                    chunked=True,
                )
            else:  # whitespace is what keeps a plain JSON reply open
                endless(
                    handler, b"\n", self.stopping, content_type="application/json", chunked=False
                )
            return True
        if fault == "html_body":
            html_page(handler)
            return True
        if fault == "broken_chunked":
            content_type = "text/event-stream" if streamed else "application/json"
            broken_chunks(handler, content_type, b": ok\n\n" if streamed else b"{")
            return True
        if fault == "read_timeout":
            self.stopping.wait(STALL_S)
            handler.close_connection = True
            return True
        if fault == "body_not_json":
            if streamed:
                handler.start_stream()
                handler.write_chunk(b'data: {"choices": [{"delta": {"content": "bil\n\n')
                handler.end_stream()
            else:
                data = b"<html><body>502 Bad Gateway</body></html>"
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)
                handler.wfile.flush()
            return True
        if fault == "truncated_stream" and not streamed:
            data = json.dumps({"choices": [{"message": {"content": "{}"}}]}).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data) * 2))
            handler.end_headers()
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return True
        return False


class FaultyOpenAIServer(_PlannedHTTP, OpenAIServer):
    """OpenAI Chat Completions fake whose requests follow `plan`."""

    NUMBERS: dict[str, tuple[str, Any]] = {
        "absurd_tokens": ("usage", (ABSURD_TOKENS, 12, 0)),
        "negative_tokens": ("usage", (120, -5, 0)),
        "absurd_timing": ("timings", {"prompt_ms": ABSURD_MS, "predicted_ms": 5.0}),
    }
    """The absurd-number faults: which reported field gets which value."""

    def __init__(self, plan: Plan | None = None) -> None:
        self._local = threading.local()
        super().__init__()
        self.plan = plan or Plan()

    @property  # type: ignore[override]
    def usage(self) -> Any:
        return getattr(self._local, "usage", self._usage_default)

    @usage.setter
    def usage(self, value: Any) -> None:
        self._usage_default = value

    @property  # type: ignore[override]
    def timings(self) -> Any:
        return getattr(self._local, "timings", self._timings_default)

    @timings.setter
    def timings(self, value: Any) -> None:
        self._timings_default = value

    def respond(self, handler: ScriptedHandler, request: Recorded, reply: Reply) -> None:
        if request.method != "POST":
            super().respond(handler, request, reply)
            return
        fault = self.plan.next_fault(request.body)
        if fault in self.NUMBERS:
            name, value = self.NUMBERS[fault]
            setattr(self._local, name, value)  # this request's thread only
            try:
                super().respond(handler, request, Reply())
            finally:
                delattr(self._local, name)
            return
        if self.play(handler, request, fault):
            return
        native = self.planned_reply(fault)
        if native is None:
            native = {
                "stalled_stream": Reply(fault="stall", stall_s=STALL_S),
                "truncated_stream": Reply(fault="truncate"),
            }[fault]
        super().respond(handler, request, native)


class FaultyAnthropicServer(_PlannedHTTP, AnthropicServer):
    """Anthropic Messages fake whose requests follow `plan`."""

    keepalive = ANTHROPIC_PING
    NUMBERS: dict[str, dict[str, Any]] = {
        "absurd_tokens": {"input": ABSURD_TOKENS},
        "negative_tokens": {"output": -5},
    }
    """The absurd-number faults, as overrides of `AnthropicServer.usage`."""

    def __init__(self, plan: Plan | None = None) -> None:
        self._local = threading.local()
        super().__init__()
        self.plan = plan or Plan()

    @property  # type: ignore[override]
    def usage(self) -> Any:
        return {**self._usage_default, **getattr(self._local, "usage", {})}

    @usage.setter
    def usage(self, value: Any) -> None:
        self._usage_default = value

    def respond(self, handler: ScriptedHandler, request: Recorded, reply: Reply) -> None:
        if request.method != "POST":
            super().respond(handler, request, reply)
            return
        fault = self.plan.next_fault(request.body)
        if fault in self.NUMBERS:
            self._local.usage = self.NUMBERS[fault]  # this request's thread only
            try:
                super().respond(handler, request, Reply())
            finally:
                del self._local.usage
            return
        if (
            fault == "body_not_json"
            and isinstance(request.body, dict)
            and request.body.get("stream")
        ):
            handler.start_stream()
            handler.write_chunk(b"event: message_start\ndata: {not json\n\n")
            handler.end_stream()
            return
        if self.play(handler, request, fault):
            return
        native = self.planned_reply(fault)
        if native is None:
            native = {
                "stalled_stream": Reply(fault="stall", stall_s=STALL_S),
                "truncated_stream": Reply(fault="truncate"),
            }[fault]
        super().respond(handler, request, native)


class _PlannedLocal:
    """Shared by the Ollama and llama.cpp fakes (the `ollama_server.LoopbackServer` family)."""

    plan: Plan
    _closing: threading.Event
    endpoint: str
    keepalive: bytes
    """What this server's endless stream repeats."""
    NUMBERS: dict[str, dict[str, Any]] = {}
    """The absurd-number faults, as `Reply.extra` of an otherwise good answer."""
    retry_after: str = str(RETRY_AFTER_S)
    """The Retry-After of the `http_429_retry_after` fault; tests may ask for an hour."""

    def _setup(self, plan: Plan | None) -> None:
        self.plan = plan or Plan()
        self._current = threading.local()

    def next_reply(self, path: str) -> ollama_server.Reply | None:
        if path == "":
            planned: ollama_server.Reply | None = getattr(self._current, "reply", None)
            return planned
        return super().next_reply(path)  # type: ignore[misc]

    def native(self, fault: FaultName) -> ollama_server.Reply | None:
        local = ollama_server.Reply
        table: dict[str, ollama_server.Reply] = {
            "ok": local.answer(GOOD_LABEL, 0.9),
            "reset_before_reply": local.reset(),
            "read_timeout": local.stall(),
            "http_429": self.error(429),
            "http_429_retry_after": self.error(429, retry_after=self.retry_after),
            "http_500": self.error(500),
            "http_502": self.error(502),
            "http_503": self.error(503),
            "answer_not_json": local.text(NOT_JSON),
            "unknown_label": local.answer("vip_escalation", 0.9),
            "nan_confidence": local.answer(GOOD_LABEL, math.nan),
            "inf_confidence": local.answer(GOOD_LABEL, math.inf),
            "negative_confidence": local.answer(GOOD_LABEL, -0.25),
            **{
                name: local.answer(GOOD_LABEL, 0.9, **extra) for name, extra in self.NUMBERS.items()
            },
        }
        return table.get(fault)

    def error(self, status: int, **headers: str) -> ollama_server.Reply:
        return ollama_server.Reply.error(status, f"scripted {status}", **headers)

    def chunks(self, text: str, *, final: bool) -> list[bytes]:
        raise NotImplementedError

    def respond_planned(self, handler: BaseHTTPRequestHandler, request: Recorded) -> bool:
        """Play the plan for a model request; False hands the request to the parent."""
        if request.path != self.endpoint or request.method != "POST":
            return False
        fault = self.plan.next_fault(request.body)
        native = self.native(fault)
        if native is not None:
            self._current.reply = native
            return False
        answer = json.dumps({"label": GOOD_LABEL, "confidence": 0.9})
        if fault == "enormous_reply":
            _stream(handler, self.chunks(_enormous_answer(), final=True), "end")
        elif fault == "reset_mid_reply":
            _stream(handler, self.chunks(answer, final=False)[:3], "reset")
        elif fault == "stalled_stream":
            _stream(handler, self.chunks(answer, final=False)[:3], "stall", self._closing)
        elif fault == "truncated_stream":
            _stream(handler, self.chunks(answer, final=False), "end")
        elif fault == "body_not_json":
            _stream(handler, [b'{"model": "m", "message": {"content": "bil\n'], "end")
        elif fault == "broken_chunked":
            broken_chunks(handler, _content_type(handler), self.chunks(answer, final=False)[0])
        elif fault == "html_body":
            html_page(handler)
        elif fault == "trickle":
            content_type = _content_type(handler)
            endless(handler, b" ", self._closing, content_type=content_type, chunked=True)
        elif fault == "keepalive_forever":
            endless(
                handler,
                self.keepalive,
                self._closing,
                content_type=_content_type(handler),
                chunked=True,
            )
        else:
            raise AssertionError(f"fault {fault} is not playable on {type(self).__name__}")
        return True


def _stream(
    handler: BaseHTTPRequestHandler,
    pieces: Iterable[bytes],
    end: Literal["end", "reset", "stall"],
    closing: threading.Event | None = None,
) -> None:
    """A chunked 200 that ends cleanly, with an RST, or by going silent."""
    if end == "end":
        send_chunked(handler, _content_type(handler), pieces)
        return
    handler.send_response(200)
    handler.send_header("Content-Type", _content_type(handler))
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for piece in pieces:
        handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    handler.wfile.flush()
    handler.close_connection = True
    if end == "reset":
        _reset(handler.connection)
    elif closing is not None:
        closing.wait(STALL_S)


def _content_type(handler: BaseHTTPRequestHandler) -> str:
    return "text/event-stream" if handler.path == "/completion" else "application/x-ndjson"


class FaultyOllamaServer(_PlannedLocal, OllamaServer):
    """Ollama fake whose `/api/chat` requests follow `plan`."""

    endpoint = "/api/chat"
    keepalive = (
        json.dumps(
            {
                "model": "llama3.1:8b",
                "created_at": "2024-07-23T12:00:00Z",
                "message": {"role": "assistant", "content": ""},
                "done": False,
            }
        ).encode()
        + b"\n"
    )
    """NDJSON has no comments: a model that streams empty parts and never says done."""
    NUMBERS = {
        "absurd_tokens": {"prompt_eval_count": ABSURD_TOKENS},
        "negative_tokens": {"eval_count": -5},
        "absurd_timing": {"eval_duration": ABSURD_TOKENS},  # nanoseconds
    }

    def __init__(self, plan: Plan | None = None) -> None:
        super().__init__(models=("llama3.1:8b",))
        self._setup(plan)

    def respond(self, handler: BaseHTTPRequestHandler, request: Recorded) -> None:  # type: ignore[override]
        if not self.respond_planned(handler, request):
            super().respond(handler, request)

    def chunks(self, text: str, *, final: bool) -> list[bytes]:
        size = 65_536 if len(text) > 10_000 else 4
        lines = [
            json.dumps(
                {"model": "llama3.1:8b", "message": {"role": "assistant", "content": piece}}
                | {"created_at": "2024-07-23T12:00:00Z", "done": False}
            ).encode()
            + b"\n"
            for piece in (text[i : i + size] for i in range(0, len(text), size))
        ]
        if final:
            done = {
                "model": "llama3.1:8b",
                "created_at": "2024-07-23T12:00:00Z",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
            }
            lines.append(json.dumps(done).encode() + b"\n")
        return lines


class FaultyLlamaCppServer(_PlannedLocal, LlamaCppServer):
    """llama-server fake whose `/completion` requests follow `plan`."""

    endpoint = "/completion"
    keepalive = KEEPALIVE_SSE
    NUMBERS = {
        "absurd_tokens": {"timings": {"prompt_n": ABSURD_TOKENS}},
        "negative_tokens": {"timings": {"predicted_n": -5}},
        "absurd_timing": {"timings": {"prompt_ms": ABSURD_MS}},
    }

    def __init__(self, plan: Plan | None = None) -> None:
        super().__init__()
        self._setup(plan)

    def respond(self, handler: BaseHTTPRequestHandler, request: Recorded) -> None:  # type: ignore[override]
        if not self.respond_planned(handler, request):
            super().respond(handler, request)

    def error(self, status: int, **headers: str) -> ollama_server.Reply:
        body = json.dumps({"error": {"code": status, "message": f"scripted {status}"}})
        pairs = tuple((k.replace("_", "-"), v) for k, v in headers.items())
        return ollama_server.Reply(kind="status", status=status, body=body, headers=pairs)

    def chunks(self, text: str, *, final: bool) -> list[bytes]:
        size = 65_536 if len(text) > 10_000 else 4
        events = [
            b"data: " + json.dumps({"content": piece, "stop": False}).encode() + b"\n\n"
            for piece in (text[i : i + size] for i in range(0, len(text), size))
        ]
        if final:
            events.append(b"data: " + json.dumps({"content": "", "stop": True}).encode() + b"\n\n")
        return events


AnyServer = FaultyOpenAIServer | FaultyAnthropicServer | FaultyOllamaServer | FaultyLlamaCppServer


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


BOMB_INFLATED_BYTES = 100_000_000
"""What the gzip bomb inflates to: 100 times the cap, from ~100 KB on the wire."""
HUGE_LIST_BYTES = 50_000_000
"""Length of the endless model list: 50 times the cap (the reported one was 300 MB)."""


def gzip_bomb() -> bytes:
    """A gzip body of ~100 KB that inflates to `BOMB_INFLATED_BYTES` of a JSON-looking list."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(b'{"data": [')]
    block = b" " * 1_000_000
    parts += [packer.compress(block) for _ in range(BOMB_INFLATED_BYTES // len(block))]
    parts.append(packer.compress(b"]}") + packer.flush())
    return b"".join(parts)


SMALL_LIST = b'{"data": [{"id": "test-model", "object": "model"}], "models": []}'
"""A model list any backend's check can read, for the encoded-but-sane replies."""
BodyKind = Literal["gzip_bomb", "huge_list", "gzip", "deflate", "raw_deflate"]


def _encoded(kind: BodyKind) -> tuple[bytes, str]:
    """The body and Content-Encoding of a `BodyServer` reply sent whole."""
    if kind == "gzip_bomb":
        return gzip_bomb(), "gzip"
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw_deflate": -15}[kind]
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return packer.compress(SMALL_LIST) + packer.flush(), "gzip" if kind == "gzip" else "deflate"


class BodyServer:
    """Answers every GET (`/v1/models`, `/health`, `/api/tags`...) with one 200: a gzip bomb,
    a model list of `HUGE_LIST_BYTES` streamed in chunks, or a small list sent compressed."""

    def __init__(self, kind: BodyKind) -> None:
        self.kind = kind
        self.stopping = threading.Event()
        self.bomb, self.coding = _encoded(kind) if kind != "huge_list" else (b"", "")
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def do_GET(self) -> None:  # noqa: N802
                with contextlib.suppress(OSError):
                    owner.answer(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> BodyServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if self.kind != "huge_list":
            handler.send_header("Content-Encoding", self.coding)
            handler.send_header("Content-Length", str(len(self.bomb)))
            handler.end_headers()
            handler.wfile.write(self.bomb)
            return
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        entry = b'{"id": "model-0000000", "object": "model", "owned_by": "someone"}, '
        piece = b'{"data": [' + entry * (65_536 // len(entry))
        sent = 0
        while sent < HUGE_LIST_BYTES and not self.stopping.is_set():
            handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            sent += len(piece)
            piece = entry * (65_536 // len(entry))
        handler.wfile.write(b"2\r\n]}\r\n0\r\n\r\n")
