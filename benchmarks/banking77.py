"""The fixed Banking77 evaluation split that every specialist benchmark uses.

80 % / 20 % of `banking77/train.jsonl`, stratified by intent, seed 0: the same rows on every
machine (the GPU run and the CPU benchmark), so their figures can be compared.
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "banking77" / "train.jsonl"

Rows = list[dict[str, str]]


def load_rows(path: Path = DEFAULT) -> Rows:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def split(rows: Rows, *, test_size: float = 0.2, seed: int = 0) -> tuple[Rows, Rows]:
    """Stratified train/test split of the rows (scikit-learn's, so it is reproducible)."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        rows, test_size=test_size, random_state=seed, stratify=[r["label"] for r in rows]
    )
    return list(train), list(test)
