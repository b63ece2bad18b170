"""The TF-IDF specialist's one-ticket path (`TfidfScorer`) answers what scikit-learn answers:
the same probabilities for any text, including one with no known word, for models trained
here; pipelines of another shape go through scikit-learn; a refit or a reload is followed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tui.core.learning.model import SpecialistModel
from tui.core.learning.tfidf import SMALL_BATCH, TfidfScorer, tfidf_proba

TEXTS = {
    "billing": ["I was charged twice", "refund my payment", "wrong amount on invoice"] * 3,
    "shipping": ["where is my parcel", "tracking shows no update", "delivery is late"] * 3,
    "account": ["reset my password", "cannot log in", "change the email on my account"] * 3,
}
PROBES = [
    "charged twice for my parcel",
    "Ünïcödé accents: café refund",
    "zzzz qqqq",  # no known word or character n-gram: scores are the intercepts alone
    "",
    "password password password reset reset",  # repeats: sublinear term frequency
]


def train(texts: dict[str, list[str]]) -> SpecialistModel:
    pairs = [(t, label) for label, ts in texts.items() for t in ts]
    return SpecialistModel.train([t for t, _ in pairs], [label for _, label in pairs])


def test_scorer_matches_scikit_learn_text_by_text() -> None:
    model = train(TEXTS)
    scorer = TfidfScorer.for_pipeline(model.pipeline)
    assert scorer is not None
    for text in PROBES:
        expected = np.asarray(model.pipeline.predict_proba([text]))
        np.testing.assert_allclose(scorer.predict_proba([text]), expected, rtol=0, atol=1e-12)
    many = PROBES * 4
    np.testing.assert_allclose(
        scorer.predict_proba(many), model.pipeline.predict_proba(many), rtol=0, atol=1e-12
    )
    ((label, probability),) = model.predict(["charged twice for my parcel"])
    (batch_label, batch_probability), *_ = model.predict(
        ["charged twice for my parcel"] * (SMALL_BATCH + 1)  # through scikit-learn
    )
    assert label == batch_label and probability == pytest.approx(batch_probability, abs=1e-12)


def test_other_pipeline_shapes_answer_through_scikit_learn() -> None:
    two = train({k: TEXTS[k] for k in ("billing", "shipping")})  # two labels: one calibrator
    assert TfidfScorer.for_pipeline(two.pipeline) is None
    few = train({**TEXTS, "other": ["something else entirely"]})  # logistic regression
    assert TfidfScorer.for_pipeline(few.pipeline) is None
    for model in (two, few):
        np.testing.assert_array_equal(
            tfidf_proba(model.pipeline, PROBES[:1]), model.pipeline.predict_proba(PROBES[:1])
        )
        assert model.predict(PROBES[:1])[0][0] in model.classes


def test_a_refit_or_a_reload_is_followed(tmp_path: Path) -> None:
    model = train(TEXTS)
    first = TfidfScorer.for_pipeline(model.pipeline)
    assert first is TfidfScorer.for_pipeline(model.pipeline)  # built once per pipeline
    flipped = {
        "billing": TEXTS["shipping"],
        "shipping": TEXTS["billing"],
        "account": TEXTS["account"],
    }
    pairs = [(t, label) for label, ts in flipped.items() for t in ts]
    model.pipeline.fit([t for t, _ in pairs], [label for _, label in pairs])
    again = TfidfScorer.for_pipeline(model.pipeline)
    assert again is not first
    assert model.predict(["where is my parcel"])[0][0] == "billing"
    path = tmp_path / "m.joblib"
    model.save(path)
    loaded = SpecialistModel.load(path)
    assert loaded.predict(PROBES) == model.predict(PROBES)


def test_predict_with_a_narrowed_taxonomy_still_answers_from_it() -> None:
    model = train(TEXTS)
    for text in PROBES:
        label, probability = model.predict([text], allowed={"billing", "account"})[0]
        assert label in {"billing", "account"} and 0 <= probability <= 1
