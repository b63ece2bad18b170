"""The training-time teacher of the fewshot kind, offline and without torch: the MPNet graph
written from weights (checked against MPNet written out in numpy, relative-position buckets
and all), the teacher's settings, and a fewshot training whose pool guesses come from a tiny
random MPNet, served afterwards without the teacher's weights."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")

from tests.unit.tiny_encoder import CONFIG, SHAPE, VOCAB, make_data, tiny_tokenizer
from tui.core.learning.bert_torch import random_bert
from tui.core.learning.fewshot_kind import CONTRASTIVE_ENV
from tui.core.learning.finetuned_kind import MINILM_DIR_ENV
from tui.core.learning.model import SpecialistModel, TrainingError
from tui.core.learning.mpnet_graph import MpnetShape, mpnet_graph_onnx, relative_buckets
from tui.core.learning.pool_teacher import (
    CONFIDENCE_CAP,
    FP32_KEPT,
    TEACHER_ENV,
    TEACHER_MAX_UNLABELLED,
    cross_fitted,
    guess_weights,
    pool_cap,
    quantize_teacher,
    side_by_side,
    teacher_dir,
)
from tui.core.learning.semi_supervised import MAX_UNLABELLED, MIN_UNLABELLED, Spread

TINY = MpnetShape(hidden=24, heads=3, layers=2, buckets=32, padding_idx=1)
MAX_LENGTH = 64


def random_mpnet(shape: MpnetShape, vocab: int, seed: int) -> dict[str, np.ndarray]:
    """MPNet weights under the names all-mpnet-base-v2's safetensors uses, random."""
    rng = np.random.default_rng(seed)
    h, inner = shape.hidden, 4 * shape.hidden

    def r(*dims: int) -> np.ndarray:
        return rng.normal(0, 0.3, dims).astype(np.float32)

    w = {
        "embeddings.word_embeddings.weight": r(vocab, h),
        "embeddings.position_embeddings.weight": r(MAX_LENGTH + shape.padding_idx + 1, h),
        "embeddings.LayerNorm.weight": 1 + r(h),
        "embeddings.LayerNorm.bias": r(h),
        "encoder.relative_attention_bias.weight": 2 * r(shape.buckets, shape.heads),
    }
    for i in range(shape.layers):
        p = f"encoder.layer.{i}."
        for name in ("q", "k", "v", "o"):
            w[p + f"attention.attn.{name}.weight"], w[p + f"attention.attn.{name}.bias"] = (
                r(h, h),
                r(h),
            )
        w[p + "attention.LayerNorm.weight"], w[p + "attention.LayerNorm.bias"] = 1 + r(h), r(h)
        w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"] = r(inner, h), r(inner)
        w[p + "output.dense.weight"], w[p + "output.dense.bias"] = r(h, inner), r(h)
        w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"] = 1 + r(h), r(h)
    return w


def bucket(relative: int, buckets: int = 32, max_distance: int = 128) -> int:
    """One relative position's bucket, written as transformers' MPNet writes it, scalar."""
    n = -relative
    half = buckets // 2
    out = half if n < 0 else 0
    n = abs(n)
    exact = half // 2
    if n < exact:
        return out + n
    large = exact + int(math.log(n / exact) / math.log(max_distance / exact) * (half - exact))
    return out + min(large, half - 1)


def numpy_mpnet(
    w: dict[str, np.ndarray], shape: MpnetShape, ids: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """MPNet's mean-pooled embedding in numpy, positions as transformers numbers them."""

    def ln(x: np.ndarray, p: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + shape.eps) * w[p + ".weight"] + w[p + ".bias"]

    def lin(x: np.ndarray, p: str) -> np.ndarray:
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    b, t = ids.shape
    h, hd = shape.heads, shape.hidden // shape.heads
    real = mask.astype(np.int64)
    positions = np.cumsum(real, axis=1) * real + shape.padding_idx  # padding rows: masked
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][positions]
    )
    x = ln(x, "embeddings.LayerNorm")
    table = np.array([[bucket(j - i) for j in range(t)] for i in range(t)])
    rel = w["encoder.relative_attention_bias.weight"][table].transpose(2, 0, 1)[None]
    bias = rel + ((1.0 - mask) * -10000.0)[:, None, None, :]
    erf = np.vectorize(math.erf)
    for i in range(shape.layers):
        p = f"encoder.layer.{i}."

        def split(a: np.ndarray) -> np.ndarray:
            return a.reshape(b, t, h, hd).transpose(0, 2, 1, 3)

        q, k, v = (split(lin(x, p + f"attention.attn.{n}")) for n in ("q", "k", "v"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, t, shape.hidden)
        x = ln(lin(ctx, p + "attention.attn.o") + x, p + "attention.LayerNorm")
        inner = lin(x, p + "intermediate.dense")
        inner = 0.5 * inner * (1 + erf(inner / np.sqrt(2)))
        x = ln(lin(inner, p + "output.dense") + x, p + "output.LayerNorm")
    return np.asarray((x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True))


def test_relative_buckets_are_mpnets() -> None:
    table = relative_buckets(MAX_LENGTH)
    assert table.shape == (MAX_LENGTH, MAX_LENGTH)
    for i, j in [(0, 0), (0, 1), (1, 0), (0, 7), (0, 8), (0, 20), (40, 3), (3, 63), (63, 0)]:
        assert table[i, j] == bucket(j - i), (i, j)
    assert table.min() == 0 and table.max() == bucket(63) == 29  # 31 only past 128 apart


def test_mpnet_graph_written_without_torch_is_mpnet(tmp_path: Path) -> None:
    import onnxruntime as ort

    weights = random_mpnet(TINY, vocab=30, seed=3)
    path = mpnet_graph_onnx(weights, TINY, tmp_path / "m.onnx", max_length=MAX_LENGTH)
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 30, (3, 12))  # 12 tokens: buckets past the exact ones are used
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    session = ort.InferenceSession(str(path))
    (embedding,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    expected = numpy_mpnet(weights, TINY, ids, mask.astype(np.float64))
    assert np.abs(embedding - expected).max() < 1e-3 * np.abs(expected).max()
    (alone,) = session.run(None, {"input_ids": ids[1:2, :5], "attention_mask": mask[1:2, :5]})
    assert np.abs(alone[0] - embedding[1]).max() < 1e-4  # padding never changes a text


def test_the_teacher_is_int8_but_for_its_feed_forward_outputs(tmp_path: Path) -> None:
    """`quantize_teacher` makes every weight product of MPNet's layers int8 except the second
    of each feed-forward block, whose weights stay fp32 initialisers; the embedding stays
    close to the fp32 graph's."""
    import onnx
    import onnxruntime as ort

    weights = random_mpnet(TINY, vocab=30, seed=3)
    fp32 = mpnet_graph_onnx(weights, TINY, tmp_path / "m.onnx", max_length=MAX_LENGTH)
    int8 = quantize_teacher(fp32, tmp_path / "m8.onnx")
    graph = onnx.load(str(int8)).graph
    kept = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    for layer in range(TINY.layers):
        assert f"encoder.layer.{layer}.{FP32_KEPT}.weight_t" in kept
        assert f"encoder.layer.{layer}.intermediate.dense.weight_t" not in kept  # int8 now
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) == 5 * TINY.layers
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 30, (4, 12))
    mask = np.ones_like(ids)
    feed = {"input_ids": ids, "attention_mask": mask}
    (a,) = ort.InferenceSession(str(fp32)).run(None, feed)
    (b,) = ort.InferenceSession(str(int8)).run(None, feed)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.98


def test_teacher_settings_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEACHER_ENV, raising=False)
    assert teacher_dir() is None
    monkeypatch.setenv(TEACHER_ENV, "off")
    assert teacher_dir() is None
    monkeypatch.setenv(TEACHER_ENV, str(tmp_path))
    with pytest.raises(TrainingError, match="no model.safetensors"):
        teacher_dir()
    for name in ("model.safetensors", "tokenizer.json"):
        (tmp_path / name).write_text("x")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(TrainingError, match="expected 'mpnet'"):
        teacher_dir()


def test_guesses_weigh_by_how_sure_the_spreading_was() -> None:
    weights = guess_weights(np.array([0.0, 0.2, 0.4, 0.6, 1.0]), 0.5)
    assert weights[2] == pytest.approx(0.5)  # the median guess counts as before
    assert weights[0] == 0.0 and weights[1] < weights[2] < weights[3]
    assert weights[4] == pytest.approx(0.5 * CONFIDENCE_CAP)  # 2.5x the median, capped
    assert (guess_weights(np.zeros(3), 0.5) == 0.5).all()  # nothing to tell them apart
    joined = side_by_side(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32)[::-1])
    assert np.linalg.norm(joined, axis=1) == pytest.approx([1.0, 1.0])
    assert float(joined[0] @ joined[1]) == pytest.approx(0.0)  # the mean of 0 and 0


def test_a_cross_fitted_regression_corrects_the_spreadings_wrong_guesses() -> None:
    """Two well-apart clusters; the spreading got 12 tickets of one part of the pool wrong,
    though not very sure of it. The regression answering for that part learnt only the labels
    and the other part's guesses, so it is not taught those mistakes and overrules them; the
    guesses it agrees with keep their label and grow surer."""
    rng = np.random.default_rng(4)

    def cluster(centre: list[float], n: int) -> np.ndarray:
        return np.asarray(centre) + rng.normal(0, 0.15, (n, 2))

    rows = np.vstack([cluster([1, 0], 3), cluster([-1, 0], 3)])
    targets = ["a"] * 3 + ["b"] * 3
    pool = np.vstack([cluster([1, 0], 200), cluster([-1, 0], 200)])
    truth = np.array(["a"] * 200 + ["b"] * 200)
    scores = np.where(truth[:, None] == np.array(["a", "b"]), 0.9, 0.1)
    part = np.random.default_rng(0).permutation(len(pool)) % 2
    wrong = np.flatnonzero(part == 0)[:12]
    scores[wrong] = np.where(truth[wrong, None] == np.array(["a", "b"]), 0.4, 0.6)
    spread = Spread(np.array(["a", "b"])[scores.argmax(axis=1)], scores.max(axis=1), scores)
    assert (spread.labels != truth).sum() == 12
    mixed = cross_fitted(rows, targets, pool, spread, ["a", "b"], 0.5)
    assert (mixed.labels == truth).all()
    assert mixed.scores is not None and np.allclose(mixed.scores.sum(axis=1), 1.0)
    right = np.setdiff1d(np.arange(len(pool)), wrong)
    assert (mixed.confidence[right] > 0.9).mean() > 0.9  # a second yes: surer than 0.9
    with pytest.raises(ValueError, match="no scores"):
        cross_fitted(rows, targets, pool, Spread(spread.labels, spread.confidence), ["a", "b"], 0.5)


def test_the_pool_is_larger_when_the_teacher_guesses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TEACHER_ENV, raising=False)
    assert pool_cap() == MAX_UNLABELLED
    monkeypatch.setenv(TEACHER_ENV, str(tmp_path / "missing"))
    assert pool_cap() == MAX_UNLABELLED  # a bad folder: none here, the training says why
    for name in ("model.safetensors", "tokenizer.json"):
        (tmp_path / name).write_text("x")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mpnet"}))
    monkeypatch.setenv(TEACHER_ENV, str(tmp_path))
    assert pool_cap() == TEACHER_MAX_UNLABELLED > MAX_UNLABELLED


@pytest.fixture
def tiny_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A random two-layer 'MiniLM' as the base and a random two-layer 'MPNet' as teacher."""
    from safetensors.numpy import save_file

    base = tmp_path / "minilm"
    base.mkdir()
    bert = random_bert(SHAPE, vocab=len(VOCAB), positions=32, seed=7)
    save_file(bert, base / "model.safetensors")
    (base / "config.json").write_text(json.dumps({**CONFIG, "layer_norm_eps": 1e-12}))
    tiny_tokenizer(base / "tokenizer.json")
    monkeypatch.setenv(MINILM_DIR_ENV, str(base))
    teacher = tmp_path / "mpnet"
    teacher.mkdir()
    save_file(random_mpnet(TINY, vocab=len(VOCAB), seed=11), teacher / "model.safetensors")
    config = {
        "model_type": "mpnet",
        "hidden_size": TINY.hidden,
        "num_attention_heads": TINY.heads,
        "num_hidden_layers": TINY.layers,
        "layer_norm_eps": 1e-5,
        "pad_token_id": 1,
    }
    (teacher / "config.json").write_text(json.dumps(config))
    tiny_tokenizer(teacher / "tokenizer.json")
    monkeypatch.setenv(TEACHER_ENV, str(teacher))
    return teacher


def test_fewshot_guesses_the_pool_with_the_teacher_and_serves_without_it(
    tiny_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tui.core import paths
    from tui.core.learning import pool_teacher, semi_supervised

    monkeypatch.setenv(CONTRASTIVE_ENV, "off")
    # the teacher's pool may be larger than the one MiniLM guesses alone (scaled down here)
    monkeypatch.setattr(semi_supervised, "MAX_UNLABELLED", MIN_UNLABELLED)
    monkeypatch.setattr(pool_teacher, "TEACHER_MAX_UNLABELLED", MIN_UNLABELLED + 20)
    texts, labels = make_data(10)
    pool, _ = make_data(MIN_UNLABELLED + 50, seed=5)
    pool = [f"{t} please {i}" for i, t in enumerate(pool)]
    lines: list[str] = []
    model = SpecialistModel.train(
        texts, labels, kind="fewshot", unlabelled=pool, progress=lines.append
    )
    few = model.pipeline
    taken = MIN_UNLABELLED + 20
    assert few.pool_size == taken
    assert (
        f"spread over {taken} unlabelled tickets"
        " (guessed with the teacher mpnet, cross-fitted)" in few.trained_on
    )
    assert "a second opinion on the guesses (cross-fitted regression)" in lines
    assert f"embedding {10 + 2 + taken} tickets with the teacher encoder" in lines
    cached = list((paths.models_dir() / "encoders").glob("teacher-mpnet-*"))
    assert len(cached) == 1 and (cached[0] / "model.onnx").exists()
    held_texts, held_labels = make_data(60, seed=9)
    predicted = [label for label, _ in model.predict(held_texts)]
    # a random teacher beside a random MiniLM: above chance (0.5) is all this world can ask
    assert np.mean([p == t for p, t in zip(predicted, held_labels, strict=True)]) >= 0.6
    path = tmp_path / "few.joblib"
    model.save(path)
    shutil.rmtree(tiny_models)  # the served model needs none of the teacher
    shutil.rmtree(cached[0])
    monkeypatch.delenv(TEACHER_ENV)
    assert [label for label, _ in SpecialistModel.load(path).predict(held_texts)] == predicted


def test_auto_reads_the_teacher_curve_when_one_is_named(
    tiny_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections import Counter

    from tui.core.learning.auto_kind import CURVE, choose_kind

    counts = Counter({f"intent{i}": 10 for i in range(77)})
    taught = choose_kind(counts, gpu=False, unlabelled=5000)
    assert "guessed with the teacher encoder" in taught.reason
    assert taught.scores["fewshot"] == pytest.approx(CURVE["fewshot-frozen+pool+teacher"][10])
    monkeypatch.setenv(TEACHER_ENV, str(tiny_models / "missing"))  # a bad folder: none here
    alone = choose_kind(counts, gpu=False, unlabelled=5000)
    assert "teacher" not in alone.reason
    assert alone.scores["fewshot"] == pytest.approx(CURVE["fewshot-frozen+pool"][10])


def test_the_teacher_curve_is_the_benchmarks_measured_one() -> None:
    """`auto_kind`'s teacher curve holds the served cascade's means of
    benchmarks/results/fewshot_curve_teacher4.json (three seeds a size, fourth pass)."""
    from tui.core.learning.auto_kind import CURVE

    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    report = json.loads((results / "fewshot_curve_teacher4.json").read_text())
    served = {
        e["per_class"]: e["accuracy_mean"]
        for e in report["table"]
        if e["kind"] == "fewshot-frozen-cascade+pool"
    }
    assert sorted(served) == [5, 10, 20]
    assert all(e["seeds"] == 3 for e in report["table"])
    curve = CURVE["fewshot-frozen+pool+teacher"]
    assert {k: curve[k] for k in served} == pytest.approx(served, abs=5e-4)
