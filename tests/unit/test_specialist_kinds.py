"""Stronger specialist kinds on small generated data: the torch.onnx export, the fine-tuned
and ensemble kinds (served from a tiny committed ONNX encoder, no torch), the static
embeddings kind, artifacts beside the model, and the error that names the pip extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")

from backends.specialist import SpecialistBackend
from tests.unit.tiny_encoder import (
    FILLER,
    FIXTURE,
    SHAPE,
    VOCAB,
    WORDS,
    build_tiny_encoder,
    copy_fixture,
    make_data,
    tiny_tokenizer,
)
from tui.core.config import BackendConfig
from tui.core.learning.bert_torch import BertShape, bert_module, export_onnx, random_bert
from tui.core.learning.ensemble_kind import CascadeEnsemble
from tui.core.learning.finetuned_kind import ENCODER_ENV, MAX_STEPS_ENV, max_steps_from_env
from tui.core.learning.kinds import build_pipeline
from tui.core.learning.model import SpecialistModel, TrainingError
from tui.core.learning.onnx_encoder import OnnxEncoder, export_encoder, is_weights_dir
from tui.core.models import Taxonomy, Ticket

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def encoder_dir(tmp_path: Path) -> Path:
    """A tiny 'fine-tuned' encoder whose head separates the two labels by their words."""
    return copy_fixture(tmp_path / "encoder")


def test_committed_tiny_encoder_is_what_the_export_writes(tmp_path: Path) -> None:
    """The fixture the serving tests use is the export of today's code, not a stale file."""
    pytest.importorskip("torch")
    fresh = build_tiny_encoder(tmp_path / "fresh")
    texts, _ = make_data(30, seed=2)
    committed = OnnxEncoder(FIXTURE).run(texts)
    again = OnnxEncoder(fresh).run(texts)
    assert np.allclose(committed["logits"], again["logits"], atol=1e-4)
    assert np.allclose(committed["embedding"], again["embedding"], atol=1e-4)


def test_onnx_export_matches_the_torch_module(tmp_path: Path) -> None:
    import onnxruntime as ort

    torch = pytest.importorskip("torch")
    weights = random_bert(SHAPE, vocab=30, positions=16, seed=3)
    path = export_onnx(weights, SHAPE, tmp_path / "m.onnx")
    ids = np.random.default_rng(0).integers(0, 30, (3, 6))
    mask = np.ones_like(ids)
    mask[1, 3:] = 0
    (embedding,) = ort.InferenceSession(str(path)).run(
        None, {"input_ids": ids, "attention_mask": mask}
    )
    with torch.no_grad():
        ref, _ = bert_module(weights, SHAPE, 1).eval()(
            torch.from_numpy(ids), torch.from_numpy(mask)
        )
    assert np.abs(embedding - ref.numpy()).max() < 1e-4
    # padding never changes a text's embedding
    (alone,) = ort.InferenceSession(str(path)).run(
        None, {"input_ids": ids[1:2, :3], "attention_mask": mask[1:2, :3]}
    )
    assert np.abs(alone[0] - embedding[1]).max() < 1e-4


def test_encoder_sorted_batching_keeps_order(encoder_dir: Path) -> None:
    encoder = OnnxEncoder(encoder_dir)
    texts, _ = make_data(30)
    texts[3] = "parcel " * 20  # a long one to reorder the batches
    together = encoder.run(texts, batch_size=4)
    one_by_one = np.vstack([encoder.run([t])["logits"] for t in texts])
    assert np.allclose(together["logits"], one_by_one, atol=1e-4)
    assert encoder.run([])["logits"].shape[0] == 0


def test_int8_export_is_smaller_and_close(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    weights = random_bert(BertShape(hidden=64, heads=2, layers=1), vocab=len(VOCAB))
    config = {"hidden_size": 64, "num_attention_heads": 2, "num_hidden_layers": 1}
    tok = tiny_tokenizer(tmp_path / "tok.json")
    fp32 = export_encoder(weights, config, tok, tmp_path / "fp32", int8=False)
    int8 = export_encoder(weights, config, tok, tmp_path / "int8", int8=True)
    assert (int8 / "model.onnx").stat().st_size < (fp32 / "model.onnx").stat().st_size
    texts, _ = make_data(10)
    a, b = OnnxEncoder(fp32).embed(texts), OnnxEncoder(int8).embed(texts)
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()


def test_finetuned_kind_trains_saves_and_loads(
    encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENCODER_ENV, str(encoder_dir))
    texts, labels = make_data()
    model = SpecialistModel.train(texts, labels, kind="finetuned")
    assert model.predict(["refund charged twice"])[0][0] == "billing"
    path = tmp_path / "models" / "m.joblib"
    model.save(path)
    artifacts = list(path.parent.glob("m.artifacts-*"))
    assert len(artifacts) == 1 and (artifacts[0] / "encoder" / "model.onnx").exists()
    loaded = SpecialistModel.load(path)
    assert loaded.info.kind == "finetuned"
    assert loaded.predict(["where is the parcel tracking"])[0][0] == "shipping"
    loaded.save(path)  # re-saving writes a fresh folder and removes the old one
    again = list(path.parent.glob("m.artifacts-*"))
    assert len(again) == 1 and again != artifacts
    assert SpecialistModel.load(path).predict(["invoice payment"])[0][0] == "billing"


def test_finetuned_kind_takes_a_gpu_runs_weights_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fine-tune's weights folder (fp16 finetuned.safetensors, finetuned.json, tokenizer)
    is usable as is: the int8 graph is exported at training time and predicts like the
    same weights exported directly."""
    pytest.importorskip("torch")
    from safetensors.numpy import save

    config = {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 2}
    weights = random_bert(SHAPE, vocab=len(VOCAB), positions=32, seed=5)
    rng = np.random.default_rng(5)
    head = (rng.standard_normal((2, 16)).astype(np.float32), np.zeros(2, np.float32))
    run = tmp_path / "run"
    run.mkdir()
    blob = save(
        {
            **{k: v.astype(np.float16) for k, v in weights.items()},
            "classifier.weight": head[0].astype(np.float16),
            "classifier.bias": head[1].astype(np.float16),
        }
    )
    (run / "finetuned.safetensors").write_bytes(blob)
    classes = sorted(WORDS)
    (run / "finetuned.json").write_text(json.dumps({"classes": classes, "bert": config}))
    tiny_tokenizer(run / "tokenizer.json")
    direct = export_encoder(
        {k: v.astype(np.float16).astype(np.float32) for k, v in weights.items()},
        config,
        run / "tokenizer.json",
        tmp_path / "direct",
        head=(head[0].astype(np.float16).astype(np.float32), head[1]),
        classes=classes,
    )
    monkeypatch.setenv(ENCODER_ENV, str(run))
    texts, labels = make_data(20)
    model = SpecialistModel.train(texts, labels, kind="finetuned")
    expected = OnnxEncoder(direct).run(texts)["logits"]
    assert np.allclose(model.pipeline.logits(texts), expected, atol=1e-4)
    assert model.pipeline.trained_on == f"reused {run}"
    (run / "finetuned.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(TrainingError, match="cannot export"):
        SpecialistModel.train(texts, labels, kind="finetuned")


def test_finetuned_kind_rejects_an_encoder_of_other_labels(
    encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENCODER_ENV, str(encoder_dir))
    with pytest.raises(TrainingError, match="other labels"):
        SpecialistModel.train(["a b", "c d", "e f"], ["x", "y", "z"], kind="finetuned")


async def test_ensemble_cascade_routes_through_the_backend(
    encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENCODER_ENV, str(encoder_dir))
    texts, labels = make_data(60)
    model = SpecialistModel.train(texts, labels, kind="ensemble")
    ensemble = model.pipeline
    assert isinstance(ensemble, CascadeEnsemble)
    ensemble.threshold = 0.0
    model.predict(texts)
    assert ensemble.last_escalated == 0.0
    ensemble.threshold = 1.01
    assert [p for p, _ in model.predict(texts)].count("billing") > 20
    assert ensemble.last_escalated == 1.0
    ensemble.threshold = 0.0  # the tiny random encoder is weak: let TF-IDF answer the route
    path = tmp_path / "e.joblib"
    model.save(path)
    backend = SpecialistBackend(BackendConfig(name="specialist", type="specialist", path=str(path)))
    result = await backend.route(
        Ticket(id="1", text="parcel delivery late"), Taxonomy.from_names(sorted(WORDS))
    )
    assert result.label == "shipping" and 0.5 < (result.confidence or 0) <= 1
    assert backend.model == model.info.identity  # kind, size and the training set's id
    assert backend.model == f"ensemble:60ex@{model.info.model_id}" and model.info.model_id


def noisy_data(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Tickets whose words come partly from the other label: some are easy, some unsure."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label, other = sorted(WORDS)[i % 2], sorted(WORDS)[1 - i % 2]
        k = int(rng.integers(0, 3))
        words = list(rng.choice(WORDS[label], 3)) + list(rng.choice(WORDS[other], k))
        words += list(rng.choice(FILLER, 2))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


@pytest.mark.parametrize("share", [0.2, 0.6])
def test_ensemble_escalates_the_configured_share_of_new_tickets(
    share: float, encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The threshold comes from out-of-fold confidences on the training data, so on new
    tickets of the same kind about `escalate_share` of them reach MiniLM."""
    from collections import Counter

    monkeypatch.setenv(ENCODER_ENV, str(encoder_dir))
    texts, labels = noisy_data(300, seed=3)
    ensemble = CascadeEnsemble(Counter(labels), escalate_share=share).fit(texts, labels)
    assert ensemble.threshold is not None and 0 < ensemble.threshold < 1
    fresh, _ = noisy_data(400, seed=4)
    ensemble.predict(fresh)
    assert abs(ensemble.last_escalated - share) < 0.12


def test_ensemble_with_too_few_labels_falls_back_to_a_fixed_threshold(
    encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections import Counter

    monkeypatch.setenv(ENCODER_ENV, str(encoder_dir))
    texts, labels = make_data(4)
    ensemble = CascadeEnsemble(Counter(labels)).fit(texts, labels)
    assert ensemble.threshold == CascadeEnsemble.FALLBACK_THRESHOLD


def test_embeddings_kind_with_the_static_model(tmp_path: Path) -> None:
    pytest.importorskip("static_model")
    texts, labels = make_data(40)
    model = SpecialistModel.train(texts, labels, kind="embeddings")
    path = tmp_path / "s.joblib"
    model.save(path)
    loaded = SpecialistModel.load(path)
    assert loaded.predict(["refund for my card payment"])[0][0] == "billing"


def test_unknown_kind_is_a_training_error() -> None:
    with pytest.raises(TrainingError, match="unknown specialist kind"):
        build_pipeline("bogus", __import__("collections").Counter({"a": 2, "b": 2}))


def test_cli_names_the_extra_when_a_package_is_missing(tmp_path: Path) -> None:
    texts, labels = make_data(20)
    data = tmp_path / "l.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"id": str(i), "text": t, "label": lab})
            for i, (t, lab) in enumerate(zip(texts, labels, strict=True))
        )
    )
    # Hide onnxruntime from the child process: a stand-in for an install without the extra.
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "onnxruntime.py").write_text("raise ImportError('blocked for the test')\n")
    (blocker / "torch.py").write_text("raise ImportError('blocked for the test')\n")
    env = {
        **os.environ,
        "TRIAGEDESK_HOME": str(tmp_path / "home"),
        "PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}",
    }
    env.pop(ENCODER_ENV, None)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tui",
            "train",
            "--data",
            str(data),
            "--kind",
            "finetuned",
            "--out",
            str(tmp_path / "m.joblib"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert "triagedesk[embeddings]" in r.stderr


def test_a_step_budget_in_the_environment_must_be_a_whole_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MAX_STEPS_ENV, raising=False)
    assert max_steps_from_env() is None
    monkeypatch.setenv(MAX_STEPS_ENV, " 25 ")
    assert max_steps_from_env() == 25
    for bad in ("0", "-3", "ten", "2.5"):
        monkeypatch.setenv(MAX_STEPS_ENV, bad)
        with pytest.raises(TrainingError, match=MAX_STEPS_ENV):
            max_steps_from_env()


def test_weights_cut_into_parts_are_not_a_weights_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The product reads whole files; `.partNN` pieces are the benchmarks' transfer format
    (benchmarks.weight_parts joins them), and a folder of them is refused with the reason."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "finetuned.safetensors.part00").write_bytes(b"x")
    (run / "finetuned.json").write_text(json.dumps({"classes": sorted(WORDS)}))
    assert not is_weights_dir(run)
    monkeypatch.setenv(ENCODER_ENV, str(run))
    texts, labels = make_data(20)
    with pytest.raises(TrainingError, match="neither an encoder directory"):
        SpecialistModel.train(texts, labels, kind="finetuned")


def test_benchmark_parts_join_into_the_whole_file_the_product_reads(tmp_path: Path) -> None:
    from benchmarks.weight_parts import PART, joined, write_parts

    rng = np.random.default_rng(0)  # fp16 on disk: 2 bytes a value, so this is > 1 part
    weights = {"w": rng.standard_normal((PART // 4 + 10, 2)).astype(np.float32)}
    run = tmp_path / "run"
    run.mkdir()
    names = write_parts(weights, run, "finetuned.safetensors")
    assert len(names) == 2
    (run / "finetuned.json").write_text("{}")
    whole = joined(run, tmp_path / "whole")
    assert is_weights_dir(whole) and joined(whole, tmp_path / "again") == whole
    from safetensors.numpy import load_file

    back = load_file(str(whole / "finetuned.safetensors"))["w"]
    assert np.array_equal(back, weights["w"].astype(np.float16))


def test_ensemble_answers_one_ticket_as_it_does_in_a_batch(
    encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ticket at a time its TF-IDF stage is scored without scikit-learn (`TfidfScorer`);
    the cascade still escalates the same tickets and answers the same labels."""
    from tui.core.learning.tfidf import SMALL_BATCH

    monkeypatch.setenv(ENCODER_ENV, str(encoder_dir))
    texts, labels = noisy_data(90, seed=4)
    model = SpecialistModel.train(texts, labels, kind="ensemble")
    assert len(texts) > SMALL_BATCH
    batch = model.predict(texts)
    escalated = model.pipeline.last_escalated
    singles = [model.predict([text])[0] for text in texts]
    assert 0 < escalated < 1  # both stages answer some of them
    assert [label for label, _ in singles] == [label for label, _ in batch]
    assert [p for _, p in singles] == pytest.approx([p for _, p in batch], abs=1e-9)
