"""Load llama.cpp's CUDA libraries first, where a CUDA build is installed.

On the H200 machine (NOTES.md, run 9) a process that had loaded certain native extensions first
(numpy.linalg's OpenBLAS, scipy, aiohttp's and frozenlist's Cython modules) died with SIGSEGV as
soon as llama.cpp's CUDA build loaded a model, on GPU and CPU layers alike; loading `libllama`
first (here, or with LD_PRELOAD) made every one of those orders work. The product imports aiohttp
long before a `llamacpp-local` backend opens its model, so the order is fixed at the first import
of `tui`. Only a CUDA build pays (a stat finds `libggml-cuda`); CPU builds load nothing here.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from pathlib import Path


def preload_cuda_llama() -> bool:
    """dlopen `libllama` of an installed CUDA build of llama-cpp-python; False if there is none."""
    if os.environ.get("TRIAGEDESK_NATIVE_PRELOAD", "auto") == "off":
        return False
    try:
        spec = importlib.util.find_spec("llama_cpp")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    if not any(lib.glob("libggml-cuda.so*")):
        return False
    try:
        ctypes.CDLL(str(lib / "libllama.so"), mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return False
    return True
