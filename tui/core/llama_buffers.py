"""Loading a GGUF with llama.cpp's extra CPU buffer types (AMX, repacking) off where they crash.

On Intel CPUs with AMX (Sapphire Rapids and later: this project's 2-core machine of
2026-12-03 is one), llama.cpp as built by llama-cpp-python 0.3.36 repacks Q8_0 and Q4_K
weights into its AMX buffer and dies with SIGSEGV in the first decode: the real Gemma 3 270M
as Q4_K_M and Q8_0 and the tests' tiny Q8_0 alike (RESULTS section 10c). Upstream:
ggml-org/llama.cpp#20824 (closed stale, unfixed); dspy removed the AMX variant from its CI for
the same crash. The same files load and answer with `use_extra_bufts` off. llama-cpp-python
does not expose that field, so `model_params_default` swaps the defaults it reads for one load.

`TRIAGEDESK_LLAMA_EXTRA_BUFFERS=auto|on|off`: auto keeps them (their speed) except on a CPU
whose flags say `amx_int8`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ENV = "TRIAGEDESK_LLAMA_EXTRA_BUFFERS"
_SWAP = threading.Lock()


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of /proc/cpuinfo's first `flags` line."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


@functools.cache
def _this_cpu_has_amx() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "amx_int8" in cpu_flags(text)


def extra_buffers_wanted(environ: dict[str, str] | None = None, *, amx: bool | None = None) -> bool:
    """Whether llama.cpp may use its extra CPU buffer types here (see the module's doc).

    Raises:
        ValueError: The variable holds something other than auto, on or off.
    """
    raw = (os.environ if environ is None else environ).get(ENV, "auto").strip().lower() or "auto"
    if raw not in ("auto", "on", "off"):
        raise ValueError(f"{ENV}={raw!r}: expected auto, on or off")
    if raw != "auto":
        return raw == "on"
    return not (_this_cpu_has_amx() if amx is None else amx)


@contextlib.contextmanager
def model_params_default(llama_cpp: Any) -> Iterator[None]:
    """Within the block, `llama_cpp.Llama(...)` loads with extra buffer types off when
    `extra_buffers_wanted()` says so; a no-op otherwise, or where the field is unknown."""
    raw: Any = getattr(llama_cpp, "llama_cpp", None)
    original = getattr(raw, "llama_model_default_params", None)
    if extra_buffers_wanted() or raw is None or original is None:
        yield
        return

    def without_extra_buffers() -> Any:
        params = original()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params

    with _SWAP:  # two loads at once swap and restore the same function, in turn
        raw.llama_model_default_params = without_extra_buffers
        try:
            yield
        finally:
            raw.llama_model_default_params = original


def open_llama(llama_cpp: Any, **options: Any) -> Any:
    """`llama_cpp.Llama(**options)` as every part of triagedesk loads a GGUF (see above), so
    two loads of one file compute the same numbers."""
    with model_params_default(llama_cpp):
        return llama_cpp.Llama(**options)
