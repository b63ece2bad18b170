"""The `fewshot` kind: SetFit-style, for a team with a handful of labels per queue.

All-MiniLM-L6-v2 is fine-tuned contrastively on pairs of the labelled tickets
(`contrastive`, torch, on the GPU when there is one), then a logistic-regression head is
fitted on its embeddings of the same tickets. Without torch the encoder stays frozen (the
head alone is trained): a few points lower, still far above TF-IDF at few labels
(benchmarks/RESULTS.md, section 4c). Either way the encoder is served as an int8 ONNX graph
(`onnx_graph`, written without torch) and the head as numpy: predicting needs onnxruntime only.
From `CASCADE_FROM` labels per class on, the TF-IDF model answers the half of tickets it is
surest of and the encoder only the rest: the same accuracy at twice the speed.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tui.core.learning.errors import TrainingError, require
from tui.core.learning.finetuned_kind import ArtifactsMixin, minilm_dir

CONTRASTIVE_ENV = "TRIAGEDESK_FEWSHOT_CONTRASTIVE"
"""`auto` (default: when torch is installed), `on` (fail without torch) or `off` (frozen)."""
SECONDS_ENV = "TRIAGEDESK_FEWSHOT_SECONDS"
"""Most seconds the contrastive fine-tune may run (default 240: the 5-minute budget less the
export and the head), after which it stops where it is."""
MAX_LENGTH = 64
"""Tokens kept of a ticket: Banking77's longest is under 90, its median 14."""
CASCADE_FROM = 20
"""Labels per class (median) from which TF-IDF answers the half of tickets it is surest of:
on the learning curve the cascade then costs 0.02 points or less for twice the speed, while
at 5 and 10 labels TF-IDF is too weak to be trusted with any (it cost 3.35 and 0.87 points)."""
CASCADE_ENV = "TRIAGEDESK_FEWSHOT_CASCADE"
"""`auto` (default: from `CASCADE_FROM` labels per class) or `off` (the encoder answers all)."""
ESCALATE_SHARE = 0.5
"""Share of tickets (out-of-fold on the training labels) the TF-IDF stage passes on."""
HEAD_C = 10.0
"""Inverse L2 strength of the head, fixed for unit-length embeddings (not tuned per run)."""

Progress = Callable[[str], None]


def torch_available() -> bool:
    """Whether torch can be imported (without importing it: that takes seconds)."""
    return importlib.util.find_spec("torch") is not None


def contrastive_mode() -> bool:
    """Whether to fine-tune contrastively, from $TRIAGEDESK_FEWSHOT_CONTRASTIVE.

    Raises:
        TrainingError: An unknown value.
        MissingExtra: `on` without torch installed.
    """
    raw = os.environ.get(CONTRASTIVE_ENV, "auto").strip().lower() or "auto"
    if raw not in ("auto", "on", "off"):
        raise TrainingError(f"{CONTRASTIVE_ENV}={raw!r}: expected auto, on or off")
    if raw == "on":
        require("torch", also=" torch")
    return raw == "on" or (raw == "auto" and torch_available())


def seconds_budget() -> float:
    """$TRIAGEDESK_FEWSHOT_SECONDS, else 240.

    Raises:
        TrainingError: Not a positive number.
    """
    raw = os.environ.get(SECONDS_ENV, "").strip()
    if not raw:
        return 240.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise TrainingError(f"{SECONDS_ENV}={raw!r}: expected a number of seconds above 0")
    return value


def cascade_wanted(labels: Sequence[str]) -> bool:
    """Whether TF-IDF goes first, from $TRIAGEDESK_FEWSHOT_CASCADE and the labels per class.

    Raises:
        TrainingError: An unknown value.
    """
    raw = os.environ.get(CASCADE_ENV, "auto").strip().lower() or "auto"
    if raw not in ("auto", "off"):
        raise TrainingError(f"{CASCADE_ENV}={raw!r}: expected auto or off")
    return raw == "auto" and statistics.median(Counter(labels).values()) >= CASCADE_FROM


def write_encoder(
    weights: dict[str, np.ndarray], bert_config: dict[str, Any], base: Path, out: Path
) -> Path:
    """An int8 encoder directory (embedding output, no head) from BERT weights, torch-free."""
    import json
    import shutil

    from tui.core.learning.bert_torch import BertShape
    from tui.core.learning.onnx_encoder import quantize_int8
    from tui.core.learning.onnx_graph import bert_graph_onnx

    out.mkdir(parents=True, exist_ok=True)
    shape = BertShape.from_config(bert_config)
    fp32 = bert_graph_onnx(weights, shape, out / "model.fp32.onnx")
    quantize_int8(fp32, out / "model.onnx")
    fp32.unlink()
    shutil.copyfile(base / "tokenizer.json", out / "tokenizer.json")
    meta = {"max_length": MAX_LENGTH, "classes": [], "hidden": shape.hidden, "int8": True}
    (out / "encoder.json").write_text(json.dumps(meta, indent=2))
    return out


def frozen_encoder(base: Path, say: Progress) -> Path:
    """The untuned base's int8 encoder, written once per base model and reused: the same
    for every training, and a minute of quantising on a busy two-core machine."""
    import hashlib
    import shutil

    from tui.core import paths
    from tui.core.learning.minilm_finetune import load_base

    weights_file = base / "model.safetensors"
    stat = weights_file.stat()
    key = hashlib.sha256(
        f"{weights_file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{MAX_LENGTH}:1".encode()
    ).hexdigest()[:16]
    cached = paths.models_dir() / "encoders" / f"minilm-frozen-{key}"
    if (cached / "encoder.json").exists():
        return cached
    say("exporting the int8 encoder (once for this base model)")
    cached.parent.mkdir(parents=True, exist_ok=True)
    pending = Path(tempfile.mkdtemp(prefix=f".{cached.name}-", dir=cached.parent))
    try:
        write_encoder(*load_base(base), base, pending)
        pending.replace(cached)
    except OSError:
        if not (cached / "encoder.json").exists():  # another process did not finish it first
            raise
    finally:
        shutil.rmtree(pending, ignore_errors=True)
    return cached


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as the contrastive loss compared them."""
    v = np.asarray(vectors, dtype=np.float32)
    return np.asarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9))


class FewShotClassifier(ArtifactsMixin):
    """MiniLM tuned on pairs of the labelled tickets (SetFit), a linear head on top."""

    def __init__(self, *, device: str = "auto", progress: Progress | None = None) -> None:
        self.device = device
        self.classes_: np.ndarray = np.array([])
        self.encoder_dir = None
        self.head: Any = None
        self.tfidf: Any = None
        """The cascade's first stage, when there are labels enough for it (`CASCADE_FROM`)."""
        self.threshold = 0.0
        self.last_escalated = 1.0
        self.trained_on = ""
        self.progress = progress

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["progress"] = None
        return state

    def _say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> FewShotClassifier:
        """Tune the encoder (when torch is there), export it, fit the head.

        Raises:
            TrainingError: A bad device or setting.
            MissingExtra: onnxruntime, tokenizers, safetensors or the MiniLM weights are
                missing (or torch, with $TRIAGEDESK_FEWSHOT_CONTRASTIVE=on).
        """
        from sklearn.linear_model import LogisticRegression

        require("onnx", "onnxruntime", "tokenizers", "safetensors")
        base = minilm_dir()
        for needed in ("model.safetensors", "config.json", "tokenizer.json"):
            if not (base / needed).exists():
                raise TrainingError(f"the base MiniLM {base} has no {needed}")
        started = time.perf_counter()
        if contrastive_mode():
            from tui.core.learning.contrastive import ContrastiveConfig, contrastive_finetune

            config = ContrastiveConfig(seconds=seconds_budget(), max_length=MAX_LENGTH)

            def step(done: int, total: int) -> None:
                if done == 1 or done % 10 == 0 or done == total:
                    self._say(f"contrastive fine-tuning: step {done}/{total}")

            tuned = contrastive_finetune(
                texts, labels, base, config=config, device=self.device, progress=step
            )
            weights, bert_config = tuned.weights, tuned.bert_config
            how = f"contrastive fine-tune on {tuned.device}, {tuned.steps} steps"
            self._say("exporting the int8 encoder")
            self._tmp = tempfile.TemporaryDirectory(prefix="triagedesk-fewshot-")
            self.encoder_dir = write_encoder(weights, bert_config, base, Path(self._tmp.name))
        else:
            self.encoder_dir = frozen_encoder(base, self._say)
            how = "frozen encoder (no torch: head only)"
        self._encoder = None
        self._say("fitting the head")
        self.head = LogisticRegression(C=HEAD_C, max_iter=3000)
        self.head.fit(self.embed(texts), list(labels))
        self.classes_ = np.asarray(self.head.classes_)
        self.tfidf = None
        if cascade_wanted(labels):
            self._say("fitting the TF-IDF first stage")
            self._fit_cascade(texts, labels)
            how += f", behind TF-IDF (threshold {self.threshold:.2f})"
        self.trained_on = f"{how}, {time.perf_counter() - started:.0f} s"
        return self

    def _fit_cascade(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        """TF-IDF on the same labels; its out-of-fold confidence under which `ESCALATE_SHARE`
        of the training tickets fall becomes the threshold for passing a ticket on."""
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        from tui.core.learning.tfidf import build_tfidf_pipeline

        counts = Counter(labels)
        folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
        proba = cross_val_predict(
            build_tfidf_pipeline(counts),
            list(texts),
            list(labels),
            cv=folds,
            method="predict_proba",
        )
        self.threshold = float(np.quantile(np.asarray(proba).max(axis=1), ESCALATE_SHARE))
        self.tfidf = build_tfidf_pipeline(counts).fit(list(texts), list(labels))
        if list(self.tfidf.classes_) != list(self.classes_):
            raise TrainingError("the TF-IDF stage and the head disagree on the labels")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return unit_rows(self.encoder.embed(list(texts)))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.head is None:
            raise TrainingError("model has no head (not fitted)")
        texts = list(texts)
        if self.tfidf is None:
            return np.asarray(self.head.predict_proba(self.embed(texts)))
        proba = np.asarray(self.tfidf.predict_proba(texts), dtype=np.float64)
        unsure = np.flatnonzero(proba.max(axis=1) < self.threshold)
        self.last_escalated = len(unsure) / max(1, len(texts))
        if len(unsure):
            proba[unsure] = self.head.predict_proba(self.embed([texts[i] for i in unsure]))
        return proba

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(texts).argmax(axis=1)])
