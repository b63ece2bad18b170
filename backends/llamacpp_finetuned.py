"""`prompt = "finetuned"` for `llamacpp-local`: a GGUF from `triagedesk finetune`, asked the way
it was trained, and answered by scoring every label.

The model learned to read `Ticket: <text>\\nLabel:` (no taxonomy list, so the prompt is short)
and answer ` <label><eos>`. Rather than let it generate and hope, each label's token sequence,
end-of-sequence token included, is scored from the model's log-probabilities after the prompt:
with the handful of labels a taxonomy has, scoring them all is exact, costs one prompt pass
plus one short batch per label, and gives a real probability distribution over the
labels, so the confidence is the answered label's share of it. A GBNF grammar of the label
alternatives would also keep answers inside the taxonomy, but it only yields the sampled
path's token probabilities, and its check against a 262k-token vocabulary cost more than the
answer itself (328 ms against 128 ms a ticket on Gemma 3 270M). An answer outside the taxonomy
cannot happen: only the taxonomy's labels are ever scored.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tui.core.backend import RequestRejected, RouteResult
from tui.core.learning.llm.prompt import PROMPT_TAIL, PROMPT_TEMPLATE, answer, prompt
from tui.core.models import Taxonomy


@dataclass(frozen=True, slots=True)
class Scored:
    """Every label's probability given the prompt, normalised over the taxonomy."""

    probabilities: dict[str, float]
    prompt_tokens: int
    answer_tokens: int

    @property
    def label(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)


def prompt_version(taxonomy: Taxonomy) -> str:
    """Stored with each decision: the trained template and the labels it chose between."""
    digest = hashlib.sha256(PROMPT_TEMPLATE.encode())
    digest.update("\n".join(taxonomy.names).encode())
    return f"ft-{digest.hexdigest()[:10]}"


def prompt_ids(llm: Any, text: str, room: int) -> list[int]:
    """The trained prompt's tokens (with the beginning-of-sequence token), at most `room`.

    A ticket too long for the context is cut at the end of its text, keeping `\\nLabel:`,
    as training cut it.
    """
    ids: list[int] = llm.tokenize(prompt(text).encode(), add_bos=True, special=False)
    if len(ids) <= room:
        return ids
    tail: list[int] = llm.tokenize(PROMPT_TAIL.encode(), add_bos=False, special=False)
    if room <= len(tail) + 1:
        raise RequestRejected(f"n_ctx leaves {room} tokens for the prompt; raise n_ctx")
    return ids[: room - len(tail)] + tail


def label_ids(llm: Any, taxonomy: Taxonomy) -> dict[str, list[int]]:
    """Each label's answer tokens, as training appended them: ` <label>` then end of sequence."""
    eos = int(llm.token_eos())
    return {
        name: [*llm.tokenize(answer(name).encode(), add_bos=False, special=False), eos]
        for name in taxonomy.names
    }


def _log_softmax_at(llm: Any, llama_cpp: Any, index: int) -> np.ndarray[Any, Any]:
    """Next-token log-probabilities at position `index` of the last decoded batch (-1: last)."""
    pointer = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, index)
    logits = np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),))
    top = float(logits.max())
    result: np.ndarray[Any, Any] = logits - (top + math.log(float(np.exp(logits - top).sum())))
    return result


def _decode_all(llm: Any, tokens: list[int], n_past: int) -> None:
    """Evaluate `tokens` after the first `n_past` in one batch, keeping every position's logits.

    llama-cpp-python's `eval` keeps only the last position's, which would take one pass over
    the weights per label token; one batch per label reads them once.
    """
    llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
    llm._batch.set_batch(batch=tokens, n_past=n_past, logits_all=True)
    llm._ctx.decode(llm._batch)


def score(llm: Any, llama_cpp: Any, text: str, taxonomy: Taxonomy, n_ctx: int) -> Scored:
    """Score every label after the trained prompt (the model must be free to use).

    The prompt is evaluated once; its last logits score every label's first token. Each
    label's other tokens are then evaluated in one batch after the prompt (the KV cache cut
    back to the prompt between labels).
    """
    answers = label_ids(llm, taxonomy)
    longest = max(len(ids) for ids in answers.values())
    ids = prompt_ids(llm, text, n_ctx - longest)
    llm.reset()
    llm.eval(ids)
    after_prompt = _log_softmax_at(llm, llama_cpp, -1)
    total: dict[str, float] = {}
    try:
        for name, tokens in answers.items():
            logprob = float(after_prompt[tokens[0]])
            if len(tokens) > 1:
                _decode_all(llm, tokens[:-1], len(ids))
                for position, token in enumerate(tokens[1:]):
                    logprob += float(_log_softmax_at(llm, llama_cpp, position)[token])
            total[name] = logprob
    finally:
        llm.n_tokens = len(ids)
    top = max(total.values())
    weights = {name: math.exp(value - top) for name, value in total.items()}
    norm = sum(weights.values())
    return Scored(
        probabilities={name: weight / norm for name, weight in weights.items()},
        prompt_tokens=len(ids),
        answer_tokens=sum(len(tokens) for tokens in answers.values()),
    )


def result(
    scored: Scored,
    taxonomy: Taxonomy,
    *,
    model: str,
    total_ms: float,
    load_ms: float | None,
    perf: tuple[float | None, float | None],
) -> RouteResult:
    """The decision: the most probable label, its probability as the confidence.

    `raw_output` keeps the top labels' probabilities, which is what the model "said".
    """
    ranked = sorted(scored.probabilities.items(), key=lambda item: -item[1])
    label, confidence = ranked[0]
    raw = ", ".join(f"{name} {p:.3f}" for name, p in ranked[:3])
    return RouteResult(
        label=label,
        confidence=confidence,
        confidence_source="probability",
        raw_output=raw,
        model=model,
        prompt_version=prompt_version(taxonomy),
        input_tokens=scored.prompt_tokens,
        output_tokens=scored.answer_tokens,
        total_ms=total_ms,
        server_load_ms=load_ms,
        server_prompt_ms=perf[0],
        server_gen_ms=perf[1],
    )
