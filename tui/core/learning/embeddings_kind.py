"""The `embeddings` kind: TF-IDF n-grams plus frozen sentence embeddings, one linear SVM.

The embeddings come from the static, Rust-backed `tokenlearn-static-model` by default (tens of
thousands of sentences a second) or from any ONNX encoder directory
($TRIAGEDESK_EMBEDDINGS_ENCODER). Nothing is fine-tuned, so it retrains in seconds.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tui.core.learning.errors import require
from tui.core.learning.tfidf import build_tfidf_pipeline, tfidf_features

EMBEDDINGS_ENCODER_ENV = "TRIAGEDESK_EMBEDDINGS_ENCODER"
"""`static` (default) or an ONNX encoder directory for the `embeddings` kind."""


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

    base = build_tfidf_pipeline(counts)
    encoder = os.environ.get(EMBEDDINGS_ENCODER_ENV, "static")
    tfidf: FeatureUnion = tfidf_features()
    features = FeatureUnion(
        [*tfidf.transformer_list, ("embedding", StaticEmbeddingFeatures(encoder))]
    )
    return Pipeline([("features", features), ("clf", base.named_steps["clf"])])
