"""The `fewshot` kind: SetFit-style, for a team with a handful of labels per queue.

All-MiniLM-L6-v2 is fine-tuned contrastively on pairs of the labelled tickets
(`contrastive`, torch, on the GPU when there is one), then a logistic-regression head is
fitted on its embeddings of the same tickets. Without torch the encoder stays frozen (the
head alone is trained): a few points lower, still far above TF-IDF at few labels
(benchmarks/RESULTS.md, section 4c). The head also learns from each label's own name
("card_arrival" reads "card arrival": one more example a class, the one the team chose), and,
when the inbox holds enough tickets nobody has labelled, from the labels spread over those
(`semi_supervised`; with a larger training-time encoder to guess them, `pool_teacher`); with
thousands of rows it becomes one head over TF-IDF n-grams and the embedding together
(`joint_head`). Either way the encoder is served as an int8 ONNX graph
(`onnx_graph`, written without torch) and the head as numpy: predicting needs onnxruntime only.
From `CASCADE_FROM` labels per class on, or at any number when there was a pool (the TF-IDF
stage then learns the guessed labels too), the TF-IDF model answers the half of tickets it is
surest of and the encoder only the rest: the same accuracy at 1.5-2x the speed.
"""

from __future__ import annotations

import importlib.util
import os
import re
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
"""`auto` (default: from `CASCADE_FROM` labels per class), `on` (at any number of labels) or
`off` (the encoder answers all)."""
ESCALATE_SHARE = 0.5
"""Share of tickets the TF-IDF stage passes on (as measured out-of-fold on the training
labels, or on a held-out third of the pool)."""
HEAD_C = 10.0
"""Inverse L2 strength of the head, fixed for unit-length embeddings (not tuned per run)."""

Progress = Callable[[str], None]


def torch_available() -> bool:
    """Whether torch can be imported (without importing it: that takes seconds)."""
    return importlib.util.find_spec("torch") is not None


def contrastive_mode(*, pooled: bool = False, gpu: bool | None = None) -> bool:
    """Whether to fine-tune contrastively, from $TRIAGEDESK_FEWSHOT_CONTRASTIVE.

    `auto` tunes when torch is installed, except on a CPU when an unlabelled pool is spread
    (`pooled`): the pool costs about 105 s of training for 5,000 tickets and the contrastive
    stage is capped at 240 s, so the two together pass the five minutes a training may take on
    two cores, and the pool is the larger gain (+1.95 points at 10 labels per class against
    the contrastive stage's +1.15, RESULTS section 4c). `gpu` None asks torch.

    Raises:
        TrainingError: An unknown value.
        MissingExtra: `on` without torch installed.
    """
    raw = os.environ.get(CONTRASTIVE_ENV, "auto").strip().lower() or "auto"
    if raw not in ("auto", "on", "off"):
        raise TrainingError(f"{CONTRASTIVE_ENV}={raw!r}: expected auto, on or off")
    if raw == "on":
        require("torch", also=" torch")
        return True
    if raw == "off" or not torch_available():
        return False
    if not pooled:
        return True
    if gpu is None:
        import torch

        gpu = bool(torch.cuda.is_available())
    return gpu


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


def cascade_wanted(labels: Sequence[str], *, pooled: bool = False) -> bool:
    """Whether TF-IDF goes first, from $TRIAGEDESK_FEWSHOT_CASCADE and the labels per class;
    with an unlabelled pool (`pooled`) at any count, since the TF-IDF stage then learns from
    the pool's guessed labels too, and lost nothing on the learning curve even at 5 a class.

    Raises:
        TrainingError: An unknown value.
    """
    raw = os.environ.get(CASCADE_ENV, "auto").strip().lower() or "auto"
    if raw not in ("auto", "on", "off"):
        raise TrainingError(f"{CASCADE_ENV}={raw!r}: expected auto, on or off")
    if raw == "on":
        return True
    if raw == "off":
        return False
    return pooled or statistics.median(Counter(labels).values()) >= CASCADE_FROM


def label_text(label: str) -> str:
    """A label's name as a ticket might say it: "card_arrival" -> "card arrival"."""
    return " ".join(re.sub(r"[_\-/.:]+", " ", label).split())


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
    from tui.core.learning.minilm_finetune import load_base
    from tui.core.learning.onnx_encoder import cached_encoder

    return cached_encoder(
        base / "model.safetensors",
        "minilm-frozen",
        MAX_LENGTH,
        lambda out: write_encoder(*load_base(base), base, out),
        say,
        "exporting the int8 encoder (once for this base model)",
    )


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as the contrastive loss compared them."""
    v = np.asarray(vectors, dtype=np.float32)
    return np.asarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9))


class FewShotClassifier(ArtifactsMixin):
    """MiniLM tuned on pairs of the labelled tickets (SetFit), a linear head on top."""

    def __init__(
        self,
        *,
        device: str = "auto",
        progress: Progress | None = None,
        unlabelled: Sequence[str] = (),
    ) -> None:
        self.device = device
        self.unlabelled: Sequence[str] = unlabelled
        """Texts without a label to spread the labels over (`semi_supervised`); dropped once
        fitted, so the saved model holds none of them."""
        self.pool_size = 0
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
        state["unlabelled"] = ()
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
        require("onnx", "onnxruntime", "tokenizers", "safetensors")
        base = minilm_dir()
        for needed in ("model.safetensors", "config.json", "tokenizer.json"):
            if not (base / needed).exists():
                raise TrainingError(f"the base MiniLM {base} has no {needed}")
        started = time.perf_counter()
        from tui.core.learning import semi_supervised as semi

        pooled = len(semi.pool_texts(self.unlabelled, texts)) >= semi.MIN_UNLABELLED
        gpu = {"cuda": True, "cpu": False}.get(self.device)
        if contrastive_mode(pooled=pooled, gpu=gpu):
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
        how_head, rows, targets = self._fit_head(list(texts), list(labels))
        how += how_head
        self.tfidf = None
        if cascade_wanted(labels, pooled=self.pool_size > 0):
            self._say("fitting the TF-IDF first stage")
            self._fit_cascade(rows, targets)
            how += f", behind TF-IDF (threshold {self.threshold:.2f})"
        self.trained_on = f"{how}, {time.perf_counter() - started:.0f} s"
        return self

    def _fit_head(self, texts: list[str], labels: list[str]) -> tuple[str, list[str], list[str]]:
        """The head on the labels, the label names and the guesses for the unlabelled pool;
        returns what it learnt from (for `trained_on`), and those rows and their labels."""
        from sklearn.linear_model import LogisticRegression

        from tui.core.learning import pool_teacher
        from tui.core.learning import semi_supervised as semi
        from tui.core.learning.joint_head import JOINT_FROM, JointHead

        classes = sorted(set(labels))
        named = [(label_text(c), c) for c in classes if label_text(c)]
        rows = texts + [t for t, _ in named]
        targets = labels + [c for _, c in named]
        self._say(f"embedding {len(rows)} labelled tickets and label names")
        vectors = self.embed(rows)
        weights = np.ones(len(rows))
        teacher = pool_teacher.teacher_dir()
        cap = pool_teacher.TEACHER_MAX_UNLABELLED if teacher else semi.MAX_UNLABELLED
        pool = semi.pool_texts(self.unlabelled, texts, cap=cap)
        self.unlabelled = ()
        self.pool_size = 0
        how = ", label names as examples"
        if len(pool) >= semi.MIN_UNLABELLED:
            self._say(f"spreading the labels over {len(pool)} unlabelled tickets")
            pooled = self.embed(pool)
            if teacher is None:
                guessed = semi.spread_labels(vectors, targets, pooled, classes)
                guess_weights = np.full(len(pool), semi.POOL_WEIGHT)
            else:
                graph_rows, graph_pool = pool_teacher.graph_views(
                    teacher, rows, pool, vectors, pooled, self._say
                )
                guessed = semi.spread_labels(graph_rows, targets, graph_pool, classes)
                self._say("a second opinion on the guesses (cross-fitted regression)")
                # both unit-length embeddings side by side, not scaled down as for the graph
                guessed = pool_teacher.cross_fitted(
                    graph_rows * np.sqrt(2.0),
                    targets,
                    graph_pool * np.sqrt(2.0),
                    guessed,
                    classes,
                    semi.POOL_WEIGHT,
                )
                guess_weights = pool_teacher.guess_weights(guessed.confidence, semi.POOL_WEIGHT)
            rows += pool
            targets += [str(g) for g in guessed.labels]
            vectors = np.vstack([vectors, pooled])
            weights = np.concatenate([weights, guess_weights])
            self.pool_size = len(pool)
            how += f", labels spread over {len(pool)} unlabelled tickets"
            if teacher is not None:
                how += f" (guessed with the teacher {teacher.name}, cross-fitted)"
        self._say("fitting the head")
        if len(rows) >= JOINT_FROM:
            self.head = JointHead().fit(rows, vectors, targets, sample_weight=weights)
            how += ", TF-IDF + embedding head"
        else:
            self.head = LogisticRegression(C=HEAD_C, max_iter=3000)
            self.head.fit(vectors, targets, sample_weight=weights)
        self.classes_ = np.asarray(self.head.classes_)
        return how, rows, targets

    def _head_proba(self, texts: list[str]) -> np.ndarray:
        from tui.core.learning.joint_head import JointHead

        if isinstance(self.head, JointHead):
            return self.head.predict_proba(texts, self.embed(texts))
        return np.asarray(self.head.predict_proba(self.embed(texts)))

    def _fit_cascade(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        """TF-IDF on the head's rows (labels, label names and the pool's guessed labels), and
        the confidence under which `ESCALATE_SHARE` of unseen tickets fall as the threshold
        for passing a ticket on.

        With a pool (its rows come last), a third of the pool is held out of the TF-IDF stage
        and its confidences there set the threshold: one fit, where out-of-fold predictions
        over 5,000 rows took four (80 s on two busy cores). The guesses need not be right for
        that: only how sure the stage is on tickets it has not seen counts. Without a pool,
        the threshold comes from 3-fold out-of-fold confidences on the labels.
        """
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        from tui.core.learning.tfidf import build_tfidf_pipeline

        texts, labels = list(texts), list(labels)
        if self.pool_size:
            first = len(texts) - self.pool_size
            held = {first + i for i in range(0, self.pool_size, 3)}
            fit_rows = [i for i in range(len(texts)) if i not in held]
            kept = [labels[i] for i in fit_rows]
            self.tfidf = build_tfidf_pipeline(Counter(kept)).fit([texts[i] for i in fit_rows], kept)
            unseen = self.tfidf.predict_proba([texts[i] for i in sorted(held)])
            self.threshold = float(np.quantile(np.asarray(unseen).max(axis=1), ESCALATE_SHARE))
            if list(self.tfidf.classes_) != list(self.classes_):
                raise TrainingError("the TF-IDF stage and the head disagree on the labels")
            return
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
            return self._head_proba(texts)
        proba = np.asarray(self.tfidf.predict_proba(texts), dtype=np.float64)
        unsure = np.flatnonzero(proba.max(axis=1) < self.threshold)
        self.last_escalated = len(unsure) / max(1, len(texts))
        if len(unsure):
            proba[unsure] = self._head_proba([texts[i] for i in unsure])
        return proba

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(texts).argmax(axis=1)])
