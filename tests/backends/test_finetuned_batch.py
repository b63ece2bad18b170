"""`label_scoring = "constrained"` scores many tickets at once exactly as a constrained decoder
would score each of them alone.

The reference evaluates prompt + label from scratch for every label on the real tiny
fine-tuned GGUF, with every position's logits, and applies the constrained decoder's rule by
hand: at each token, the share of that token among the tokens some label allows after the same
prefix. The batched path must agree with no pruning, for one ticket and for many at once (more
tickets than one group holds, labels sharing prefixes, a label that is a prefix of another).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from backends import finetuned_batch, llamacpp_finetuned
from tests.backends.test_finetuned_trie import (  # the same real tiny model and taxonomies
    DEFAULT,
    GGUF,
    SHARED_PREFIXES,
    _llm,
    llama_cpp,
    reference_llm,
)
from tests.data.make_finetuned_gguf import tickets
from tui.core.llama_buffers import open_llama
from tui.core.models import Taxonomy

__all__ = ["reference_llm"]  # a fixture, used by name


def constrained_reference(llm: Any, text: str, taxonomy: Taxonomy) -> dict[str, float]:
    """Each label's product, over its tokens, of the token's share among the allowed ones."""
    head = llamacpp_finetuned.prompt_ids(llm, text, 512)
    answers = llamacpp_finetuned.label_ids(llm, taxonomy)
    allowed: dict[tuple[int, ...], set[int]] = {}
    for tokens in answers.values():
        for depth in range(len(tokens)):
            allowed.setdefault(tuple(tokens[:depth]), set()).add(tokens[depth])
    totals = {}
    for name, tail in answers.items():
        llm.reset()
        llm.eval(head + tail[:-1])
        total = 0.0
        for depth, token in enumerate(tail):
            row = llm.scores[len(head) - 1 + depth].astype(float)
            options = sorted(allowed[tuple(tail[:depth])])
            top = max(row[t] for t in options)
            total += row[token] - top - math.log(sum(math.exp(row[t] - top) for t in options))
        totals[name] = total
    norm = math.log(sum(math.exp(v) for v in totals.values()))
    return {name: math.exp(value - norm) for name, value in totals.items()}


def _texts(n: int) -> list[str]:
    return [e.text for e in tickets(n, 4242)] + ["hello, refund login parcel, please help"]


def test_the_tree_keeps_only_branch_points() -> None:
    llm = _llm()
    try:
        answers = llamacpp_finetuned.label_ids(llm, SHARED_PREFIXES)
    finally:
        llm.close()
    tree = finetuned_batch.LabelTree(answers)
    nodes = {tuple(t[:d]) for t in answers.values() for d in range(1, len(t))}
    assert 1 <= tree.branch_points() < len(nodes)
    stack = [tree.root]
    while stack:  # every label sits in exactly one leaf, and leaves have no children
        node = stack.pop()
        if len(node.labels) == 1:
            assert not node.children
        else:
            assert sorted(sum((c.labels for c in node.children.values()), [])) == node.labels
            stack.extend(node.children.values())


@pytest.mark.parametrize(
    ("taxonomy", "sequences", "n"),
    [(DEFAULT, 64, 1), (SHARED_PREFIXES, 64, 12), (SHARED_PREFIXES, 8, 12)],
    ids=["one-ticket", "many-tickets", "groups-and-waves"],
)
def test_batched_constrained_scores_equal_each_ticket_alone(
    reference_llm: Any, taxonomy: Taxonomy, sequences: int, n: int
) -> None:
    llm = _llm()
    texts = _texts(n)
    try:
        llamacpp_finetuned.open_for_scoring(llm, llama_cpp, sequences)
        scored = finetuned_batch.score_many(llm, llama_cpp, texts, taxonomy, 512, min_branch=0.0)
        again = finetuned_batch.score_many(llm, llama_cpp, texts[:1], taxonomy, 512, min_branch=0)
    finally:
        llm.close()
    assert len(scored) == len(texts)
    for text, got in zip(texts, scored, strict=True):
        expected = constrained_reference(reference_llm, text, taxonomy)
        assert sum(got.probabilities.values()) == pytest.approx(1.0)
        for name, probability in expected.items():
            assert got.probabilities[name] == pytest.approx(probability, abs=1e-4), name
    # nothing of an earlier call survives in the cache
    assert again[0].probabilities == pytest.approx(scored[0].probabilities, abs=1e-5)


def test_pruning_keeps_the_answer_and_bounds_what_it_spreads(reference_llm: Any) -> None:
    llm = _llm()
    texts = _texts(6)
    try:
        llamacpp_finetuned.open_for_scoring(llm, llama_cpp, 64)
        pruned = finetuned_batch.score_many(llm, llama_cpp, texts, SHARED_PREFIXES, 512)
    finally:
        llm.close()
    for text, got in zip(texts, pruned, strict=True):
        expected = constrained_reference(reference_llm, text, SHARED_PREFIXES)
        best = max(expected, key=expected.__getitem__)
        assert got.label == best
        for name, probability in expected.items():
            assert abs(got.probabilities[name] - probability) <= finetuned_batch.MIN_BRANCH


def _backend(**values: Any) -> Any:
    from backends.llamacpp_local import LlamaCppLocalBackend
    from tests.backends.conftest import backend_config

    config = backend_config(
        "llamacpp-local",
        name="tiny",
        model_path=str(GGUF),
        n_threads=1,
        n_ctx=512,
        prompt="finetuned",
        label_scoring="constrained",
        **values,
    )
    return LlamaCppLocalBackend(config)


def test_concurrent_tickets_are_scored_in_batches_as_each_alone(reference_llm: Any) -> None:
    """Twelve tickets routed at once through the backend: each gets its own answer (no
    ticket's result lands on another), in fewer batches than tickets."""
    import asyncio

    from tui.core.models import Ticket

    backend = _backend(batch_tickets=5)
    texts = _texts(11)
    calls: list[int] = []
    original = backend._score_many_sync

    def counting(batch: list[str], taxonomy: Taxonomy, run: Any) -> Any:
        calls.append(len(batch))
        return original(batch, taxonomy, run)

    backend._score_many_sync = counting

    async def go() -> list[Any]:
        try:
            return await asyncio.gather(
                *(
                    backend.route(Ticket(id=str(i), text=t), SHARED_PREFIXES)
                    for i, t in enumerate(texts)
                )
            )
        finally:
            await backend.aclose()

    results = asyncio.run(go())
    assert sum(calls) == len(texts) and max(calls) <= 5 and len(calls) < len(texts)
    for text, result in zip(texts, results, strict=True):
        expected = constrained_reference(reference_llm, text, SHARED_PREFIXES)
        best = max(expected, key=expected.__getitem__)
        assert result.label == best
        assert result.confidence == pytest.approx(
            expected[best], abs=2 * finetuned_batch.MIN_BRANCH
        )


def test_a_failing_batch_fails_each_of_its_tickets_and_the_next_batch_runs() -> None:
    import asyncio

    from tui.core.backend import BackendError
    from tui.core.models import Ticket

    backend = _backend()
    original = backend._score_many_sync
    failures = [RuntimeError("llama_decode returned 1")]

    def flaky(batch: list[str], taxonomy: Taxonomy, run: Any) -> Any:
        with backend._model_for(run):
            if failures:
                raise failures.pop()
        return original(batch, taxonomy, run)

    backend._score_many_sync = flaky

    async def go() -> tuple[list[Any], Any]:
        try:
            first = await asyncio.gather(
                *(
                    backend.route(Ticket(id=str(i), text=t), DEFAULT)
                    for i, t in enumerate(_texts(2))
                ),
                return_exceptions=True,
            )
            later = await backend.route(Ticket(id="x", text="refund please"), DEFAULT)
            return first, later
        finally:
            await backend.aclose()

    first, later = asyncio.run(go())
    assert first and all(isinstance(r, BackendError) for r in first)
    assert "llama.cpp failed" in str(first[0])
    assert later.label in DEFAULT.names


WORDS_DEEP = ["arrival", "declined", "fee", "limit", "pending", "reverted", "failed"]
DEEP = Taxonomy.from_names(
    [f"{a}_{b}" for a in ("card", "cash", "top_up", "transfer") for b in WORDS_DEEP]
)
"""Twenty-eight labels in four families that share their first tokens: an unsure (random) model
keeps most branch points above the pruning floor, so few sequences cannot hold them all."""


def test_too_few_sequences_spread_the_least_likely_branches_instead_of_failing() -> None:
    """With 4 sequences every one fills with branch points whose children wait: the scorer
    spreads the least likely ones and answers; the likeliest label is the one that ample
    sequences give, and every distribution covers the taxonomy and sums to 1."""
    texts = _texts(3)
    ample, tight = (
        open_llama(llama_cpp, model_path=str(GGUF), n_ctx=1024, n_threads=1, verbose=False)
        for _ in range(2)
    )
    try:
        llamacpp_finetuned.open_for_scoring(ample, llama_cpp, 64)
        llamacpp_finetuned.open_for_scoring(tight, llama_cpp, 4)
        wide = finetuned_batch.score_many(ample, llama_cpp, texts, DEEP, 1024, min_branch=0.0)
        narrow = finetuned_batch.score_many(tight, llama_cpp, texts, DEEP, 1024, min_branch=0.0)
    finally:
        ample.close()
        tight.close()
    for exact, got in zip(wide, narrow, strict=True):
        assert set(got.probabilities) == set(DEEP.names)
        assert sum(got.probabilities.values()) == pytest.approx(1.0)
        assert got.label == exact.label
    assert any(
        got.probabilities != pytest.approx(exact.probabilities, abs=1e-6)
        for exact, got in zip(wide, narrow, strict=True)
    )  # the tight context did spread something (else the test proves nothing)


@pytest.mark.parametrize(
    ("taxonomy", "sequences", "n"),
    [(DEFAULT, 64, 1), (SHARED_PREFIXES, 64, 6), (SHARED_PREFIXES, 8, 5), (DEEP, 256, 3)],
    ids=["one-ticket", "many-tickets", "several-groups", "deep-taxonomy"],
)
def test_one_pass_scores_every_branch_point_exactly(
    reference_llm: Any, taxonomy: Taxonomy, sequences: int, n: int
) -> None:
    """`at_once`: all branch points in the prompt's decode, each on a sequence its ancestors'
    tokens also belong to; the distribution is the constrained decoder's, unpruned, and the
    same as the level-wise path's with no pruning."""
    texts = _texts(n)
    llm = open_llama(llama_cpp, model_path=str(GGUF), n_ctx=2048, n_threads=1, verbose=False)
    try:
        llamacpp_finetuned.open_for_scoring(llm, llama_cpp, sequences)
        once = finetuned_batch.score_many(llm, llama_cpp, texts, taxonomy, 2048, at_once=True)
        levels = finetuned_batch.score_many(
            llm, llama_cpp, texts, taxonomy, 2048, min_branch=0.0, at_once=False
        )
    finally:
        llm.close()
    assert len(once) == len(texts)
    for text, got, level in zip(texts, once, levels, strict=True):
        assert got.probabilities == pytest.approx(level.probabilities, abs=1e-5)
        if taxonomy is not DEEP:  # the reference evaluates every label from scratch: slow
            expected = constrained_reference(reference_llm, text, taxonomy)
            for name, probability in expected.items():
                assert got.probabilities[name] == pytest.approx(probability, abs=1e-4), name


def test_one_pass_is_chosen_only_for_a_few_tickets_on_a_gpu() -> None:
    """On this CPU build the level-wise path is the default; on a GPU, a few tickets."""

    class Params:
        n_gpu_layers = -1

    class Llm:
        model_params = Params()

    class Gpu:
        @staticmethod
        def llama_supports_gpu_offload() -> bool:
            return True

    assert finetuned_batch._on_gpu(Llm(), Gpu())
    Params.n_gpu_layers = 0
    assert not finetuned_batch._on_gpu(Llm(), Gpu())
