"""Fine-tuning a (tiny, random) BERT with and without soft targets: real torch on the CPU.

torch is not in the default test environment (it is large and only the GPU machine trains);
run these with `uv run --with torch==2.13.0 pytest tests/unit/test_minilm_finetune.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")

from tests.unit.test_specialist_kinds import VOCAB, make_data, tiny_tokenizer
from tui.core.learning.bert_onnx import BertShape, random_bert
from tui.core.learning.minilm_finetune import FinetuneConfig, Finetuned, finetune, predict_logits

SHAPE = BertShape(hidden=16, heads=2, layers=1)
CONFIG = FinetuneConfig(epochs=6, batch_size=8, lr=3e-3, head_lr=3e-2, warmup=0.1)


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    from safetensors.numpy import save_file

    weights = random_bert(SHAPE, vocab=len(VOCAB), positions=32)
    save_file(weights, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(
        json.dumps({"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 1})
    )
    tiny_tokenizer(tmp_path / "tokenizer.json")
    return tmp_path


def accuracy(result: Finetuned, base_dir: Path, texts: list[str], labels: list[str]) -> float:
    logits = predict_logits(result, base_dir, texts)
    return float((np.array(result.classes)[logits.argmax(1)] == np.array(labels)).mean())


def test_finetune_learns_the_labels(base_dir: Path) -> None:
    texts, labels = make_data(80)
    result = finetune(texts, labels, base_dir, config=CONFIG, device="cpu")
    test_texts, test_labels = make_data(40, seed=7)
    assert accuracy(result, base_dir, test_texts, test_labels) >= 0.9
    assert result.log[-1]["loss"] < result.log[0]["loss"]


def test_soft_targets_pull_the_student_towards_the_teacher(base_dir: Path) -> None:
    """A teacher that swaps every label, given all the weight, wins over the hard labels."""
    texts, labels = make_data(80)
    classes = sorted(set(labels))
    swapped = np.array([[1.0, 0.0] if label == classes[1] else [0.0, 1.0] for label in labels])
    config = FinetuneConfig(**{**CONFIG.__dict__, "distill_weight": 1.0})
    result = finetune(texts, labels, base_dir, config=config, device="cpu", soft_targets=swapped)
    test_texts, test_labels = make_data(40, seed=7)
    assert accuracy(result, base_dir, test_texts, test_labels) <= 0.1


def test_soft_targets_of_the_wrong_shape_are_refused(base_dir: Path) -> None:
    texts, labels = make_data(20)
    with pytest.raises(ValueError, match="soft targets"):
        finetune(texts, labels, base_dir, config=CONFIG, device="cpu", soft_targets=np.ones((3, 2)))
