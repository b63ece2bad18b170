"""Accuracy, macro-F1 and per-label precision/recall from (predicted, true, count) triples.

Computed from counts rather than row lists so the store can aggregate in SQL first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Scores:
    support: int
    accuracy: float | None
    macro_f1: float | None
    per_label: dict[str, dict[str, float | int]] = field(default_factory=dict)
    confusions: list[tuple[str, str, int]] = field(default_factory=list)
    """(true, predicted, count) of the most frequent mistakes, largest first."""


def score(triples: Iterable[tuple[str, str, int]]) -> Scores:
    tp: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    actual: Counter[str] = Counter()
    mistakes: Counter[tuple[str, str]] = Counter()
    total = correct = 0
    for pred, truth, count in triples:
        total += count
        predicted[pred] += count
        actual[truth] += count
        if pred == truth:
            tp[pred] += count
            correct += count
        else:
            mistakes[(truth, pred)] += count
    if total == 0:
        return Scores(0, None, None)
    per_label: dict[str, dict[str, float | int]] = {}
    f1s = []
    for label in sorted(actual):
        precision = tp[label] / predicted[label] if predicted[label] else 0.0
        recall = tp[label] / actual[label]
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        per_label[label] = {
            "precision": round(precision, 6),
            "recall": round(recall, 6),
            "f1": round(f1, 6),
            "support": actual[label],
        }
    confusions = [(t, p, c) for (t, p), c in mistakes.most_common(10)]
    return Scores(total, correct / total, sum(f1s) / len(f1s), per_label, confusions)


def score_pairs(predicted: Iterable[str], truth: Iterable[str]) -> Scores:
    counts: Counter[tuple[str, str]] = Counter(zip(predicted, truth, strict=True))
    return score((p, t, c) for (p, t), c in counts.items())
