"""Loopback wire-protocol servers that play one fault per ticket, for the reliability tests.

They subclass the servers in `tests/servers/` and add what those lack: a *plan* that decides
each request's behaviour from the ticket it carries (so retries and concurrency stay
deterministic), and the faults missing there (a read timeout before any header on a stream,
a reset, stall or clean cut in the middle of an NDJSON/SSE stream, a body that is not JSON,
an enormous reply). Tickets are recognised by a `[case-N]` tag in their text.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
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
]

RETRY_AFTER_S = 0.05
"""Retry-After the 429 fault sends; distinct from the tiny jittered backoff of the tests."""
STALL_S = 30.0
"""How long a stalled server stays silent (it wakes as soon as the server stops)."""
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


def _reset(connection: socket.socket) -> None:
    """Abort a connection with a TCP RST, like a crashed proxy."""
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()


def _enormous_answer() -> str:
    return '{"label": "' + "x" * ENORMOUS_CHARS + '", "confidence": 0.9}'


class _PlannedHTTP:
    """Shared by the OpenAI and Anthropic fakes (the `openai_server.LoopbackServer` family)."""

    plan: Plan
    stopping: threading.Event

    def planned_reply(self, fault: FaultName) -> Reply | None:
        """The parent server's own Reply for a fault, or None when this class plays it."""
        simple: dict[str, Reply] = {
            "ok": Reply(),
            "reset_before_reply": Reply(fault="reset_before"),
            "reset_mid_reply": Reply(fault="reset"),
            "http_429": Reply(status=429),
            "http_429_retry_after": Reply(status=429, headers={"Retry-After": str(RETRY_AFTER_S)}),
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

    def __init__(self, plan: Plan | None = None) -> None:
        super().__init__()
        self.plan = plan or Plan()

    def respond(self, handler: ScriptedHandler, request: Recorded, reply: Reply) -> None:
        if request.method != "POST":
            super().respond(handler, request, reply)
            return
        fault = self.plan.next_fault(request.body)
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

    def __init__(self, plan: Plan | None = None) -> None:
        super().__init__()
        self.plan = plan or Plan()

    def respond(self, handler: ScriptedHandler, request: Recorded, reply: Reply) -> None:
        if request.method != "POST":
            super().respond(handler, request, reply)
            return
        fault = self.plan.next_fault(request.body)
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
            "http_429_retry_after": self.error(429, retry_after=str(RETRY_AFTER_S)),
            "http_500": self.error(500),
            "http_502": self.error(502),
            "http_503": self.error(503),
            "answer_not_json": local.text(NOT_JSON),
            "unknown_label": local.answer("vip_escalation", 0.9),
            "nan_confidence": local.answer(GOOD_LABEL, math.nan),
            "inf_confidence": local.answer(GOOD_LABEL, math.inf),
            "negative_confidence": local.answer(GOOD_LABEL, -0.25),
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
