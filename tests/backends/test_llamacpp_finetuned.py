"""`llamacpp-local` with `prompt = "finetuned"` on a real fine-tuned GGUF, no torch needed.

`tests/data/tiny_finetuned.gguf` (200 kB) is a two-layer Gemma 3 fine-tuned by the pipeline on
three labels until it answers every held-back ticket; `tests/data/make_finetuned_gguf.py`
regenerates it (with the `finetune` extra). Here it is only read, by the real llama-cpp-python.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from backends import llamacpp_finetuned
from backends.llamacpp_local import LlamaCppLocalBackend
from tests.backends.conftest import backend_config
from tests.data.make_finetuned_gguf import WORDS, tickets
from tui.core.config import ConfigError, load_settings
from tui.core.learning.llm.data import answer, prompt
from tui.core.llama_buffers import open_llama
from tui.core.models import Taxonomy, Ticket

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (dev group) runs the model")

GGUF = Path(__file__).parents[1] / "data" / "tiny_finetuned.gguf"
TAXONOMY = Taxonomy.from_names(list(WORDS))


def _tickets(per_label: int, seed: int) -> list[tuple[str, str]]:
    """Tickets in the words the model was trained on (a seed it never saw)."""
    return [(e.text, e.label) for e in tickets(per_label, seed)]


def _backend(**values: Any) -> LlamaCppLocalBackend:
    settings = {"model_path": str(GGUF), "n_threads": 1, "n_ctx": 512, **values}
    return LlamaCppLocalBackend(backend_config("llamacpp-local", name="tiny", **settings))


def _route_all(backend: LlamaCppLocalBackend, texts: list[str], taxonomy: Taxonomy) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return [
                await backend.route(Ticket(id=str(i), text=text), taxonomy)
                for i, text in enumerate(texts)
            ]
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_finetuned_prompt_routes_every_ticket_to_its_label() -> None:
    tickets = _tickets(4, 99)
    results = _route_all(_backend(prompt="finetuned"), [t for t, _ in tickets], TAXONOMY)
    assert [r.label for r in results] == [label for _, label in tickets]
    for result in results:
        assert result.confidence is not None and 0.0 < result.confidence <= 1.0
        assert result.confidence > 0.5 and result.confidence_source == "probability"
        assert result.prompt_version == llamacpp_finetuned.prompt_version(TAXONOMY)
        assert result.input_tokens is not None and result.input_tokens > 5
        assert result.raw_output is not None and result.raw_output.startswith(result.label)
        assert result.model == "tiny_finetuned" and result.total_ms is not None


def test_an_answer_outside_the_taxonomy_is_impossible() -> None:
    """Without the model's favourite label, or with a label it never learned, it still
    answers from the taxonomy it is given, and the probabilities over it add up to 1."""
    shipping = [t for t, label in _tickets(3, 7) if label == "shipping"]
    narrowed = Taxonomy.from_names(["login", "refund", "warranty claim"])
    results = _route_all(_backend(prompt="finetuned"), shipping, narrowed)
    assert {r.label for r in results} <= set(narrowed.names)
    llm = open_llama(llama_cpp, model_path=str(GGUF), n_ctx=512, n_threads=1, verbose=False)
    try:
        scored = llamacpp_finetuned.score(llm, llama_cpp, shipping[0], narrowed, 512)
    finally:
        llm.close()
    assert set(scored.probabilities) == set(narrowed.names)
    assert math.isclose(sum(scored.probabilities.values()), 1.0, rel_tol=1e-9)


def test_label_scores_are_the_models_exact_sequence_log_probabilities() -> None:
    """Reusing the prompt's KV cache between labels gives what evaluating prompt + label
    from scratch, with every position's logits, gives."""
    text = "hello, parcel money password late box, please help"
    fast = open_llama(llama_cpp, model_path=str(GGUF), n_ctx=512, n_threads=1, verbose=False)
    full = open_llama(
        llama_cpp, model_path=str(GGUF), n_ctx=512, n_threads=1, logits_all=True, verbose=False
    )
    try:
        scored = llamacpp_finetuned.score(fast, llama_cpp, text, TAXONOMY, 512)
        expected = {}
        for name in TAXONOMY.names:
            head = full.tokenize(prompt(text).encode(), add_bos=True)
            tail = [*full.tokenize(answer(name).encode(), add_bos=False), full.token_eos()]
            full.reset()
            full.eval(head + tail[:-1])
            total = 0.0
            for j, token in enumerate(tail):
                row = full.scores[len(head) - 1 + j].astype(float)
                top = row.max()
                total += row[token] - top - math.log(sum(math.exp(v - top) for v in row))
            expected[name] = total
    finally:
        fast.close()
        full.close()
    norm = math.log(sum(math.exp(v) for v in expected.values()))
    for name, value in expected.items():
        assert scored.probabilities[name] == pytest.approx(math.exp(value - norm), rel=1e-3)


def test_a_ticket_longer_than_the_context_is_cut_and_still_answered() -> None:
    text = "hello, " + "password account locked " * 300 + "please help"
    [result] = _route_all(_backend(prompt="finetuned", n_ctx=128), [text], TAXONOMY)
    assert result.label == "login" and result.input_tokens is not None
    assert result.input_tokens <= 128


def test_prompt_option_defaults_to_chat_and_rejects_other_words(tmp_path: Path) -> None:
    assert _backend().config.prompt == "chat"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[backends.tiny]\ntype = "llamacpp-local"\nmodel_path = "{GGUF}"\nprompt = "free"\n'
    )
    with pytest.raises(ConfigError, match="prompt"):
        load_settings(config)
