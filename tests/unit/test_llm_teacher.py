"""`finetune --teacher DIR`: encoders fine-tuned first, whose distributions the classify
objective learns. The checks that need no torch run everywhere; the teachers themselves are a
tiny random BERT folder built here with transformers, over the tiny Gemma's ticket world."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.data.make_finetuned_gguf import WORDS, build_base, tickets
from tests.unit.test_llm_finetune import _find_converter
from tui.core.learning.llm import pipeline, teacher
from tui.core.learning.llm.data import Example
from tui.core.learning.llm.errors import FinetuneError


def test_copies_keep_their_label_and_no_ticket() -> None:
    examples = [
        Example(f"where is my parcel number {i} today", "shipping", f"t{i}", i) for i in range(3)
    ]
    copies = teacher.perturbed_copies(examples, 2, seed=5)
    assert len(copies) == 6 and {c.label for c in copies} == {"shipping"}
    assert all(c.ticket_id is None and c.label_event_id is None for c in copies)
    assert copies == teacher.perturbed_copies(examples, 2, seed=5)  # seeded
    assert any(c.text != e.text for c, e in zip(copies, examples * 2, strict=True))
    rng = random.Random(0)
    assert all(teacher.perturb(t, rng).split() for t in ["a", "a b", "one two three four five"])


def test_a_copy_that_spells_a_held_out_ticket_is_dropped() -> None:
    train = [Example("my card never arrived", "card"), Example("My  card never arrived", "card")]
    copy = Example("card never arrived", "card")
    held = [Example("Card never   arrived", "card")]
    assert teacher.drop_seen([*train, copy], held) == train[:1]


def test_a_teacher_folder_must_hold_the_encoder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FinetuneError, match=r"--teacher .*: no model.safetensors there"):
        teacher.check_folder(tmp_path)


def test_teachers_that_cannot_be_used_fail_before_anything_loads(tmp_path: Path) -> None:
    """A `label_probs` row naming an unknown label or given to the generate objective, and a
    `--teacher` that cannot be used, are one line before anything slow: the base named here
    does not exist, so loading it would say so."""
    from dataclasses import replace

    found = _find_converter()
    if found is None:
        pytest.skip("llama.cpp's converter not found")
    folder = tmp_path / "teacher"
    folder.mkdir()
    examples = tickets(6, 3)
    taught = [replace(examples[0], teacher={"refund": 1.0}), *examples[1:]]
    unknown = [replace(examples[0], teacher={"refund": 0.5, "billing": 0.5}), *examples[1:]]
    for rows, objective, folder_given, said in [
        (unknown, "classify", None, "label_probs names 'billing', which is not one of the labels"),
        (
            unknown,
            "generate",
            None,
            "label_probs \\(a teacher's distribution\\) needs --objective classify",
        ),
        (examples, "generate", folder, "--teacher needs --objective classify"),
        (taught, "classify", folder, "--teacher with label_probs rows"),
        (examples, "classify", folder, "no config.json there"),
    ]:
        request = pipeline.FinetuneRequest(
            base=str(tmp_path / "missing.gguf"),
            out=tmp_path / "out",
            device="cpu",
            objective=objective,  # type: ignore[arg-type]
            converter=found,
            teacher=folder_given,
        )
        with pytest.raises(FinetuneError, match=said):
            pipeline.finetune(rows, None, request)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random two-layer BERT that reads the tiny world's words, as an encoder folder."""
    for module in ("torch", "transformers", "tokenizers", "safetensors"):
        pytest.importorskip(module)
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("teacher")
    words = sorted(
        {w for ws in WORDS.values() for w in ws.split()} | {"hello", ",", "please", "help"}
    )
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", *words])}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, pad_token_id=0,
    )  # fmt: skip
    BertModel(config).save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    return folder


def test_teachers_give_every_example_and_copy_a_distribution(tiny_teacher: Path) -> None:
    labels = sorted(WORDS)
    train, held = tickets(10, 1), tickets(4, 21)
    options = teacher.TeacherOptions(tiny_teacher, seeds=2, epochs=12, learning_rate=1e-3)
    said: list[str] = []
    taught = teacher.teach(train, held, labels, options, device="cpu", stage=said.append)
    assert len(train) < len(taught.examples) <= 3 * len(train)
    assert taught.examples[: len(train)] != train  # the originals now carry a teacher
    assert [e.text for e in taught.examples[: len(train)]] == [e.text for e in train]
    held_texts = {" ".join(e.text.split()).casefold() for e in held}
    for example in taught.examples:
        assert example.teacher is not None and set(example.teacher) == set(labels)
        assert sum(example.teacher.values()) == pytest.approx(1.0)
        assert " ".join(example.text.split()).casefold() not in held_texts
    assert len(taught.validation_accuracies) == 2
    assert taught.mean_validation_accuracy >= 0.8  # the words separate the labels
    agree = [max(e.teacher, key=e.teacher.__getitem__) == e.label for e in taught.examples]  # type: ignore[arg-type]
    assert sum(agree) >= 0.8 * len(agree)
    assert said[0] == "training teacher 1 of 2 (" + tiny_teacher.name + ")"
    assert said[-1].startswith("teachers: ")


def test_finetune_with_teachers_writes_what_they_taught(tiny_teacher: Path, tmp_path: Path) -> None:
    for module in ("peft", "sentencepiece", "gguf", "llama_cpp"):
        pytest.importorskip(module)
    found = _find_converter()
    if found is None:
        pytest.skip("llama.cpp's converter not found")
    base = build_base(tmp_path / "base", reserved=4)
    request = pipeline.FinetuneRequest(
        base=str(base),
        out=tmp_path / "out",
        device="cpu",
        method="full",
        objective="classify",
        max_steps=30,
        epochs=100,
        learning_rate=3e-3,
        outtype="f16",
        converter=found,
        name="tiny",
        n_threads=1,
        zero_shot=False,
        teacher=tiny_teacher,
        teacher_seeds=1,
        teacher_epochs=12,
        gguf_check=6,
    )
    stages: list[str] = []
    report = pipeline.finetune(tickets(20, 5), None, request, on_stage=stages.append)
    assert report.teacher == tiny_teacher.name and report.distill_weight == 0.7
    assert report.distilled_examples == report.train_examples > 48  # 48 tickets, plus copies
    assert report.teacher_validation_accuracies and len(report.teacher_validation_accuracies) == 1
    assert report.validation_accuracy >= 0.9
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["teacher_mean_validation_accuracy"] == report.teacher_mean_validation_accuracy
    assert stages.index("training the teachers") < stages.index("loading the base model")
