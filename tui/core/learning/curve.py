"""Learning curve of the specialist: accuracy against the number of labels per class.

It answers the question a team asks before labelling more: "would another hundred labels
help?". Samples are nested (each size adds to the smaller one's examples), so the curve's
shape reflects the amount of data rather than which tickets happened to be drawn.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_SIZES: tuple[int | None, ...] = (2, 5, 10, 20, 50, None)
"""Labels per class for each point; None means every training example."""


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """The specialist's scores when trained on `per_class` examples of each label."""

    per_class: int | None
    """Examples per label (fewer for labels that have fewer); None: all of them."""
    n_train: int
    accuracy: float
    macro_f1: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_class": "all" if self.per_class is None else self.per_class,
            "n_train": self.n_train,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
        }


def nested_sample(labels: Sequence[str], per_class: int | None, seed: int) -> list[int]:
    """Indices of up to `per_class` examples of each label, in input order.

    Each label's examples are shuffled once by the seed and the first `per_class` are taken,
    so a larger size always contains a smaller one's sample.
    """
    by_label: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    chosen: list[int] = []
    for label in sorted(by_label):
        members = by_label[label][:]
        random.Random(f"{seed}:{label}").shuffle(members)
        chosen.extend(members if per_class is None else members[:per_class])
    return sorted(chosen)


def learning_curve(
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    test_texts: Sequence[str],
    test_labels: Sequence[str],
    sizes: Sequence[int | None] = DEFAULT_SIZES,
    seed: int = 13,
) -> list[CurvePoint]:
    """Train the specialist on growing samples and score each on the test set.

    A size at or above the largest label's count would repeat the full set, so it is
    skipped unless it is the final None point.

    Raises:
        TrainingError: The training data has fewer than two labels.
        ValueError: Texts and labels differ in length, or the test set is empty.
    """
    from tui.core.learning.model import SpecialistModel
    from tui.core.learning.tfidf import check_trainable
    from tui.core.scoring import score_pairs

    if len(train_texts) != len(train_labels) or len(test_texts) != len(test_labels):
        raise ValueError("texts and labels differ in length")
    if not test_texts:
        raise ValueError("the test set is empty")
    largest = max(check_trainable(train_labels).values())
    points: list[CurvePoint] = []
    for size in sizes:
        if size is not None and (size < 1 or size >= largest):
            continue
        chosen = nested_sample(train_labels, size, seed)
        model = SpecialistModel.train(
            [train_texts[i] for i in chosen], [train_labels[i] for i in chosen]
        )
        predicted = [label for label, _ in model.predict(test_texts)]
        scores = score_pairs(predicted, test_labels)
        points.append(CurvePoint(size, len(chosen), scores.accuracy or 0.0, scores.macro_f1 or 0.0))
    return points


def format_curve(points: Sequence[CurvePoint]) -> list[str]:
    """The curve as aligned text lines, for the CLI and the TUI's statistics screen."""
    lines = [f"{'per class':>10}{'n train':>10}{'accuracy':>10}{'macro-F1':>10}"]
    for p in points:
        size = "all" if p.per_class is None else str(p.per_class)
        lines.append(f"{size:>10}{p.n_train:>10}{p.accuracy:>10.1%}{p.macro_f1:>10.3f}")
    return lines


CURVE_CAP = 5000
"""Most labelled tickets the statistics screen's curve trains on, so it stays a few seconds."""


def curve_from_labels(
    examples: Sequence[tuple[str, str]],
    *,
    holdout: float = 0.2,
    cap: int = CURVE_CAP,
    seed: int = 13,
) -> tuple[list[CurvePoint], int]:
    """The learning curve of the agents' own labels: a seeded holdout of them is the test set.

    Returns:
        The curve points and the size of the test set; no points when there are too few
        labels (fewer than 20, or a label with a single example only).
    """
    import random

    rows = list(examples)
    rng = random.Random(seed)
    rng.shuffle(rows)
    rows = rows[:cap]
    by_label: dict[str, list[tuple[str, str]]] = {}
    for text, label in rows:
        by_label.setdefault(label, []).append((text, label))
    train: list[tuple[str, str]] = []
    test: list[tuple[str, str]] = []
    for items in by_label.values():
        cut = int(len(items) * holdout) if len(items) >= 5 else 0
        test += items[:cut]
        train += items[cut:]
    if len(rows) < 20 or len(test) < 5 or len({label for _, label in train}) < 2:
        return [], len(test)
    points = learning_curve(
        [t for t, _ in train],
        [lab for _, lab in train],
        [t for t, _ in test],
        [lab for _, lab in test],
        seed=seed,
    )
    return points, len(test)


def held_out_curve(
    examples: Sequence[tuple[str, str]],
    test_texts: Sequence[str],
    test_labels: Sequence[str],
    *,
    seed: int = 13,
) -> list[CurvePoint]:
    """`eval --curve`: the curve of training `examples` (text, label), scored on a test set.

    Training rows whose text is also a test ticket are left out, so an `eval --store` run
    (which imports the test file into the database the examples come from) cannot leak its
    answers into the curve.

    Raises:
        TrainingError: The remaining examples have fewer than two labels.
        ValueError: The test set is empty, or its texts and labels differ in length.
    """
    held_out = set(test_texts)
    kept = [(text, label) for text, label in examples if text not in held_out]
    return learning_curve(
        [text for text, _ in kept],
        [label for _, label in kept],
        test_texts,
        test_labels,
        seed=seed,
    )
