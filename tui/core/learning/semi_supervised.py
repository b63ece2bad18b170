"""Label spreading over the inbox's unlabelled tickets, for the fewshot kind's head.

A team in its first week has a few labels per queue but thousands of tickets nobody has
labelled yet. Those texts say where the classes' borders run: spreading the few labels along
a k-nearest-neighbour graph of the sentence embeddings (Zhou et al., "Learning with local and
global consistency", 2004) gives every unlabelled ticket a guessed label, and the head then
learns from the labels and, at a lower weight, the guesses. On Banking77 that bought 5 points
at 5 labels per class and 2 at 10 and 20 (benchmarks/RESULTS.md, section 4c). Only texts
without a label go into the pool, and none of their guesses is ever scored as a label.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_UNLABELLED = 1000
"""Fewest unlabelled texts worth a graph: with fewer the guesses add noise, not borders."""
MAX_UNLABELLED = 5000
"""Most texts spread to without a teacher: the graph and the head's extra rows stay a minute on
two cores (with one, `pool_teacher.TEACHER_MAX_UNLABELLED`)."""
NEIGHBOURS = 10
"""Edges per text in the kNN graph (k=20 lost 0.4-1 point on Banking77: looser borders)."""
ALPHA = 0.8
"""Share of a text's label that comes from its neighbours, the rest from its own seed."""
ITERATIONS = 20
"""Spreading steps: 0.8 ** 20 is 1 %, so further steps change no guess worth counting."""
POOL_WEIGHT = 0.5
"""Sample weight of a guessed label in the head, against 1 for an agent's label."""
SHARPEN = 3
"""Edge weight is cosine ** SHARPEN: near neighbours count far more than the k-th one."""


@dataclass(frozen=True)
class Spread:
    """The guessed label of each unlabelled text and how sure the spreading was of it;
    `scores`, each text's share of every class (rows sum to 1, or 0 where no label reached
    it), for a second opinion to be mixed in (`pool_teacher.cross_fitted`)."""

    labels: np.ndarray
    confidence: np.ndarray
    scores: np.ndarray | None = None


def pool_texts(
    candidates: Sequence[str],
    labelled: Sequence[str],
    *,
    cap: int = MAX_UNLABELLED,
    seed: int = 0,
) -> list[str]:
    """Up to `cap` distinct candidate texts that are not labelled ones, a seeded sample.

    A labelled text is left out even when it comes again without its label: it would pull
    its own label into the pool at weight 1 and count the same ticket twice.
    """
    seen = {t.strip() for t in labelled}
    pool: list[str] = []
    for text in candidates:
        key = text.strip()
        if key and key not in seen:
            seen.add(key)
            pool.append(text)
    if len(pool) > cap:
        pool = random.Random(seed).sample(pool, cap)
    return pool


def knn_graph(vectors: np.ndarray, k: int = NEIGHBOURS, block: int = 1024) -> np.ndarray:
    """Each row's `k` nearest other rows by cosine (rows are unit length), shape (n, k).

    Computed a block of rows at a time, so 9,000 texts need 36 MB, not a 320 MB matrix.
    """
    n = len(vectors)
    k = min(k, n - 1)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block):
        sims = vectors[start : start + block] @ vectors.T
        rows = np.arange(len(sims))
        sims[rows, rows + start] = -np.inf  # never its own neighbour
        out[start : start + block] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return out


def spread_labels(
    labelled: np.ndarray,
    labels: Sequence[str],
    unlabelled: np.ndarray,
    classes: Sequence[str],
    *,
    k: int = NEIGHBOURS,
    alpha: float = ALPHA,
    iterations: int = ITERATIONS,
) -> Spread:
    """Spread `labels` over the kNN graph of both sets of unit-length embeddings.

    F <- alpha * S F + (1 - alpha) * Y, with S the symmetric, degree-normalised graph and Y
    the agents' labels (zero rows for the unlabelled texts). A text no label reaches keeps
    confidence 0 and the label its nearest labelled text has.
    """
    from scipy.sparse import csr_matrix, diags

    x = np.vstack([labelled, unlabelled]).astype(np.float32)
    n, n_labelled = len(x), len(labelled)
    neighbours = knn_graph(x, k)
    rows = np.repeat(np.arange(n), neighbours.shape[1])
    cols = neighbours.ravel()
    weights = np.maximum(np.einsum("ij,ij->i", x[rows], x[cols]), 0.0) ** SHARPEN
    graph = csr_matrix((weights, (rows, cols)), shape=(n, n))
    graph = graph + graph.T
    degree = np.asarray(graph.sum(axis=1)).ravel()
    scale = diags(1.0 / np.sqrt(np.maximum(degree, 1e-12)))
    normalised = scale @ graph @ scale
    index = {c: i for i, c in enumerate(classes)}
    seeds = np.zeros((n, len(classes)))
    seeds[np.arange(n_labelled), [index[c] for c in labels]] = 1.0
    f = seeds.copy()
    for _ in range(iterations):
        f = alpha * (normalised @ f) + (1 - alpha) * seeds
    guessed = f[n_labelled:]
    total = guessed.sum(axis=1)
    confidence = np.where(total > 0, guessed.max(axis=1) / np.maximum(total, 1e-12), 0.0)
    best = guessed.argmax(axis=1)
    unreached = total <= 0
    if unreached.any():
        nearest = (unlabelled[unreached] @ labelled.T).argmax(axis=1)
        best[unreached] = [index[labels[i]] for i in nearest]
    scores = guessed / np.maximum(total, 1e-12)[:, None]
    return Spread(np.asarray(classes)[best], confidence, scores)
