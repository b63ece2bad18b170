"""`prompt = "finetuned"` through a server: what the `llamacpp` and `openai` types share.

A GGUF from `triagedesk finetune` served by `llama-server` (or any llama.cpp-family server)
is asked the prompt it was trained on (`Ticket: <text>\\nLabel:`, no taxonomy list) and
constrained by a GBNF grammar that is the alternation of the taxonomy's ` <label>` answers,
greedily, with room for the longest label only. The confidence is the product of the
probabilities the server reports for the tokens that spell the answer.

Nothing the server sends is trusted: the answer must be exactly one label of the taxonomy
(`LabelNotInTaxonomy` otherwise, which the ticket shows and can be retried), and every token
probability must be a finite log-probability at most 0 (or a probability in [0, 1]) on tokens
that spell the answer (`BadResponse` otherwise). The per-type wire formats live in
`backends.llamacpp` and `backends.openai_compat`; the shared route is `route_finetuned`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backends import retry
from tui.core.backend import BadResponse, LabelNotInTaxonomy, RouteResult, Stopwatch
from tui.core.learning.llm.prompt import PROMPT_TEMPLATE, answer, prompt

if TYPE_CHECKING:
    from pydantic import SecretStr

    from backends.llm import LLMBackend
    from tui.core.models import ConfidenceSource, Taxonomy, Ticket

TokenLogprobs = list[tuple[str, float]]
"""(token text, log-probability) of each generated token, in order."""
LOGPROB_SLACK = 1e-6
"""A logprob a hair above 0 is rounding; anything larger is not a log-probability."""

_SPECIAL_LOOKING = re.compile(r"<(?=[A-Za-z_/|][^<>\s]{0,40}>)")
"""`<eos>`, `<start_of_turn>`...: servers tokenize prompts with special tokens parsed, so a
ticket spelling one would inject it; a zero-width space after `<` keeps it plain text."""


def prompt_version(taxonomy: Taxonomy) -> str:
    """Stored with each decision: the trained template and the labels it chose between."""
    digest = hashlib.sha256(PROMPT_TEMPLATE.encode())
    digest.update("\n".join(taxonomy.names).encode())
    return f"ft-{digest.hexdigest()[:10]}"


def served_prompt(text: str) -> str:
    """The trained prompt for a server, with special-token look-alikes made plain text."""
    return prompt(_SPECIAL_LOOKING.sub("<\u200b", text))


def _gbnf_literal(text: str) -> str:
    """`text` as a GBNF string literal: quotes, backslashes and control characters escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def grammar(taxonomy: Taxonomy) -> str:
    """The GBNF grammar whose only sentences are the taxonomy's answers, ` <label>`."""
    return "root ::= " + " | ".join(_gbnf_literal(answer(name)) for name in taxonomy.names)


def max_tokens(taxonomy: Taxonomy) -> int:
    """Tokens the longest answer can take on any tokenizer (at most one a byte) plus the end
    of sequence: enough for every label, never room to ramble."""
    return max(len(answer(name).encode()) for name in taxonomy.names) + 1


def read_label(text: str, taxonomy: Taxonomy) -> str:
    """The label the server answered: exactly one of the taxonomy's, or an error.

    Raises:
        LabelNotInTaxonomy: Anything else (the grammar was ignored, or the server is not one).
    """
    name = text.strip()
    if name in taxonomy.names:
        return name
    shown = text[:80].encode("unicode_escape").decode()
    raise LabelNotInTaxonomy(f"answer {shown!r} is not a label of the taxonomy", raw_output=text)


def logprob(value: Any, where: str) -> float:
    """A token's log-probability, checked: finite and at most 0.

    Raises:
        BadResponse: Not a number, not finite, or above 0, naming `where`.
    """
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and math.isfinite(value) and value <= LOGPROB_SLACK:
        return min(float(value), 0.0)
    raise BadResponse(f"{where} is not a log-probability: {str(value)[:40]!r}")


def probability_logprob(value: Any, where: str) -> float:
    """A probability in [0, 1], checked, as its log (-inf for 0).

    Raises:
        BadResponse: Not a number within [0, 1], naming `where`.
    """
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return math.log(value) if value > 0 else -math.inf
    raise BadResponse(f"{where} is not a probability: {str(value)[:40]!r}")


def answer_confidence(tokens: TokenLogprobs, text: str) -> float:
    """The answer's probability: exp of the summed logprobs of the tokens that spell it.

    The tokens, laid end to end, must begin with the answer text; those overlapping its
    characters count (a trailing end-of-sequence token, spelled "", does not).

    Raises:
        BadResponse: Tokens that do not spell the answer.
    """
    spelled = "".join(token for token, _ in tokens)
    if not text or not spelled.startswith(text):
        raise BadResponse(
            f"the token probabilities spell {spelled[:60]!r}, not the answer {text[:60]!r}"
        )
    total, position = 0.0, 0
    for token, value in tokens:
        if position < len(text) and token:
            total += value
        position += len(token)
    return min(max(math.exp(total), 0.0), 1.0) if total > -math.inf else 0.0


def server_probabilities(entries: Any, where: str) -> tuple[TokenLogprobs, ConfidenceSource]:
    """llama-server's `completion_probabilities` (also `/v1/completions`' `logprobs.content`).

    Each item is `{"token", "logprob", ...}`, `{"token", "prob", ...}` with
    `post_sampling_probs`, or, from servers before 2025, `{"content", "probs": [{"tok_str",
    "prob"}]}`.

    Raises:
        BadResponse: Not a list, or an item without a token text and a valid probability.
    """
    if not isinstance(entries, list):
        raise BadResponse(f"{where} is not a list")
    tokens: TokenLogprobs = []
    source: ConfidenceSource = "logprob"
    for index, entry in enumerate(entries):
        at = f"{where}[{index}]"
        if not isinstance(entry, dict):
            raise BadResponse(f"{at} is not an object")
        token = entry.get("token", entry.get("content"))
        if not isinstance(token, str):
            raise BadResponse(f"{at} has no token text")
        if "logprob" in entry:
            tokens.append((token, logprob(entry["logprob"], f"{at}.logprob")))
            continue
        source = "probability"
        if "prob" in entry:
            tokens.append((token, probability_logprob(entry["prob"], f"{at}.prob")))
            continue
        candidates = entry.get("probs")
        found = [
            c
            for c in (candidates if isinstance(candidates, list) else [])
            if isinstance(c, dict) and c.get("tok_str") == token
        ]
        if not found:
            raise BadResponse(f"{at} has no probability for its token")
        tokens.append((token, probability_logprob(found[0].get("prob"), f"{at}.probs")))
    return tokens, source


def openai_logprobs(logprobs: Any) -> TokenLogprobs | None:
    """A `/v1/completions` choice's `logprobs`: llama-server's `{"content": [...]}` or the
    OpenAI completions shape `{"tokens": [...], "token_logprobs": [...]}` (llama-cpp-python,
    vLLM). None when the server sent none.

    Raises:
        BadResponse: Any other shape, lists of different lengths, or a bad value.
    """
    if logprobs is None:
        return None
    if not isinstance(logprobs, dict):
        raise BadResponse("choices[0].logprobs is not an object")
    if "content" in logprobs:
        return server_probabilities(logprobs["content"], "choices[0].logprobs.content")[0]
    tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list) or len(tokens) != len(values):
        raise BadResponse("choices[0].logprobs has no matching tokens and token_logprobs")
    out: TokenLogprobs = []
    for index, (token, value) in enumerate(zip(tokens, values, strict=True)):
        if not isinstance(token, str):
            raise BadResponse(f"choices[0].logprobs.tokens[{index}] is not a string")
        out.append((token, logprob(value, f"choices[0].logprobs.token_logprobs[{index}]")))
    return out


@dataclass(frozen=True, slots=True)
class Ask:
    """One fine-tuned request, the same for every wire format."""

    prompt: str
    grammar: str
    max_tokens: int
    key: SecretStr | None


@dataclass(slots=True)
class Answered:
    """What a server answered, in the terms `route_finetuned` reads."""

    text: str
    tokens: TokenLogprobs | None = None
    """(token text, logprob) of the answer's tokens; None when the server sent none."""
    source: ConfidenceSource = "logprob"
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    prompt_ms: float | None = None
    gen_ms: float | None = None


async def route_finetuned(
    backend: LLMBackend[Any],
    ticket: Ticket,
    taxonomy: Taxonomy,
    exchange: Callable[[Ask, Stopwatch], Awaitable[Answered]],
) -> RouteResult:
    """Ask the server once (retrying transient failures: a 503 while the model loads, a
    dropped connection), each attempt bounded by `timeout_s`, and read the decision.

    Raises:
        BackendError: Transport and status errors as mapped by the backend; an answer
            outside the taxonomy (`LabelNotInTaxonomy`) or malformed probabilities
            (`BadResponse`), never retried: at temperature 0 they would only repeat.
    """
    ask = Ask(served_prompt(ticket.text), grammar(taxonomy), max_tokens(taxonomy), backend._key())
    watch = Stopwatch()

    async def attempt() -> Answered:
        watch.first = None
        try:
            async with asyncio.timeout(backend.config.timeout_s):
                return await exchange(ask, watch)
        except TimeoutError:
            raise backend._timed_out() from None

    async with backend._hold():
        answered = await retry.with_retries(
            attempt,
            max_retries=backend.config.max_retries,
            base_delay=backend.retry_base_delay,
            sleep=backend.retry_sleep,
        )
    label = read_label(answered.text, taxonomy)
    confidence = (
        None if answered.tokens is None else answer_confidence(answered.tokens, answered.text)
    )
    return RouteResult(
        label=label,
        confidence=confidence,
        confidence_source=None if confidence is None else answered.source,
        raw_output=answered.text,
        model=_configured_model(backend) or answered.model or backend.config.model_name,
        prompt_version=prompt_version(taxonomy),
        input_tokens=answered.input_tokens,
        output_tokens=answered.output_tokens,
        cached_input_tokens=answered.cached_tokens,
        total_ms=watch.elapsed_ms(),
        ttft_ms=watch.ttft_ms(),
        server_prompt_ms=answered.prompt_ms,
        server_gen_ms=answered.gen_ms,
    )


def _configured_model(backend: LLMBackend[Any]) -> str | None:
    """The `model` key when set: llama-server reports only the file or alias it loaded."""
    model = getattr(backend.config, "model", None)
    return model if isinstance(model, str) and model else None
