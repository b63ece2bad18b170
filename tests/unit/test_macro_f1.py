"""The fine-tune's macro-F1 is scikit-learn's (gold labels, zero division 0) without scipy:
on the GPU machine scipy and llama.cpp's CUDA build cannot share a process."""

from __future__ import annotations

import random

import pytest
from sklearn.metrics import f1_score

from tui.core.learning.llm.train import macro_f1


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_scikit_learn_with_answers_outside_the_labels(seed: int) -> None:
    rng = random.Random(seed)
    labels = [f"queue{i}" for i in range(rng.randint(2, 12))]
    gold = [rng.choice(labels) for _ in range(rng.randint(1, 300))]
    said = [
        g if rng.random() < 0.6 else rng.choice([*labels, "not a label", "queue99"]) for g in gold
    ]
    expected = f1_score(gold, said, labels=sorted(set(gold)), average="macro", zero_division=0)
    assert macro_f1(said, gold) == pytest.approx(expected, abs=1e-12)


def test_macro_f1_of_nothing_is_zero() -> None:
    assert macro_f1([], []) == 0.0
