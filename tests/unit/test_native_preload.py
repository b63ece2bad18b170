"""llama.cpp's CUDA libraries load before any other native extension, and only for a CUDA build.

On the H200 machine, a CUDA build of llama-cpp-python that loaded after numpy.linalg, scipy,
aiohttp or frozenlist died with SIGSEGV at its first model (benchmarks/gemma_device/NOTES.md,
run 9); loading `libllama` first fixed every order. These tests run fresh interpreters, as the
order only exists once per process.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _fake_llama_cpp(root: Path, *, cuda: bool) -> Path:
    """A `llama_cpp` package whose lib/ holds a real shared library named libllama.so."""
    lib = root / "llama_cpp" / "lib"
    lib.mkdir(parents=True)
    (root / "llama_cpp" / "__init__.py").write_text("")
    found = ctypes.util.find_library("m")
    assert found, "libm must exist on a Linux test machine"
    system = next(
        p
        for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64")
        if (p := Path(d) / found).exists()
    )
    shutil.copy(system, lib / "libllama.so")
    if cuda:
        (lib / "libggml-cuda.so").write_bytes(b"")  # only looked for, never loaded
    return lib / "libllama.so"


def _run(code: str, path: Path, **env: str) -> str:
    environ = {**os.environ, "PYTHONPATH": f"{path}{os.pathsep}{REPO}", **env}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, check=True
    )
    return done.stdout.strip()


LOADED = "import tui; print(any({lib!r} in line for line in open('/proc/self/maps')))"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
def test_a_cuda_build_has_libllama_loaded_by_the_first_import_of_tui(tmp_path: Path) -> None:
    lib = _fake_llama_cpp(tmp_path, cuda=True)
    assert _run(LOADED.format(lib=str(lib)), tmp_path) == "True"
    assert _run(LOADED.format(lib=str(lib)), tmp_path, TRIAGEDESK_NATIVE_PRELOAD="off") == "False"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
def test_a_cpu_build_loads_nothing_at_import(tmp_path: Path) -> None:
    lib = _fake_llama_cpp(tmp_path, cuda=False)
    assert _run(LOADED.format(lib=str(lib)), tmp_path) == "False"


def test_the_preload_runs_before_numpy_from_every_entry_module(tmp_path: Path) -> None:
    """sys.modules keeps import order: the preload module must come before numpy's."""
    for entry in ("tui.cli", "backends.llamacpp_local", "tui.services.routing.worker_run"):
        order = _run(
            f"import sys, {entry}; names = list(sys.modules); "
            "print(names.index('tui.native_preload') < names.index('numpy') "
            "if 'numpy' in names else True)",
            tmp_path,
        )
        assert order == "True", entry
