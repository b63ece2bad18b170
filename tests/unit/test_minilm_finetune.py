"""Fine-tuning a (tiny, random) BERT with and without soft targets, a step budget, the
device choice, and the finetuned kind end to end: real torch on the CPU.

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

from tests.unit.tiny_encoder import VOCAB, make_data, tiny_tokenizer
from tui.core.learning.bert_torch import BertShape, random_bert
from tui.core.learning.finetuned_kind import ENCODER_ENV, MAX_STEPS_ENV, MINILM_DIR_ENV
from tui.core.learning.minilm_finetune import (
    FinetuneConfig,
    Finetuned,
    finetune,
    predict_logits,
    resolve_device,
)
from tui.core.learning.model import SpecialistModel, TrainingError

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


def test_a_step_budget_stops_training_early(base_dir: Path) -> None:
    texts, labels = make_data(80)  # 10 steps an epoch at batch 8
    budget = FinetuneConfig(**{**CONFIG.__dict__, "max_steps": 3})
    result = finetune(texts, labels, base_dir, config=budget, device="cpu")
    assert len(result.log) == 1 and result.config["finetune"]["max_steps"] == 3
    full = finetune(texts, labels, base_dir, config=CONFIG, device="cpu")
    assert len(full.log) == CONFIG.epochs


def test_devices_resolve_to_what_torch_sees() -> None:
    import torch

    seen = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == seen and resolve_device(None) == seen
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(TrainingError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="sees no GPU"):
            resolve_device("cuda")


def test_finetuned_kind_trains_on_the_chosen_device_end_to_end(
    base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SpecialistModel.train(kind="finetuned", device="cpu"): torch fine-tunes the base
    model, torch.onnx exports it, onnxruntime quantises it to int8, and the saved model
    routes from whole files."""
    monkeypatch.setenv(MINILM_DIR_ENV, str(base_dir))
    monkeypatch.setenv(MAX_STEPS_ENV, "20")  # of 30: 3 batches of 32 an epoch, 10 epochs
    monkeypatch.delenv(ENCODER_ENV, raising=False)
    texts, labels = make_data(80)
    model = SpecialistModel.train(texts, labels, kind="finetuned", device="cpu")
    assert model.pipeline.device == "cpu"
    assert model.pipeline.trained_on.startswith("fine-tuned on cpu for 20 steps")
    encoder = json.loads((model.pipeline.encoder_dir / "encoder.json").read_text())
    assert encoder["int8"] is True and encoder["classes"] == sorted(set(labels))
    path = tmp_path / "m.joblib"
    model.save(path)
    (artifacts,) = path.parent.glob("m.artifacts-*")
    assert sorted(p.name for p in (artifacts / "encoder").iterdir()) == [
        "encoder.json",
        "model.onnx",
        "tokenizer.json",
    ]
    loaded = SpecialistModel.load(path)
    test_texts, test_labels = make_data(40, seed=7)
    predicted = [label for label, _ in loaded.predict(test_texts)]
    assert predicted == [label for label, _ in model.predict(test_texts)]
    # 20 steps at the MiniLM learning rate barely move a random tiny model: above chance only.
    assert np.mean(np.array(predicted) == np.array(test_labels)) > 0.6
    with pytest.raises(TrainingError, match="unknown device"):
        SpecialistModel.train(texts, labels, kind="finetuned", device="tpu")
