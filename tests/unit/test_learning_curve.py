"""Learning curve: nested samples, and accuracy that grows with labels on the demo inbox."""

from __future__ import annotations

from collections import Counter

import pytest

from backends.specialist_model import TrainingError
from tui.demo import generate_inbox
from tui.learning_curve import format_curve, learning_curve, nested_sample


def test_nested_sample_is_seeded_and_nested() -> None:
    labels = ["a"] * 10 + ["b"] * 3 + ["c"] * 7
    small = nested_sample(labels, 2, seed=1)
    large = nested_sample(labels, 5, seed=1)
    assert set(small) <= set(large)
    assert Counter(labels[i] for i in large) == {"a": 5, "b": 3, "c": 5}
    assert nested_sample(labels, 5, seed=1) == large
    assert nested_sample(labels, 5, seed=2) != large
    assert nested_sample(labels, None, seed=1) == list(range(len(labels)))


def test_accuracy_rises_with_labels() -> None:
    inbox = generate_inbox(800, seed=11, labelled_fraction=0.0)
    train, test = inbox[:600], inbox[600:]
    points = learning_curve(
        [d.ticket.text for d in train],
        [d.true_label for d in train],
        [d.ticket.text for d in test],
        [d.true_label for d in test],
        seed=13,
    )
    assert [p.per_class for p in points] == [2, 5, 10, 20, 50, None]
    assert points[-1].n_train == 600
    assert [p.n_train for p in points] == sorted(p.n_train for p in points)
    assert points[-1].accuracy >= points[0].accuracy + 0.1
    for before, after in zip(points, points[1:], strict=False):
        assert after.accuracy >= before.accuracy - 0.05
    assert points[-1].to_dict()["per_class"] == "all"
    table = format_curve(points)
    assert len(table) == len(points) + 1 and table[-1].strip().startswith("all")


def test_sizes_beyond_the_data_are_skipped() -> None:
    texts = ["refund my card", "charged twice", "parcel late", "tracking stuck"] * 3
    labels = ["billing", "billing", "shipping", "shipping"] * 3
    points = learning_curve(texts, labels, texts[:4], labels[:4], sizes=(2, 5, 10, None))
    assert [p.per_class for p in points] == [2, 5, None]
    with pytest.raises(TrainingError):
        learning_curve(texts[:1], labels[:1], texts, labels)
    with pytest.raises(ValueError, match="empty"):
        learning_curve(texts, labels, [], [])
