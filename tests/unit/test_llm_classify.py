"""`finetune --objective classify`: one reserved token a label, scored over the labels alone.

The choice of tokens and the files it writes are checked without torch; the whole pipeline
(train, validate, merge, convert, serve through `llamacpp-local`) runs on the tiny random
Gemma 3 of `test_llm_finetune`, whose tokenizer has Gemma's `<unusedN>` pieces.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path

import pytest

from tests.data.make_finetuned_gguf import WORDS, build_base, tickets
from tests.unit.test_llm_finetune import _find_converter
from tui.core.config import load_settings
from tui.core.learning.llm import base, classify, export, label_tokens, pipeline, train
from tui.core.learning.llm.errors import FinetuneError
from tui.core.models import Taxonomy, Ticket


def test_reserved_tokens_are_taken_in_their_numbers_order() -> None:
    vocabulary = {"<unused10>": 20, "<unused2>": 12, "hello": 3, "<unused0>": 10, "<unusedx>": 4}
    assert label_tokens.reserved(vocabulary) == [10, 12, 20]
    assert label_tokens.pick(vocabulary, ["b", "a"]) == {"b": 10, "a": 12}
    with pytest.raises(FinetuneError, match="has 3 for 4 labels; use --objective generate"):
        label_tokens.pick(vocabulary, ["a", "b", "c", "d"])


def test_served_tokens_are_checked_against_the_taxonomy_and_vocabulary() -> None:
    tokens = {"refund": 7, "login": 8, "shipping": 9}
    assert label_tokens.check(tokens, ["login", "refund"], 100) == {"login": [8], "refund": [7]}
    with pytest.raises(ValueError, match="no token for billing: the model was fine-tuned"):
        label_tokens.check(tokens, ["login", "billing"], 100)
    with pytest.raises(ValueError, match="outside the model's 9 tokens: shipping=9"):
        label_tokens.check(tokens, ["shipping"], 9)
    with pytest.raises(ValueError, match="two labels the same token"):
        label_tokens.check({"a": 1, "b": 1}, ["a", "b"], 9)


def test_classify_backend_table_loads_with_its_tokens(tmp_path: Path) -> None:
    gguf = tmp_path / "model-q8_0.gguf"
    tokens = {"card_arrival": 6, "lost or stolen": 7}
    table = export.backend_toml("tiny", gguf, "model@abc", tokens)
    assert tomllib.loads(table)["backends"]["tiny"]["label_tokens"] == tokens
    assert "llama-server" not in table
    config = tmp_path / "config.toml"
    config.write_text('[routing]\nbackend = "tiny"\n\n' + table)
    options = load_settings(config).backends["tiny"]
    assert options.label_tokens == tokens and options.prompt == "finetuned"
    text = export.modelfile(gguf, tokens)
    assert "PARAMETER num_predict 1" in text and "#   token 7: lost or stolen" in text


def test_label_tokens_need_the_trained_prompt(tmp_path: Path) -> None:
    from tui.core.config import ConfigError

    config = tmp_path / "config.toml"
    config.write_text(
        '[backends.x]\ntype = "llamacpp-local"\nmodel_path = "m.gguf"\n'
        "[backends.x.label_tokens]\nrefund = 3\n"
    )
    with pytest.raises(ConfigError, match='label_tokens needs prompt = "finetuned"'):
        load_settings(config)


@pytest.fixture(scope="module")
def heavy() -> None:
    for module in ("torch", "transformers", "peft", "sentencepiece", "gguf", "llama_cpp"):
        pytest.importorskip(module)


@pytest.fixture(scope="module")
def tiny_base(heavy: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_base(tmp_path_factory.mktemp("tiny-classify") / "base", reserved=4)


def _route(config: Path, texts: list[str]) -> list[str]:
    """Each text's label through the configured `llamacpp-local` backend, as the app routes."""
    from backends.llamacpp_local import LlamaCppLocalBackend

    settings = load_settings(config)
    backend = LlamaCppLocalBackend(settings.backends["tiny"])
    taxonomy = Taxonomy.from_names(sorted(WORDS))

    async def run() -> list[str]:
        try:
            results = await asyncio.gather(
                *(backend.route(Ticket(id=f"t{i}", text=t), taxonomy) for i, t in enumerate(texts))
            )
        finally:
            await backend.aclose()
        return [r.label for r in results]

    return asyncio.run(run())


def test_classify_pipeline_tiny_gemma3_to_served_gguf(tiny_base: Path, tmp_path: Path) -> None:
    """Full fine-tune on the labels' tokens, then route held-back tickets through the GGUF with
    the table the fine-tune wrote, one at a time and batched."""
    import llama_cpp

    from backends import finetuned_batch, llamacpp_finetuned

    found = _find_converter()
    if found is None:
        pytest.skip("llama.cpp's converter not found")
    out = tmp_path / "out"
    request = pipeline.FinetuneRequest(
        base=str(tiny_base),
        out=out,
        device="cpu",
        method="full",
        objective="classify",
        max_steps=40,
        epochs=100,
        learning_rate=3e-3,
        outtype="f16",
        converter=found,
        name="tiny",
        n_threads=1,
        zero_shot=False,
    )
    report = pipeline.finetune(tickets(24, 5), None, request)
    assert report.objective == "classify"
    assert report.validation_accuracy == 1.0 and report.gguf_validation_accuracy == 1.0
    vocabulary = base.load(str(tiny_base), tmp_path / "cache", "cpu").tokenizer.get_vocab()
    assert report.label_tokens == {
        name: vocabulary[f"<unused{i}>"] for i, name in enumerate(sorted(WORDS))
    }
    assert json.loads((out / "report.json").read_text())["label_tokens"] == report.label_tokens
    table = (out / "backend.toml").read_text()
    tokens = report.label_tokens
    texts = [e.text for e in tickets(4, 11)]
    gold = [e.label for e in tickets(4, 11)]
    llm = export.load_gguf(out / "model-f16.gguf", n_threads=1)
    try:
        checked = [export.label_with(llm, text, report.label_tokens) for text in texts]
        llamacpp_finetuned.open_for_scoring(llm, llama_cpp, 64)
        taxonomy = Taxonomy.from_names(sorted(WORDS))
        for at_once in (True, False):  # the GPU's one pass and the CPU's groups
            scored = finetuned_batch.score_many(
                llm, llama_cpp, texts, taxonomy, 512, at_once=at_once, own_tokens=tokens
            )
            assert [s.label for s in scored] == checked
    finally:
        llm.close()
    assert sum(c == g for c, g in zip(checked, gold, strict=True)) >= len(gold) - 1
    for scoring in ("full", "constrained"):
        config = tmp_path / f"{scoring}.toml"
        config.write_text(
            '[routing]\nbackend = "tiny"\n\n'
            + table.replace(
                'prompt = "finetuned"\n', f'prompt = "finetuned"\nlabel_scoring = "{scoring}"\n'
            )
        )
        assert _route(config, texts) == checked


def test_lora_trains_the_label_rows_and_merges_them(tiny_base: Path, tmp_path: Path) -> None:
    """Under LoRA the labels' rows train through peft's trainable tokens (tied to the output
    layer) and the merged model answers as the wrapped one did."""
    import torch

    loaded = base.load(str(tiny_base), tmp_path, "cpu")
    tokens = label_tokens.pick(loaded.tokenizer.get_vocab(), sorted(WORDS))
    rows = list(tokens.values())
    examples = tickets(8, 2)
    options = train.TrainOptions(
        method="lora", objective="classify", max_steps=4, lora_r=4, learning_rate=1e-2
    )
    classify.init_rows(loaded.model, loaded.tokenizer, tokens)  # as `train` starts
    initial = loaded.model.get_input_embeddings().weight[rows].detach().clone()
    result = train.train(
        loaded.model, loaded.tokenizer, examples, options, device="cpu", label_tokens=tokens
    )
    texts = [e.text for e in tickets(3, 9)]
    wrapped = classify.predict(result.model, loaded.tokenizer, texts, tokens, device="cpu")
    merged = export.merge(result.model)
    after = merged.get_input_embeddings().weight[rows].detach()
    assert not torch.allclose(initial, after)
    assert torch.equal(merged.get_input_embeddings().weight, merged.lm_head.weight)
    assert classify.predict(merged, loaded.tokenizer, texts, tokens, device="cpu") == wrapped


def test_label_probs_are_read_checked_and_normalised(tmp_path: Path) -> None:
    from tui.core.learning.llm import data

    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps({"text": "where is my box", "label": "shipping"})
        + "\n"
        + json.dumps(
            {"text": "refund me", "label": "refund", "label_probs": {"refund": 3, "login": 1}}
        )
        + "\n"
    )
    plain, taught = data.read_labelled(good)
    assert plain.teacher is None and taught.teacher == {"refund": 0.75, "login": 0.25}
    sheet = tmp_path / "good.csv"
    sheet.write_text('text,label,label_probs\nrefund me,refund,"{""refund"": 1}"\nhi,login,\n')
    assert [e.teacher for e in data.read_labelled(sheet)] == [{"refund": 1.0}, None]
    for probs, said in [
        ([0.5, 0.5], "must be an object of label: probability"),
        ({"refund": -0.1, "login": 1}, "label_probs\\['refund'\\] must be a number >= 0"),
        ({"refund": "high"}, "must be a number >= 0"),
        ({"refund": True}, "must be a number >= 0"),
        ({"refund": float("nan")}, "must be a number >= 0"),
        ({"refund": 10**400}, "must be a number >= 0"),
        ({"refund": 1e308, "login": 1e308}, "label_probs sums past the largest number"),
        ({"refund": 0, "login": 0}, "label_probs sums to 0"),
        ({" ": 1}, "empty label name"),
    ]:
        bad = tmp_path / "bad.jsonl"
        line = json.dumps({"text": "refund me", "label": "refund", "label_probs": probs})
        bad.write_text('{"text": "fine", "label": "login"}\n' + line + "\n")
        with pytest.raises(FinetuneError, match=rf"bad.jsonl: row 2: .*{said}"):
            data.read_labelled(bad)
    broken = tmp_path / "bad.csv"
    broken.write_text("text,label,label_probs\nrefund me,refund,{oops\n")
    with pytest.raises(FinetuneError, match="bad.csv: row 1: label_probs is not JSON"):
        data.read_labelled(broken)


def test_a_teachers_distribution_is_what_the_model_learns(tiny_base: Path, tmp_path: Path) -> None:
    """Each ticket's teacher puts its mass on the next label round (refund -> shipping ...).
    With the whole loss on the teacher the model answers the teacher's label; with none of it,
    the ticket's own: the soft targets are what moved it, not the labels."""
    from dataclasses import replace

    names = sorted(WORDS)
    rotated = {name: names[(i + 1) % len(names)] for i, name in enumerate(names)}
    examples = [replace(e, teacher={rotated[e.label]: 1.0}) for e in tickets(8, 2)]
    texts = [e.text for e in tickets(3, 9)]
    gold = [e.label for e in tickets(3, 9)]
    answers = {}
    for weight in (0.0, 1.0):
        loaded = base.load(str(tiny_base), tmp_path, "cpu")
        tokens = label_tokens.pick(loaded.tokenizer.get_vocab(), names)
        options = train.TrainOptions(
            method="full",
            objective="classify",
            max_steps=40,
            epochs=100,
            learning_rate=3e-3,
            distill_weight=weight,
        )
        result = train.train(
            loaded.model, loaded.tokenizer, examples, options, device="cpu", label_tokens=tokens
        )
        answers[weight] = classify.predict(
            result.model, loaded.tokenizer, texts, tokens, device="cpu"
        )
    assert sum(a == g for a, g in zip(answers[0.0], gold, strict=True)) >= len(gold) - 1
    taught = [rotated[g] for g in gold]
    assert sum(a == t for a, t in zip(answers[1.0], taught, strict=True)) >= len(gold) - 1
