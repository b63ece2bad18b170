"""A larger encoder that only guesses the unlabelled pool's labels, at training time.

The fewshot head learns the labels spread over the pool (`semi_supervised`), so it can only
be as right as those guesses. all-mpnet-base-v2 places Banking77's tickets better than
MiniLM, but costs ~4-8x MiniLM's CPU a ticket: far too slow to serve 1,000 tickets/s on two
cores, affordable once per training for a few thousand texts. So when
$TRIAGEDESK_FEWSHOT_TEACHER names its folder, the labels are spread over a graph of both
encoders' embeddings (each unit length, side by side), each guess is weighted by how sure
the spreading was of it, and the served model is the same MiniLM + TF-IDF as without it
(benchmarks/RESULTS.md, section 4c, third pass). The teacher runs as an ONNX graph written
from its weights (`mpnet_graph`), without torch, int8 but for its feed-forward outputs
(`quantize_teacher`: all int8 lost too much of it, cosine 0.87 to fp32 on Banking77).

The spreading's guesses then get a second opinion of a different kind (`cross_fitted`): a
logistic regression over both embeddings, fitted on the labels and half the pool's guesses,
answers for the other half, and the two halves swap; its probabilities are averaged with the
spreading's. The graph only looks at a ticket's neighbours; the regression draws one border
per class through the whole space, and, never having seen a ticket's own guess, it does not
just repeat it (a head fitted on all the guesses did: RESULTS 4c, third pass). With the teacher
the pool may hold `TEACHER_MAX_UNLABELLED` tickets: better guesses make more of them worth
learning, where MiniLM's alone lost 0.7 points at 7,500 (fourth pass).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tui.core.learning.errors import TrainingError
from tui.core.learning.semi_supervised import MAX_UNLABELLED, Spread

TEACHER_ENV = "TRIAGEDESK_FEWSHOT_TEACHER"
"""Folder of an MPNet sentence encoder (all-mpnet-base-v2: config.json, model.safetensors,
tokenizer.json) for the pool's guesses; unset, empty or `off`: MiniLM guesses alone."""
MAX_LENGTH = 64
"""Tokens kept of a ticket, as for the served MiniLM."""
TEACHER_MAX_UNLABELLED = 7500
"""Most unlabelled tickets the pool holds when the teacher guesses them (5,000 without:
`semi_supervised.MAX_UNLABELLED`). The teacher's ~23 CPU-ms a ticket makes this the cost
that bounds it: 7,500 of them are ~170 CPU-s of a training's five minutes on two cores."""
CROSS_FOLDS = 2
"""Parts of the pool `cross_fitted` answers for in turn, each with a regression fitted on the
labels and the other parts' guesses (5 parts: +0.1 point of guesses for 2.5x the fits)."""
CROSS_C = 10.0
"""Inverse L2 strength of that regression, as the head's (3 and 30 guessed no better)."""
CROSS_MIX = 0.5
"""Share of a guess that comes from the regression, the rest from the spreading (0.3, 0.7
and the regression alone guessed 0.2-0.5 points less often right at 10 and 20 a class)."""
FP32_KEPT = "output.dense"
"""The weights (by name: `encoder.layer.N.output.dense`) `quantize_teacher` leaves fp32."""
CONFIDENCE_CAP = 2.0
"""A guess's weight is the pool weight times its confidence over the median confidence,
capped here: the surest guesses count up to twice, the doubtful ones next to nothing."""


def teacher_dir() -> Path | None:
    """The teacher's folder from $TRIAGEDESK_FEWSHOT_TEACHER, or None when there is none.

    Raises:
        TrainingError: The folder lacks a file the graph needs, or is not an MPNet model.
    """
    raw = os.environ.get(TEACHER_ENV, "").strip()
    if not raw or raw.lower() == "off":
        return None
    folder = Path(raw).expanduser()
    for needed in ("model.safetensors", "config.json", "tokenizer.json"):
        if not (folder / needed).exists():
            raise TrainingError(f"{TEACHER_ENV}={raw}: no {needed} in that folder")
    kind = json.loads((folder / "config.json").read_text()).get("model_type")
    if kind != "mpnet":
        raise TrainingError(f"{TEACHER_ENV}={raw}: model_type {kind!r}, expected 'mpnet'")
    return folder


def pool_cap() -> int:
    """Most unlabelled tickets to hand the fewshot kind: `TEACHER_MAX_UNLABELLED` with a
    usable teacher named, `semi_supervised.MAX_UNLABELLED` otherwise (a bad folder counts
    as none here; the training then says what is wrong with it)."""
    try:
        named = teacher_dir() is not None
    except TrainingError:
        named = False
    return TEACHER_MAX_UNLABELLED if named else MAX_UNLABELLED


def teacher_encoder(folder: Path, say: Callable[[str], None]) -> Path:
    """The teacher's ONNX encoder directory (int8 but for the feed-forward outputs,
    `quantize_teacher`), written once per weights file and reused (a minute and ~180 MB
    for all-mpnet-base-v2)."""
    from safetensors.numpy import load_file

    from tui.core.learning.mpnet_graph import MpnetShape, mpnet_graph_onnx
    from tui.core.learning.onnx_encoder import cached_encoder

    weights_file = folder / "model.safetensors"

    def write(out: Path) -> None:
        shape = MpnetShape.from_config(json.loads((folder / "config.json").read_text()))
        fp32 = mpnet_graph_onnx(
            load_file(str(weights_file)), shape, out / "model.fp32.onnx", max_length=MAX_LENGTH
        )
        quantize_teacher(fp32, out / "model.onnx")
        fp32.unlink()
        shutil.copyfile(folder / "tokenizer.json", out / "tokenizer.json")
        meta = {"max_length": MAX_LENGTH, "classes": [], "hidden": shape.hidden, "int8": True}
        (out / "encoder.json").write_text(json.dumps(meta, indent=2))

    return cached_encoder(
        weights_file,
        "teacher-mpnet-int8",
        MAX_LENGTH,
        write,
        say,
        "writing the teacher's ONNX encoder (once for these weights)",
    )


def quantize_teacher(source: Path, target: Path) -> Path:
    """Dynamic int8 weights for every matrix product of MPNet's layers except the second of
    each feed-forward block (`FP32_KEPT`), which stays fp32.

    Quantising them all, as the MiniLM is, left Banking77's embeddings at a mean cosine of
    0.87 to fp32 (0.76 for the worst ticket): that product's input is the GELU's output, whose
    few very large activations one int8 scale a row cannot hold. Without it: cosine 0.992
    (worst 0.979) at ~2x fp32's speed on two cores (RESULTS 4c, fourth pass); the products
    of the attention scores with each other stay fp32 either way.
    """
    import onnx

    from tui.core.learning.onnx_encoder import quantize_int8

    graph = onnx.load(str(source)).graph
    weights = {i.name for i in graph.initializer}
    nodes = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and any(name in weights and FP32_KEPT not in name for name in node.input)
    ]
    return quantize_int8(source, target, op_types=("MatMul",), nodes=nodes)


def side_by_side(student: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """Both unit-length embeddings in one unit-length row: the graph's cosine is then the
    mean of the two encoders' cosines."""
    joined = np.hstack([student, teacher]).astype(np.float32)
    return np.asarray(joined / np.maximum(np.linalg.norm(joined, axis=1, keepdims=True), 1e-9))


def guess_weights(confidence: np.ndarray, pool_weight: float) -> np.ndarray:
    """Each guess's sample weight: `pool_weight` at the median confidence, more for surer
    guesses (up to `CONFIDENCE_CAP` times), less for doubtful ones."""
    middle = float(np.median(confidence)) if len(confidence) else 0.0
    if middle <= 0:
        return np.full(len(confidence), pool_weight)
    return np.asarray(pool_weight * np.clip(confidence / middle, 0.0, CONFIDENCE_CAP))


def graph_views(
    folder: Path,
    rows: list[str],
    pool: list[str],
    student_rows: np.ndarray,
    student_pool: np.ndarray,
    say: Callable[[str], None],
) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings the labels are spread over: MiniLM's and the teacher's side by side,
    for the labelled rows and for the pool."""
    from tui.core.learning.onnx_encoder import OnnxEncoder

    encoder = OnnxEncoder(teacher_encoder(folder, say))
    say(f"embedding {len(rows) + len(pool)} tickets with the teacher encoder")
    both = encoder.embed([*rows, *pool])
    both = both / np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-9)
    return (
        side_by_side(student_rows, both[: len(rows)]),
        side_by_side(student_pool, both[len(rows) :]),
    )


def cross_fitted(
    rows: np.ndarray,
    targets: Sequence[str],
    pool: np.ndarray,
    spread: Spread,
    classes: Sequence[str],
    pool_weight: float,
    *,
    folds: int = CROSS_FOLDS,
    mix: float = CROSS_MIX,
    seed: int = 0,
) -> Spread:
    """The spreading's guesses mixed with a cross-fitted logistic regression's.

    `rows` and `pool` are the features (both encoders' unit-length embeddings side by side),
    `targets` the labels of `rows`. The pool is cut into `folds` seeded parts; for each, a
    regression learns the labels (weight 1) and the other parts' guessed labels (weighted as
    the head weighs them, `guess_weights`) and gives its probabilities for that part. A
    text's new scores are `mix` of those and the rest of the spreading's; its label their
    largest, its confidence that share.

    Raises:
        ValueError: `spread` has no scores, or a regression learnt other classes (a part
            without some class and no labelled row of it cannot happen: every class has one).
    """
    from sklearn.linear_model import LogisticRegression

    if spread.scores is None:
        raise ValueError("the spreading gave no scores to mix with")
    names = np.asarray(classes)
    weights = guess_weights(spread.confidence, pool_weight)
    part = np.random.default_rng(seed).permutation(len(pool)) % folds
    second = np.zeros_like(spread.scores)
    for fold in range(folds):
        fit, held = np.flatnonzero(part != fold), np.flatnonzero(part == fold)
        if not len(held):
            continue
        model = LogisticRegression(C=CROSS_C, max_iter=2000)
        model.fit(
            np.vstack([rows, pool[fit]]),
            [*targets, *spread.labels[fit]],
            sample_weight=np.concatenate([np.ones(len(rows)), weights[fit]]),
        )
        if list(model.classes_) != list(names):
            raise ValueError("the cross-fitted regression learnt other classes than the labels")
        second[held] = model.predict_proba(pool[held])
    scores = (1 - mix) * spread.scores + mix * second
    scores /= np.maximum(scores.sum(axis=1, keepdims=True), 1e-12)
    return Spread(names[scores.argmax(axis=1)], scores.max(axis=1), scores)
