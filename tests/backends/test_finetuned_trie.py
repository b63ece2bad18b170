"""The one-batch trie scoring of `prompt = "finetuned"` equals scoring each label on its own.

The reference evaluates prompt + label from scratch for every label, with every position's
logits, on the real tiny fine-tuned GGUF; the trie path must give the same probabilities
with one sequence per branch, with labels sharing token prefixes, and when a taxonomy has
more branches than the context has sequences (chunked into several batches).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import llamacpp_finetuned
from backends.llamacpp_local import SCORING_SEQUENCES, LlamaCppLocalBackend
from tests.backends.conftest import backend_config
from tests.data.make_finetuned_gguf import WORDS, tickets
from tui.core.llama_buffers import open_llama
from tui.core.models import Taxonomy, Ticket

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (dev group) runs the model")

GGUF = Path(__file__).parents[1] / "data" / "tiny_finetuned.gguf"
DEFAULT = Taxonomy.from_names(list(WORDS))
SHARED_PREFIXES = Taxonomy.from_names(
    ["refund", "refund request", "refund late", "login", "login help", "shipping", "ship"]
)


def _llm(**values: Any) -> Any:
    return open_llama(
        llama_cpp, model_path=str(GGUF), n_ctx=512, n_threads=1, verbose=False, **values
    )


@pytest.fixture(scope="module")
def reference_llm() -> Iterator[Any]:
    llm = _llm(logits_all=True)
    yield llm
    llm.close()


def reference(llm: Any, text: str, taxonomy: Taxonomy) -> dict[str, float]:
    """Each label scored on its own: prompt + label evaluated from scratch."""
    head = llamacpp_finetuned.prompt_ids(llm, text, 512)
    totals = {}
    for name, tail in llamacpp_finetuned.label_ids(llm, taxonomy).items():
        llm.reset()
        llm.eval(head + tail[:-1])
        total = 0.0
        for j, token in enumerate(tail):
            row = llm.scores[len(head) - 1 + j].astype(float)
            top = row.max()
            total += row[token] - top - math.log(sum(math.exp(v - top) for v in row))
        totals[name] = total
    norm = math.log(sum(math.exp(v) for v in totals.values()))
    return {name: math.exp(value - norm) for name, value in totals.items()}


def _texts() -> list[str]:
    return [e.text for e in tickets(2, 4242)] + ["hello, refund login parcel, please help"]


def test_labels_sharing_prefixes_make_fewer_branches_than_labels() -> None:
    llm = _llm()
    try:
        answers = llamacpp_finetuned.label_ids(llm, SHARED_PREFIXES)
    finally:
        llm.close()
    paths = llamacpp_finetuned.branches(answers)
    assert len(paths) < len(SHARED_PREFIXES.names)
    for tokens in answers.values():  # every label's prefixes lie on a branch
        assert any(path[: len(tokens) - 1] == tuple(tokens[:-1]) for path in paths)
    groups = llamacpp_finetuned.chunks(paths, 2, 512)
    assert all(len(group) <= 2 for group in groups) and sum(map(len, groups)) == len(paths)
    tight = llamacpp_finetuned.chunks(paths, 64, 1)
    assert len(tight) == len(paths)  # a budget below a branch's prefixes: one branch a batch


@pytest.mark.parametrize(
    ("taxonomy", "sequences"),
    [(DEFAULT, SCORING_SEQUENCES), (SHARED_PREFIXES, SCORING_SEQUENCES), (SHARED_PREFIXES, 2)],
    ids=["default", "shared-prefixes", "more-branches-than-sequences"],
)
def test_trie_scores_equal_per_label_scores(
    reference_llm: Any, taxonomy: Taxonomy, sequences: int
) -> None:
    llm = _llm()
    try:
        llamacpp_finetuned.open_for_scoring(llm, llama_cpp, sequences)
        assert llama_cpp.llama_n_seq_max(llm._ctx.ctx) == sequences
        for text in _texts():
            scored = llamacpp_finetuned.score(llm, llama_cpp, text, taxonomy, 512)
            expected = reference(reference_llm, text, taxonomy)
            for name, probability in expected.items():
                assert scored.probabilities[name] == pytest.approx(probability, abs=1e-4)
    finally:
        llm.close()


def test_backend_builds_a_context_with_a_sequence_per_branch() -> None:
    """The backend's own context scores as the reference does, ticket after ticket (no
    branch of an earlier ticket leaks into the next one's cache)."""
    config = backend_config(
        "llamacpp-local",
        name="tiny",
        model_path=str(GGUF),
        n_threads=1,
        n_ctx=512,
        prompt="finetuned",
    )
    backend = LlamaCppLocalBackend(config)
    texts = _texts()

    async def go() -> list[Any]:
        try:
            out = [
                await backend.route(Ticket(id=str(i), text=t), SHARED_PREFIXES)
                for i, t in enumerate(texts)
            ]
            assert llama_cpp.llama_n_seq_max(backend._llm._ctx.ctx) == SCORING_SEQUENCES
            return out
        finally:
            await backend.aclose()

    results = asyncio.run(go())
    ref = _llm(logits_all=True)
    try:
        for text, result in zip(texts, results, strict=True):
            expected = reference(ref, text, SHARED_PREFIXES)
            best = max(expected, key=expected.__getitem__)
            assert result.label == best
            assert result.confidence == pytest.approx(expected[best], abs=1e-4)
    finally:
        ref.close()
