"""`prompt = "finetuned"` for `llamacpp-local`: a GGUF from `triagedesk finetune`, asked the way
it was trained, and answered by scoring every label.

The model learned to read `Ticket: <text>\\nLabel:` (no taxonomy list, so the prompt is short)
and answer ` <label><eos>`. Rather than let it generate and hope, each label's token sequence,
end-of-sequence token included, is scored from the model's log-probabilities after the prompt:
with the handful of labels a taxonomy has, scoring them all is exact, costs one prompt pass
plus one short batch for all labels, and gives a real probability distribution over the
labels, so the confidence is the answered label's share of it. The labels' tokens form a
trie decoded in one batch, one sequence per branch over the prompt's shared KV cells, so a
prefix shared by labels is evaluated once and the weights are read once for all labels.
A GBNF grammar of the label alternatives would also keep answers inside the taxonomy, but it
only yields the sampled path's token probabilities, and its check against a 262k-token
vocabulary cost more than the answer itself (328 ms against 128 ms a ticket on Gemma 3 270M). An
answer outside the taxonomy cannot happen: only the taxonomy's labels are ever scored.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.finetuned_wire import prompt_version
from tui.core.backend import RequestRejected, RouteResult
from tui.core.learning.llm import label_tokens
from tui.core.learning.llm.prompt import answer, prompt_ids
from tui.core.models import Taxonomy

__all__ = ["Scored", "open_for_scoring", "prompt_version", "result", "score"]


@dataclass(frozen=True, slots=True)
class Scored:
    """Every label's probability given the prompt, normalised over the taxonomy."""

    probabilities: dict[str, float]
    prompt_tokens: int
    answer_tokens: int

    @property
    def label(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)


def label_ids(
    llm: Any, taxonomy: Taxonomy, own_tokens: Mapping[str, int] | None = None
) -> dict[str, list[int]]:
    """Each label's answer tokens, as training appended them: ` <label>` then end of sequence;
    with `own_tokens` (a `--objective classify` model) the label's one reserved token.

    Raises:
        RequestRejected: `own_tokens` has no token for a label of the taxonomy, or a bad one.
    """
    if own_tokens is not None:
        try:
            return label_tokens.check(own_tokens, taxonomy.names, int(llm.n_vocab()))
        except ValueError as exc:
            raise RequestRejected(str(exc)) from None
    eos = int(llm.token_eos())
    return {
        name: [*llm.tokenize(answer(name).encode(), add_bos=False, special=False), eos]
        for name in taxonomy.names
    }


def _log_softmax_at(llm: Any, llama_cpp: Any, index: int) -> np.ndarray[Any, Any]:
    """Next-token log-probabilities at position `index` of the last decoded batch (-1: last)."""
    pointer = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, index)
    logits = np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).astype(np.float64)
    top = float(logits.max())
    result: np.ndarray[Any, Any] = logits - (top + math.log(float(np.exp(logits - top).sum())))
    return result


Prefix = tuple[int, ...]
"""A prefix of label answer tokens: a node of the label trie."""


def branches(answers: dict[str, list[int]]) -> list[Prefix]:
    """The trie's branches: each label's tokens but the last (whose logits are never needed),
    keeping only those that are not a prefix of another, in token order (so that branches
    sharing a prefix are neighbours, and land in the same batch when there are several).

    Every evaluated prefix lies on some branch, so one sequence per branch covers them all,
    and a prefix shared by several labels is evaluated once.
    """
    paths = {tuple(tokens[:-1]) for tokens in answers.values() if len(tokens) > 1}
    ordered = sorted(paths, key=lambda path: (-len(path), path))
    kept: list[Prefix] = []
    for path in ordered:
        if not any(other[: len(path)] == path for other in kept):
            kept.append(path)
    return sorted(kept)


def chunks(paths: list[Prefix], n_seq: int, budget: int) -> list[list[Prefix]]:
    """Branches grouped so that one group has at most `n_seq` sequences and its distinct
    prefixes fit one decode batch of `budget` tokens (a single branch always fits)."""
    groups: list[list[Prefix]] = []
    current: list[Prefix] = []
    nodes: set[Prefix] = set()
    for path in paths:
        own = {path[:depth] for depth in range(1, len(path) + 1)}
        if current and (len(current) >= n_seq or len(nodes | own) > budget):
            groups.append(current)
            current, nodes = [], set()
        current.append(path)
        nodes |= own
    if current:
        groups.append(current)
    return groups


ROWS_AT_ONCE = 32
"""Output rows normalised together: bounds the temporary at 32 x vocabulary floats."""


def _row_logsumexp(rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Each row's log-sum-exp (its log-softmax's normaliser), a few rows at a time."""
    out = np.empty(rows.shape[0], dtype=np.float64)
    for start in range(0, rows.shape[0], ROWS_AT_ONCE):
        part = rows[start : start + ROWS_AT_ONCE]
        top = part.max(axis=1, keepdims=True)
        sums = np.exp(part - top).sum(axis=1, dtype=np.float64)
        out[start : start + ROWS_AT_ONCE] = top[:, 0].astype(np.float64) + np.log(sums)
    return out


def _decode_trie(
    llm: Any,
    llama_cpp: Any,
    group: list[Prefix],
    n_prompt: int,
    wanted: dict[Prefix, set[int]],
) -> dict[tuple[Prefix, int], float]:
    """Evaluate every prefix of the group's branches in one batch; the log-probability of
    each token that follows a prefix in some label (`wanted`), keyed by (prefix, token).

    Branch `s` runs in sequence `s`, which first gets the prompt's KV cells (`seq_cp` from
    sequence 0, which costs no copy in a unified cache). A prefix shared by several branches
    is one token of the batch carrying all their sequence ids, at position prompt + depth - 1,
    so each branch attends to the prompt and to its own prefixes only.
    """
    memory = llm._ctx.memory
    llama_cpp.llama_memory_seq_rm(memory, -1, n_prompt, -1)
    for seq in range(1, len(group)):
        llama_cpp.llama_memory_seq_cp(memory, 0, seq, -1, -1)
    owners: dict[Prefix, list[int]] = {}
    for seq, path in enumerate(group):
        for depth in range(1, len(path) + 1):
            owners.setdefault(path[:depth], []).append(seq)
    nodes = sorted(owners, key=lambda node: (len(node), node))  # parents before children
    batch = llama_cpp.llama_batch_init(len(nodes), 0, len(group))
    try:
        for index, node in enumerate(nodes):
            batch.token[index] = node[-1]
            batch.pos[index] = n_prompt + len(node) - 1
            batch.n_seq_id[index] = len(owners[node])
            for slot, seq in enumerate(owners[node]):
                batch.seq_id[index][slot] = seq
            batch.logits[index] = True
        batch.n_tokens = len(nodes)
        status = llama_cpp.llama_decode(llm._ctx.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status} for the label batch")
        pointer = llama_cpp.llama_get_logits(llm._ctx.ctx)
        rows = np.ctypeslib.as_array(pointer, shape=(len(nodes), llm.n_vocab()))
        norms = _row_logsumexp(rows)
        return {
            (node, token): float(rows[i, token]) - float(norms[i])
            for i, node in enumerate(nodes)
            for token in wanted.get(node, ())
        }
    finally:
        llama_cpp.llama_batch_free(batch)


def _sequences(llm: Any, llama_cpp: Any) -> int:
    """How many sequences the context was built for (1 unless `open_for_scoring` ran)."""
    return max(1, int(llama_cpp.llama_n_seq_max(llm._ctx.ctx)))


def score(
    llm: Any,
    llama_cpp: Any,
    text: str,
    taxonomy: Taxonomy,
    n_ctx: int,
    own_tokens: Mapping[str, int] | None = None,
) -> Scored:
    """Score every label after the trained prompt (the model must be free to use).

    The prompt is evaluated once; its last logits score every label's first token. The
    labels' other tokens form a trie whose prefixes are all evaluated in one batch, a
    sequence per branch (see `_decode_trie`); a taxonomy with more branches than the
    context's sequences, or more prefixes than a batch holds, takes a few batches.
    """
    answers = label_ids(llm, taxonomy, own_tokens)
    longest = max(len(ids) for ids in answers.values())
    ids = prompt_ids(llm, text, n_ctx - longest)
    memory = llm._ctx.memory
    llama_cpp.llama_memory_seq_keep(memory, 0)  # no branch of an earlier ticket survives
    llm.reset()
    llm.eval(ids)
    after_prompt = _log_softmax_at(llm, llama_cpp, -1)
    budget = max(1, min(int(llm.n_batch), n_ctx - len(ids)))
    wanted: dict[Prefix, set[int]] = {}
    for tokens in answers.values():
        for depth in range(1, len(tokens)):
            wanted.setdefault(tuple(tokens[:depth]), set()).add(tokens[depth])
    next_logprobs: dict[tuple[Prefix, int], float] = {}
    try:
        for group in chunks(branches(answers), _sequences(llm, llama_cpp), budget):
            next_logprobs.update(_decode_trie(llm, llama_cpp, group, len(ids), wanted))
    finally:
        llama_cpp.llama_memory_seq_keep(memory, 0)
        llama_cpp.llama_memory_seq_rm(memory, 0, len(ids), -1)
        llm.n_tokens = len(ids)
    total = {
        name: float(after_prompt[tokens[0]])
        + sum(
            next_logprobs[tuple(tokens[:depth]), tokens[depth]] for depth in range(1, len(tokens))
        )
        for name, tokens in answers.items()
    }
    return Scored(
        probabilities=normalised(total),
        prompt_tokens=len(ids),
        answer_tokens=sum(len(tokens) for tokens in answers.values()),
    )


def normalised(totals: dict[str, float]) -> dict[str, float]:
    """Labels' log-probabilities to probabilities over the taxonomy, in the order given."""
    top = max(totals.values())
    weights = {name: math.exp(value - top) for name, value in totals.items()}
    norm = sum(weights.values())
    return {name: weight / norm for name, weight in weights.items()}


def open_for_scoring(llm: Any, llama_cpp: Any, n_seq_max: int) -> None:
    """Rebuild `llm`'s context with `n_seq_max` sequences over one unified KV cache.

    llama-cpp-python builds a one-sequence context and has no argument for more; `score`
    needs one per trie branch, all sharing the prompt's cells (a unified cache holds n_ctx
    cells for all of them, where a split one would give each n_ctx / n_seq_max). The
    context parameters are otherwise the ones the Llama object chose.
    """
    from llama_cpp import _internals as internals
    from llama_cpp._utils import suppress_stdout_stderr

    params = llm.context_params
    params.n_seq_max = max(1, min(n_seq_max, int(llama_cpp.llama_max_parallel_sequences())))
    params.kv_unified = True
    old = llm._ctx
    with suppress_stdout_stderr(disable=bool(llm.verbose)):  # as `Llama` loads: quietly
        context = internals.LlamaContext(model=llm._model, params=params, verbose=llm.verbose)
    llm._ctx = llm._stack.enter_context(contextlib.closing(context))
    old.close()
    llm.n_tokens = 0


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
