"""Write the embedding cache that `fewshot_teacher_cached` reads, with the product's encoders.

    TRIAGEDESK_MINILM_DIR=... TRIAGEDESK_FEWSHOT_TEACHER=<all-mpnet-base-v2 dir> \
        uv run python -m benchmarks.fewshot_cache DIR

DIR gets `texts.json` (every text of Banking77's train.jsonl, both sides of the split, and
every label's name as `fewshot_kind.label_text` writes it), `minilm.npy` (their unit-length
embeddings by the frozen int8 MiniLM the kind serves, `fewshot_kind.frozen_encoder`) and
`mpnet_int8.npy` (by the teacher's ONNX graph, `pool_teacher.teacher_encoder`; the third
pass's `mpnet_fp32.npy` came from sentence-transformers), each written once: the
same vectors a product training computes, once, so that a variant of the pool's guesses
costs seconds instead of a training's minutes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.banking77 import DEFAULT, load_rows


def main(argv: list[str] | None = None) -> int:
    from tui.core.learning.fewshot_kind import frozen_encoder, label_text, unit_rows
    from tui.core.learning.finetuned_kind import minilm_dir
    from tui.core.learning.onnx_encoder import OnnxEncoder
    from tui.core.learning.pool_teacher import teacher_dir, teacher_encoder

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    rows = load_rows(DEFAULT)
    texts = list(dict.fromkeys([r["text"] for r in rows]))
    texts += [n for n in dict.fromkeys(label_text(r["label"]) for r in rows) if n not in texts]
    (out / "texts.json").write_text(json.dumps(texts))
    teacher = teacher_dir()
    if teacher is None:
        print("TRIAGEDESK_FEWSHOT_TEACHER is not set", file=sys.stderr)
        return 2
    for name, folder in (
        ("minilm", frozen_encoder(minilm_dir(), print)),
        ("mpnet_int8", teacher_encoder(teacher, print)),
    ):
        if (out / f"{name}.npy").exists():
            continue
        started = time.process_time()
        vectors = unit_rows(OnnxEncoder(folder).embed(texts))
        np.save(out / f"{name}.npy", vectors)
        print(f"{name}: {len(texts)} texts, {time.process_time() - started:.0f} CPU-s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
