"""A loopback Anthropic Messages API server that answers through the forced tool, and can fail.

Same machinery as the OpenAI server (real HTTP/1.1, chunked SSE, a per-request script queue,
recorded requests); the payloads follow Anthropic's streaming event sequence.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from tests.servers.openai_server import _UNSET, LoopbackServer, Recorded, Reply, ScriptedHandler

__all__ = ["AnthropicServer", "Reply", "anthropic_server"]

OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


class AnthropicServer(LoopbackServer):
    """Plays `POST /v1/messages` and `GET /v1/models`.

    Extra faults, given as `Reply.body` markers on a 200 reply: `"text-only"` answers with a
    text block instead of the tool, `"error-event"` sends an overloaded error mid-stream.
    """

    def __init__(self) -> None:
        super().__init__()
        self.label = "billing"
        self.confidence: Any = 0.9
        self.model = "claude-test"
        self.models: list[str] = ["claude-test"]
        self.usage = {"input": 300, "cache_read": 100, "cache_write": 20, "output": 25}
        """Token counts to report, in Anthropic's split."""

    @property
    def url(self) -> str:
        return self.root

    def messages(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/v1/messages")]

    def respond(self, handler: ScriptedHandler, request: Recorded, reply: Reply) -> None:
        if request.method == "GET" and request.path.endswith("/v1/models"):
            data = [{"id": m, "type": "model"} for m in self.models]
            handler.send_json(200, {"data": data, "has_more": False})
            return
        if reply.fault == "reset_before":
            handler.reset()
        if reply.status != 200:
            if reply.body is None and reply.fault != "redirect":
                kind = "overloaded_error" if reply.status == 529 else "api_error"
                error = {
                    "type": "error",
                    "error": {"type": kind, "message": f"scripted {reply.status}"},
                }
                handler.send_json(reply.status, error, reply.headers)
            else:
                self.send_error_reply(handler, reply)
            return
        body = request.body if isinstance(request.body, dict) else {}
        tool_json = self._tool_json(reply)
        if body.get("stream"):
            self._stream(handler, reply, tool_json)
        else:
            self._whole(handler, reply, tool_json)

    def _tool_json(self, reply: Reply) -> str:
        if reply.fault == "huge":
            return '{"label": "' + "x" * 2_000_000 + '"}'
        if reply.content is not None:
            return reply.content
        confidence = self.confidence if reply.confidence is _UNSET else reply.confidence
        return json.dumps({"label": reply.label or self.label, "confidence": confidence})

    def _message_usage(self) -> dict[str, int]:
        return {
            "input_tokens": self.usage["input"],
            "cache_read_input_tokens": self.usage["cache_read"],
            "cache_creation_input_tokens": self.usage["cache_write"],
            "output_tokens": 1,
        }

    def _whole(self, handler: ScriptedHandler, reply: Reply, tool_json: str) -> None:
        if reply.fault == "stall":
            handler.stall(reply.stall_s)
        if reply.body == "text-only":
            content: list[dict[str, Any]] = [{"type": "text", "text": tool_json}]
        else:
            try:
                tool_input = json.loads(tool_json)
            except json.JSONDecodeError:
                tool_input = {"raw": tool_json}
            content = [
                {
                    "type": "tool_use",
                    "id": "toolu_test",
                    "name": "route_ticket",
                    "input": tool_input,
                }
            ]
        usage = {**self._message_usage(), "output_tokens": self.usage["output"]}
        payload = {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": "tool_use",
            "usage": usage,
        }
        handler.send_json(200, payload)

    def _stream(self, handler: ScriptedHandler, reply: Reply, tool_json: str) -> None:
        def event(name: str, payload: dict[str, Any]) -> None:
            data = json.dumps({"type": name, **payload}).encode()
            handler.write_chunk(b"event: " + name.encode() + b"\ndata: " + data + b"\n\n")

        handler.start_stream()
        message = {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "usage": self._message_usage(),
        }
        event("message_start", {"message": message})
        text_only = reply.body == "text-only"
        block = (
            {"type": "text", "text": ""}
            if text_only
            else {"type": "tool_use", "id": "toolu_test", "name": "route_ticket", "input": {}}
        )
        event("content_block_start", {"index": 0, "content_block": block})
        event("ping", {})
        size = 65536 if reply.fault == "huge" else 7
        pieces = [tool_json[i : i + size] for i in range(0, len(tool_json), size)]
        for index, piece in enumerate(pieces):
            delta = (
                {"type": "text_delta", "text": piece}
                if text_only
                else {"type": "input_json_delta", "partial_json": piece}
            )
            event("content_block_delta", {"index": 0, "delta": delta})
            if index == 1 and reply.fault == "reset":
                handler.reset()
            if index == 1 and reply.fault == "stall":
                handler.stall(reply.stall_s)
            if index == 1 and reply.body == "error-event":
                handler.write_chunk(
                    b"event: error\ndata: " + json.dumps(OVERLOADED).encode() + b"\n\n"
                )
                handler.end_stream()
                return
            if index == 1 and reply.fault == "truncate":
                handler.end_stream()
                return
        event("content_block_stop", {"index": 0})
        event(
            "message_delta",
            {
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": self.usage["output"]},
            },
        )
        event("message_stop", {})
        handler.end_stream()


@contextlib.contextmanager
def anthropic_server() -> Iterator[AnthropicServer]:
    """Run an `AnthropicServer` for the duration of the block."""
    server = AnthropicServer().start()
    try:
        yield server
    finally:
        server.stop()
