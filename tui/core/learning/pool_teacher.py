"""A larger encoder that only guesses the unlabelled pool's labels, at training time.

The fewshot head learns the labels spread over the pool (`semi_supervised`), so it can only
be as right as those guesses. all-mpnet-base-v2 places Banking77's tickets better than
MiniLM, but costs ~8x MiniLM's CPU a ticket: far too slow to serve 1,000 tickets/s on two
cores, affordable once per training for a few thousand texts. So when
$TRIAGEDESK_FEWSHOT_TEACHER names its folder, the labels are spread over a graph of both
encoders' embeddings (each unit length, side by side), each guess is weighted by how sure
the spreading was of it, and the served model is the same MiniLM + TF-IDF as without it
(benchmarks/RESULTS.md, section 4c, third pass). The teacher runs as an fp32 ONNX graph
written from its weights (`mpnet_graph`), without torch; int8 lost too much of it (cosine
0.87 to the fp32 embedding on Banking77).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tui.core.learning.errors import TrainingError

TEACHER_ENV = "TRIAGEDESK_FEWSHOT_TEACHER"
"""Folder of an MPNet sentence encoder (all-mpnet-base-v2: config.json, model.safetensors,
tokenizer.json) for the pool's guesses; unset, empty or `off`: MiniLM guesses alone."""
MAX_LENGTH = 64
"""Tokens kept of a ticket, as for the served MiniLM."""
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


def teacher_encoder(folder: Path, say: Callable[[str], None]) -> Path:
    """The teacher's fp32 ONNX encoder directory, written once per weights file and reused
    (a few seconds and ~440 MB for all-mpnet-base-v2)."""
    from safetensors.numpy import load_file

    from tui.core.learning.mpnet_graph import MpnetShape, mpnet_graph_onnx
    from tui.core.learning.onnx_encoder import cached_encoder

    weights_file = folder / "model.safetensors"

    def write(out: Path) -> None:
        shape = MpnetShape.from_config(json.loads((folder / "config.json").read_text()))
        mpnet_graph_onnx(
            load_file(str(weights_file)), shape, out / "model.onnx", max_length=MAX_LENGTH
        )
        shutil.copyfile(folder / "tokenizer.json", out / "tokenizer.json")
        meta = {"max_length": MAX_LENGTH, "classes": [], "hidden": shape.hidden, "int8": False}
        (out / "encoder.json").write_text(json.dumps(meta, indent=2))

    return cached_encoder(
        weights_file,
        "teacher-mpnet",
        MAX_LENGTH,
        write,
        say,
        "writing the teacher's ONNX encoder (once for these weights)",
    )


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
