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
    from backends.specialist_model import SpecialistModel, check_trainable
    from tui.scoring import score_pairs

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
