"""The specialist: training, saving, lazy loading, batch routing, and Banking77 accuracy."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from backends.specialist import SpecialistBackend
from tests.conftest import dataset
from tui.core.backend import LabelNotInTaxonomy, NotTrained
from tui.core.config import BackendConfig
from tui.core.learning.model import SpecialistModel, TrainingError
from tui.core.models import Taxonomy, Ticket

TEXTS = {
    "billing": [
        "I was charged twice",
        "refund my payment",
        "wrong amount on invoice",
        "card charged again",
        "billing error on my card",
        "invoice total is wrong",
    ],
    "shipping": [
        "where is my parcel",
        "tracking shows no update",
        "delivery is late",
        "package lost in transit",
        "courier never came",
        "parcel tracking number",
    ],
}


def small_model() -> SpecialistModel:
    texts = [t for ts in TEXTS.values() for t in ts]
    labels = [label for label, ts in TEXTS.items() for _ in ts]
    return SpecialistModel.train(texts, labels, source="test")


def test_needs_two_labels() -> None:
    with pytest.raises(TrainingError, match="at least 2 different labels"):
        SpecialistModel.train(["a", "b"], ["x", "x"])


def test_tiny_label_sets_still_train() -> None:
    model = SpecialistModel.train(["refund please", "where is my parcel"], ["billing", "shipping"])
    assert model.predict(["refund"])[0][0] in {"billing", "shipping"}


def test_save_load_and_info(tmp_path: Path) -> None:
    model = small_model()
    path = tmp_path / "m.joblib"
    model.save(path)
    info = json.loads(path.with_suffix(".json").read_text())
    assert info["labels"] == ["billing", "shipping"] and info["n_examples"] == 12
    loaded = SpecialistModel.load(path)
    assert loaded.predict(["my card was charged twice"])[0][0] == "billing"


async def test_backend_routes_lazily_with_probabilities(tmp_path: Path) -> None:
    path = tmp_path / "m.joblib"
    backend = SpecialistBackend(BackendConfig(name="specialist", type="specialist", path=str(path)))
    taxonomy = Taxonomy.from_names(["billing", "shipping"])
    with pytest.raises(NotTrained, match="triagedesk train"):
        await backend.route(Ticket(id="1", text="x"), taxonomy)
    assert not (await backend.check()).ok
    small_model().save(path)
    result = await backend.route(Ticket(id="1", text="the parcel tracking has no update"), taxonomy)
    assert result.label == "shipping" and result.confidence_source == "probability"
    assert 0.5 < result.confidence <= 1.0  # type: ignore[operator]
    assert result.cpu_seconds is not None and result.cpu_seconds >= 0
    batch = await backend.route_batch(
        [Ticket(id=str(i), text="charged twice on invoice") for i in range(50)], taxonomy
    )
    assert all(r.label == "billing" for r in batch)  # type: ignore[union-attr]
    assert (await backend.check()).ok


async def test_backend_answers_from_a_narrower_taxonomy(tmp_path: Path) -> None:
    """A model trained on more labels than the taxonomy routes within it; none in common is
    a clear per-ticket error, not a crash."""
    path = tmp_path / "m.joblib"
    texts = [t for ts in TEXTS.values() for t in ts] + ["close my account", "delete my account"]
    labels = [label for label, ts in TEXTS.items() for _ in ts] + ["account", "account"]
    SpecialistModel.train(texts, labels).save(path)
    backend = SpecialistBackend(BackendConfig(name="specialist", type="specialist", path=str(path)))
    ticket = Ticket(id="1", text="close my account please")
    full = await backend.route(ticket, Taxonomy.from_names(["account", "billing", "shipping"]))
    assert full.label == "account"
    narrow = await backend.route(ticket, Taxonomy.from_names(["billing", "shipping"]))
    assert narrow.label in {"billing", "shipping"}
    assert narrow.confidence is not None and narrow.confidence < full.confidence  # type: ignore[operator]
    (result,) = await backend.route_batch([ticket], Taxonomy.from_names(["returns"]))
    assert isinstance(result, LabelNotInTaxonomy)
    assert "knows none of the taxonomy's labels" in str(result)


def test_banking77_holdout_accuracy() -> None:
    rows = [json.loads(line) for line in dataset("banking77/train.jsonl").read_text().splitlines()]
    rng = random.Random(0)
    rng.shuffle(rows)
    cut = int(len(rows) * 0.8)
    train, test = rows[:cut], rows[cut:]
    model = SpecialistModel.train([r["text"] for r in train], [r["label"] for r in train])
    predicted = [label for label, _ in model.predict([r["text"] for r in test])]
    accuracy = sum(p == r["label"] for p, r in zip(predicted, test, strict=True)) / len(test)
    assert accuracy >= 0.88, accuracy
    # one ticket at a time (TfidfScorer, not scikit-learn): the same answer for every ticket
    singles = [model.predict([r["text"]])[0][0] for r in test]
    assert singles == predicted
