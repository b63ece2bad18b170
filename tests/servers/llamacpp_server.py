"""A loopback fake of llama.cpp's `llama-server` native API: `/completion` and `/health`.

`/completion` answers as one JSON object or as server-sent events, with timings in
milliseconds and, when `n_probs` is asked for, `completion_probabilities` in the current
(`logprob`), post-sampling (`prob`) or legacy (`probs`) shape.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.servers.ollama_server import LoopbackServer, Recorded, Reply, send_chunked, send_json

DEFAULT_TIMINGS_MS = {
    "cache_n": 0,
    "prompt_n": 312,
    "prompt_ms": 41.25,
    "predicted_n": 15,
    "predicted_ms": 87.5,
}
OTHER_TOKEN_PROB = 0.5
"""Probability given to every token outside the label, so a wrong overlap shows in tests."""

_TOKEN = re.compile(r"[A-Za-z]{1,4}|\d+|\s+|.", re.DOTALL)


def tokenize(text: str) -> list[str]:
    """A toy tokenizer: words cut into pieces of at most four letters, digits, punctuation."""
    return _TOKEN.findall(text)


def llama_error(status: int, message: str, kind: str = "server_error") -> Reply:
    """An error reply in llama-server's `{"error": {"code", "message", "type"}}` shape."""
    body = json.dumps({"error": {"code": status, "message": message, "type": kind}})
    return Reply(kind="status", status=status, body=body)


class LlamaCppServer(LoopbackServer):
    """Fake `llama-server -m model.gguf`.

    A reply's `extra` may set `probs` (`logprob`, `prob`, `legacy` or None), `label_prob`
    (the probability of the label's first token; its other tokens get 1.0), `token_probs`
    (each generated token's probability, for a plain-text answer such as a fine-tuned
    model's ` <label>`), `completion_probabilities` (sent verbatim) and `timings`.
    """

    def __init__(self, model: str = "models/qwen2.5-0.5b-instruct-q4_k_m.gguf") -> None:
        super().__init__()
        self.model = model
        self.default = Reply.answer("billing", 0.9)

    def completion_requests(self) -> list[Recorded]:
        return self.requests_to("/completion")

    def respond(self, handler: BaseHTTPRequestHandler, request: Recorded) -> None:
        if request.path == "/health":
            reply = self.next_reply("/health")
            if reply is not None and self.fault(handler, reply):
                return
            send_json(handler, 200, {"status": "ok"})
            return
        if request.path != "/completion" or request.method != "POST":
            send_json(handler, 404, {"error": {"code": 404, "message": "File Not Found"}})
            return
        body = request.body if isinstance(request.body, dict) else {}
        reply = self.next_reply("") or self.default
        if self.fault(handler, reply):
            return
        tokens = tokenize(reply.content)
        probabilities = self._probabilities(tokens, reply, int(body.get("n_probs") or 0))
        timings = {**DEFAULT_TIMINGS_MS, **reply.extra.get("timings", {})}
        final = {
            "model": self.model,
            "stop": True,
            "stop_type": "eos",
            "tokens_evaluated": timings["prompt_n"] + timings["cache_n"],
            "tokens_predicted": timings["predicted_n"],
            "tokens_cached": timings["cache_n"],
            "timings": timings,
        }
        if not body.get("stream"):
            payload = {"content": reply.content, "id_slot": 0, **final}
            if probabilities is not None:
                payload["completion_probabilities"] = probabilities
            send_json(handler, 200, payload)
            return

        def events() -> Iterator[bytes]:
            for index, token in enumerate(tokens):
                chunk: dict[str, Any] = {"content": token, "stop": False, "id_slot": 0}
                if probabilities is not None:
                    chunk["completion_probabilities"] = [probabilities[index]]
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            if reply.kind == "stream_error":
                error = {"error": {"code": 500, "message": reply.body, "type": "server_error"}}
                yield b"data: " + json.dumps(error).encode() + b"\n\n"
                return
            yield b"data: " + json.dumps({"content": "", **final}).encode() + b"\n\n"

        send_chunked(handler, "text/event-stream", events())

    def _probabilities(
        self, tokens: list[str], reply: Reply, n_probs: int
    ) -> list[dict[str, Any]] | None:
        shape = reply.extra.get("probs", "logprob")
        if n_probs <= 0 or shape is None:
            return None
        if "completion_probabilities" in reply.extra:
            verbatim: list[dict[str, Any]] = reply.extra["completion_probabilities"]
            return verbatim
        if "token_probs" in reply.extra:
            given = reply.extra["token_probs"]
            return [
                self._entry(i, t, p, shape)
                for i, (t, p) in enumerate(zip(tokens, given, strict=True))
            ]
        label_prob = float(reply.extra.get("label_prob", 0.8))
        label_tokens = self._label_token_indexes(tokens)
        first_label_token = min(label_tokens, default=-1)
        entries = []
        for index, token in enumerate(tokens):
            if index == first_label_token:
                probability = label_prob
            elif index in label_tokens:
                probability = 1.0
            else:
                probability = OTHER_TOKEN_PROB
            entries.append(self._entry(index, token, probability, shape))
        return entries

    @staticmethod
    def _label_token_indexes(tokens: list[str]) -> set[int]:
        text = "".join(tokens)
        match = re.search(r'"label"\s*:\s*"([^"]*)"', text)
        if match is None:
            return set()
        start, end = match.span(1)
        indexes, position = set(), 0
        for index, token in enumerate(tokens):
            if position < end and position + len(token) > start:
                indexes.add(index)
            position += len(token)
        return indexes

    @staticmethod
    def _entry(index: int, token: str, probability: float, shape: str) -> dict[str, Any]:
        if shape == "legacy":
            return {"content": token, "probs": [{"tok_str": token, "prob": probability}]}
        base = {"id": 1000 + index, "token": token, "bytes": list(token.encode())}
        if shape == "prob":
            return {**base, "prob": probability, "top_probs": [{**base, "prob": probability}]}
        logprob = math.log(probability)
        return {**base, "logprob": logprob, "top_logprobs": [{**base, "logprob": logprob}]}
