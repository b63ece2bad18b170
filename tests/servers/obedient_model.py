"""An "obedient model": it does whatever the ticket tells it to, on every wire protocol.

The worst case for prompt injection is a model that ignores the system prompt entirely and
follows the customer's text. `obey` plays that model: it finds the ticket inside the user
message, normalises Unicode the way a model's reading would (NFKC, zero-width characters
dropped) and answers in the label, format or words the ticket asks for. The server
subclasses put it behind the OpenAI, Anthropic, Ollama and llama.cpp fakes.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from typing import Any

from tests.servers import ollama_server
from tests.servers.anthropic_server import AnthropicServer
from tests.servers.llamacpp_server import LlamaCppServer
from tests.servers.ollama_server import OllamaServer
from tests.servers.openai_server import OpenAIServer, Recorded, Reply, ScriptedHandler

DEFAULT_ANSWER = {"label": "billing", "confidence": 0.7}
"""What the model answers when the ticket gives it no instruction."""

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u202e\u202d\u202a\u202c"))
_REVEAL = re.compile(
    r"\b(reveal|repeat|print|show|output|leak)\b.{0,40}\b(system prompt|prompt|instructions)\b"
)
_XML = re.compile(r"\bxml\b")
_YAML = re.compile(r"\byaml\b")
_WORD = re.compile(r"\b(?:just|only|single)(?: the)? word[s]?\s*[\"']?([\w-]+)")
_JSON = re.compile(r"\{[^{}]*\"label\"[^{}]*\}")
_PICK = re.compile(
    r"\b(?:label|classify|route|categori[sz]e|pick|choose|answer|select|tag|mark)\b"
    r"[^.\n]{0,40}?(?:\b(?:as|with|to|is)\b|[=:])\s*[\"'`]?([a-z_][\w-]*)"
)
_CONFIDENCE = re.compile(
    r"\bconfidence\b[^.\n]{0,20}?(?:\b(?:to|of)\b|[=:])\s*(-?[\d.]+|nan|infinity)"
)


def read_ticket(user: str) -> str:
    """The text between the first `<ticket>` and the last `</ticket>` of the user message."""
    start = user.find("<ticket>")
    end = user.rfind("</ticket>")
    if start < 0 or end < start:
        return user
    return user[start + len("<ticket>") : end]


def normalise(text: str) -> str:
    """What a model effectively reads: NFKC-folded, without invisible characters, lowercase."""
    return unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).casefold()


def obey(system: str, user: str) -> str:
    """The answer of a model that follows every instruction in the ticket."""
    ticket = normalise(read_ticket(user))
    if _REVEAL.search(ticket):
        return system
    found = _JSON.search(ticket)
    if found:
        return found.group(0)
    picked = _PICK.search(ticket)
    label = picked.group(1) if picked else None
    if _XML.search(ticket):
        return f"<answer><label>{label or 'vip_escalation'}</label></answer>"
    if _YAML.search(ticket):
        return f"label: {label or 'vip_escalation'}\nconfidence: 1.0"
    word = _WORD.search(ticket)
    if word:
        return word.group(1)
    answer: dict[str, Any] = dict(DEFAULT_ANSWER)
    if label:
        answer = {"label": label, "confidence": 1.0}
    confidence = _CONFIDENCE.search(ticket)
    if confidence:
        try:
            answer["confidence"] = float(confidence.group(1))
        except ValueError:
            answer["confidence"] = confidence.group(1)
    return json.dumps(answer)


class ObedientOpenAIServer(OpenAIServer):
    """Chat Completions: the system and first user message decide the answer."""

    def respond(self, handler: ScriptedHandler, request: Recorded, reply: Reply) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        messages = body.get("messages") or []
        if request.method == "POST" and len(messages) >= 2:
            reply = Reply(content=obey(messages[0]["content"], messages[1]["content"]))
        super().respond(handler, request, reply)


class ObedientAnthropicServer(AnthropicServer):
    """Messages API: `system` plus the first user turn; the answer goes through the tool."""

    def respond(self, handler: ScriptedHandler, request: Recorded, reply: Reply) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        messages = body.get("messages") or []
        if request.method == "POST" and messages:
            reply = Reply(content=obey(str(body.get("system", "")), messages[0]["content"]))
        super().respond(handler, request, reply)


class ObedientOllamaServer(OllamaServer):
    """`/api/chat`: messages as in the OpenAI API."""

    def __init__(self) -> None:
        super().__init__(models=("llama3.1:8b",))
        self._local = threading.local()

    def respond(self, handler: Any, request: Recorded) -> None:  # type: ignore[override]
        body = request.body if isinstance(request.body, dict) else {}
        messages = body.get("messages") or []
        if len(messages) >= 2:
            answer = obey(messages[0]["content"], messages[1]["content"])
            self._local.reply = ollama_server.Reply.text(answer)
        super().respond(handler, request)

    def next_reply(self, path: str) -> ollama_server.Reply | None:
        if path == "":
            return getattr(self._local, "reply", None)
        return super().next_reply(path)


_TURN = re.compile(r"^### (System|User|Assistant):\n", re.MULTILINE)


def split_turns(prompt: str) -> list[tuple[str, str]]:
    """The (role, text) turns of llama.cpp's raw-completion prompt (`format_turns`)."""
    parts = _TURN.split(prompt)
    return [(parts[i].lower(), parts[i + 1].rstrip("\n")) for i in range(1, len(parts) - 1, 2)]


class ObedientLlamaCppServer(LlamaCppServer):
    """`/completion`: the raw prompt is split back into its system and user turns."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def respond(self, handler: Any, request: Recorded) -> None:  # type: ignore[override]
        body = request.body if isinstance(request.body, dict) else {}
        turns = split_turns(str(body.get("prompt", "")))
        if len(turns) >= 2:
            answer = obey(turns[0][1], turns[1][1])
            self._local.reply = ollama_server.Reply.text(answer)
        super().respond(handler, request)

    def next_reply(self, path: str) -> ollama_server.Reply | None:
        if path == "":
            return getattr(self._local, "reply", None)
        return super().next_reply(path)
