"""Stronger specialist kinds for `triagedesk train --kind KIND`, beside the default TF-IDF one.

- `embeddings` (`embeddings_kind`): TF-IDF features plus frozen sentence embeddings under one
  calibrated linear SVM. Fast: the static model encodes tens of thousands of sentences a second.
- `finetuned` (`finetuned_kind`): all-MiniLM-L6-v2 fine-tuned end to end with a linear head
  (torch, on a GPU when there is one), exported to an int8 ONNX graph, served by onnxruntime
  without torch.
- `fewshot` (`fewshot_kind`): SetFit-style for a handful of labels per class: MiniLM tuned
  contrastively on pairs of the labelled tickets (torch, when installed), a linear head on its
  embeddings, served as int8 ONNX without torch.
- `ensemble` (`ensemble_kind`): a cascade. The TF-IDF model answers the tickets it is surest
  of; the share it is least sure of goes to the fine-tuned MiniLM, which decides those.

Every kind is an sklearn-style estimator (`fit`, `predict_proba`, `classes_`) that pickles
without its ONNX session; a kind with files of its own writes them in `save_artifacts(dir)`
and finds them again in `load_artifacts(dir)` (SpecialistModel calls both). The optional
packages are imported inside functions, so the default install never needs them. The classes
are re-exported here because saved models name them by this module (pickles from before the
split into one module per kind still load).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from tui.core.learning.embeddings_kind import StaticEmbeddingFeatures, build_embeddings_pipeline
from tui.core.learning.ensemble_kind import CascadeEnsemble
from tui.core.learning.errors import TrainingError
from tui.core.learning.fewshot_kind import FewShotClassifier
from tui.core.learning.finetuned_kind import FinetunedClassifier

__all__ = [
    "KINDS",
    "CascadeEnsemble",
    "FewShotClassifier",
    "FinetunedClassifier",
    "StaticEmbeddingFeatures",
    "build_pipeline",
]

KINDS = ("embeddings", "finetuned", "ensemble", "fewshot")


def build_pipeline(
    kind: str,
    counts: Counter[str],
    *,
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
    unlabelled: Sequence[str] = (),
) -> Any:
    """The estimator for `kind`; `device` is where a fine-tune trains (auto, cpu, cuda);
    `progress` hears a line now and then from a kind that trains for minutes (fewshot);
    `unlabelled` are texts without a label that the fewshot kind spreads the labels over.

    Raises:
        TrainingError: An unknown kind.
    """
    if kind == "embeddings":
        return build_embeddings_pipeline(counts)
    if kind == "finetuned":
        return FinetunedClassifier(device=device)
    if kind == "ensemble":
        return CascadeEnsemble(counts, device=device)
    if kind == "fewshot":
        return FewShotClassifier(device=device, progress=progress, unlabelled=unlabelled)
    raise TrainingError(f"unknown specialist kind {kind!r}; choose auto, tfidf or one of {KINDS}")
