"""The GGUF check's child process: the served file answers held-out tickets in a fresh Python.

Why a fresh interpreter and not a multiprocessing child: on the H200 machine (2026-12-02, run 6
of `benchmarks/gemma_device/NOTES.md`) a process that had imported numpy before llama-cpp-python
loaded a CUDA model died with SIGSEGV or `free(): invalid pointer`, on the GPU and on the CPU
alike, while a process that imported llama_cpp first answered. A spawned multiprocessing child
unpickles its target's module (which imports numpy) before it can load llama.cpp; this child
runs `import llama_cpp` before anything else, and torch's CUDA context stays in the parent.

    python -c "import llama_cpp; from tui.core.learning.llm.gguf_check import main; main()" \\
        REQUEST.json RESULT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """Read the request (model, tickets, threads, GPU layers), write accuracy and p50."""
    from tui.core.learning.llm.data import Example
    from tui.core.learning.llm.export import score_gguf
    from tui.core.safe_files import write_private

    request_path, result_path = argv if argv is not None else sys.argv[1:3]
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    examples = [Example(text=e["text"], label=e["label"]) for e in request["examples"]]
    accuracy, p50 = score_gguf(
        Path(request["model"]),
        examples,
        n_threads=request["n_threads"],
        n_gpu_layers=request["n_gpu_layers"],
        label_tokens=request.get("label_tokens"),
    )
    write_private(Path(result_path), json.dumps({"accuracy": accuracy, "p50_ms": p50}))
