"""A tiny two-label ticket world and a tiny 'fine-tuned' ONNX encoder for it.

The encoder is committed under tests/data/tiny_encoder, so the serving tests (OnnxEncoder,
the finetuned and ensemble kinds) run without torch; exporting it needs torch, which the
default test environment does not carry. Regenerate it after changing the export with

    uv run --with torch==2.13.0 python -m tests.unit.tiny_encoder

(test_specialist_kinds checks, where torch is installed, that a fresh export still matches).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from tui.core.learning.bert_torch import BertShape, random_bert

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "tiny_encoder"
SHAPE = BertShape(hidden=16, heads=2, layers=2)
CONFIG = {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 2}
WORDS = {
    "billing": ["charged", "refund", "invoice", "payment", "card", "twice"],
    "shipping": ["parcel", "tracking", "delivery", "courier", "late", "package"],
}
FILLER = ["my", "the", "is", "where", "please", "a"]
VOCAB = ["[PAD]", "[UNK]", *FILLER, *(w for ws in WORDS.values() for w in ws)]


def make_data(n: int = 40, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = sorted(WORDS)[i % 2]
        words = list(rng.choice(WORDS[label], 2)) + list(rng.choice(FILLER, 2))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def tiny_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tokenizer = Tokenizer(WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.save(str(path))
    return path


def build_tiny_encoder(out: Path) -> Path:
    """A random encoder whose head separates the two labels by their words (needs torch)."""
    from sklearn.linear_model import LogisticRegression

    from tui.core.learning.onnx_encoder import OnnxEncoder, export_encoder

    weights = random_bert(SHAPE, vocab=len(VOCAB), positions=32)
    texts, labels = make_data(200, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        tok = tiny_tokenizer(Path(tmp) / "tok.json")
        # Fit the head on the random encoder's embeddings: a stand-in for fine-tuning.
        plain = export_encoder(weights, CONFIG, tok, Path(tmp) / "plain", int8=False)
        head = LogisticRegression(C=100, max_iter=2000).fit(OnnxEncoder(plain).embed(texts), labels)
        w = np.vstack([-head.coef_[0], head.coef_[0]])
        b = np.array([-head.intercept_[0], head.intercept_[0]])
        return export_encoder(
            weights, CONFIG, tok, out, head=(w, b), classes=sorted(WORDS), int8=False
        )


def copy_fixture(target: Path) -> Path:
    """The committed tiny encoder, copied where a test may write beside it."""
    shutil.copytree(FIXTURE, target)
    return target


if __name__ == "__main__":
    shutil.rmtree(FIXTURE, ignore_errors=True)
    print(build_tiny_encoder(FIXTURE))
