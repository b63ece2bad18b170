"""Reading OpenAI-compatible replies: usage and timings (chat and completions alike), and a
`POST /completions` reply for `prompt = "finetuned"`.

Split from `backends.openai_compat`, which keeps the requests, the negotiation and the chat
replies; every number read here is checked (`tui.core.numbers`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from backends import finetuned_wire
from backends.finetuned_wire import Answered
from backends.http_common import quote_server
from backends.llm import Completion
from tui.core import numbers
from tui.core.backend import BadResponse, ServerError

if TYPE_CHECKING:
    from pydantic import SecretStr

    from backends.http_reading import WireReply
    from tui.core.backend import Stopwatch


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def take_usage(usage: Any, completion: Completion) -> None:
    """Token counts, each validated (`tui.core.numbers`): a bad one fails the ticket.

    Raises:
        BadResponse: A count that is not a whole number within 0..10**9, naming its field.
    """
    if not isinstance(usage, dict):
        return
    completion.input_tokens = numbers.count(usage.get("prompt_tokens"), "usage.prompt_tokens")
    completion.output_tokens = numbers.count(
        usage.get("completion_tokens"), "usage.completion_tokens"
    )
    details = usage.get("prompt_tokens_details")
    cached = (
        numbers.count(details.get("cached_tokens"), "usage.prompt_tokens_details.cached_tokens")
        if isinstance(details, dict)
        else None
    )
    completion.cached_tokens = cached if cached is not None else 0


def take_timings(timings: Any, completion: Completion) -> None:
    """llama.cpp's server adds `timings` (prompt_ms, predicted_ms) to OpenAI-style replies.

    Raises:
        BadResponse: A timing that is not a finite duration within a day, naming its field.
    """
    if isinstance(timings, dict):
        completion.prompt_ms = numbers.duration(timings.get("prompt_ms"), "timings.prompt_ms")
        completion.gen_ms = numbers.duration(timings.get("predicted_ms"), "timings.predicted_ms")


async def no_stream(response: WireReply, key: SecretStr | None, watch: Stopwatch) -> Answered:
    raise BadResponse("the server streamed an answer that was asked for in one piece")


def read_completion(payload: dict[str, Any], key: SecretStr | None, watch: Stopwatch) -> Answered:
    """A `/completions` reply: `choices[0].text`, its logprobs, usage and llama.cpp timings,
    each checked (`finetuned_wire`, `tui.core.numbers`)."""
    watch.mark_first()
    if "error" in payload and "choices" not in payload:
        raise ServerError(f"server error: {quote_server(json.dumps(payload['error']), key)}")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadResponse("reply has no choices")
    text = choices[0].get("text")
    if not isinstance(text, str):
        raise BadResponse("reply has no string choices[0].text")
    usage = Completion(text=text)
    take_usage(payload.get("usage"), usage)
    take_timings(payload.get("timings"), usage)
    return Answered(
        text=text,
        tokens=finetuned_wire.openai_logprobs(choices[0].get("logprobs")),
        model=str_or_none(payload.get("model")),
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        prompt_ms=usage.prompt_ms,
        gen_ms=usage.gen_ms,
    )
