"""Where llama.cpp's `convert_hf_to_gguf.py` comes from, and running it.

The converter is not in any wheel: the installed `llama_cpp` package carries only the
compiled library, and the `gguf` package on PyPI has the writer but not the converter. It
ships in the llama-cpp-python source distribution under `vendor/llama.cpp`, together with the
matching `gguf-py/` (the converter puts that one first on its path). So the product keeps an
extract of the sdist in its data folder, one per llama-cpp-python version, made once from
the tarball the user downloads with pip; a llama.cpp checkout works as well. The same version
as the installed llama-cpp-python writes GGUFs that build is sure to read.

Found in this order: `--converter PATH` (a folder or the sdist tarball), then the
`TRIAGEDESK_LLAMA_CPP` environment variable (same forms), then the cached extract.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Literal

from tui.core import paths
from tui.core.learning.llm.errors import FinetuneError

CONVERTER_ENV = "TRIAGEDESK_LLAMA_CPP"
SCRIPT = "convert_hf_to_gguf.py"
NEEDED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
"""What the extract keeps of the 77 MB sdist: the converters, their package, gguf-py (2 MB)."""
_VENDOR = "vendor/llama.cpp/"
_SDIST_TOP = re.compile(r"^llama_cpp_python-(?P<version>[^/]+)/")
OutType = Literal["q8_0", "f16", "bf16", "f32"]
"""What the converter writes by itself (smaller types need llama.cpp's quantizer, and
re-quantising the merged Gemma 3 270M to Q4_K_M broke it: 48/100)."""


def installed_version() -> str | None:
    """The installed llama-cpp-python's version, which the cached extract is keyed by."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


def cache_root() -> Path:
    return paths.data_dir() / "llama.cpp"


def how_to_get(version: str | None) -> str:
    """The commands that fetch the converter, for the error that says it is missing."""
    pin = f"=={version}" if version else ""
    name = f"llama_cpp_python-{version}.tar.gz" if version else "llama_cpp_python-*.tar.gz"
    return (
        f"pip download 'llama-cpp-python{pin}' --no-deps --no-binary :all: -d DIR, then pass"
        f" --converter DIR/{name} once (it is kept in {cache_root()}) or set {CONVERTER_ENV}"
    )


def find(given: Path | None = None) -> Path:
    """The folder holding `convert_hf_to_gguf.py` and its `gguf-py/`.

    Raises:
        FinetuneError: Nothing usable was given and nothing is cached; the message says how
            to get it.
    """
    env = os.environ.get(CONVERTER_ENV)
    for candidate, origin in ((given, "--converter"), (Path(env) if env else None, CONVERTER_ENV)):
        if candidate is not None:
            return _use(candidate.expanduser(), origin)
    version = installed_version()
    if version is not None:
        cached = cache_root() / version
        if (cached / SCRIPT).is_file():
            return cached
    raise FinetuneError(f"llama.cpp's {SCRIPT} is needed to write the GGUF: {how_to_get(version)}")


def _use(path: Path, origin: str) -> Path:
    if path.is_dir():
        for folder in (path, path / "vendor" / "llama.cpp"):
            if (folder / SCRIPT).is_file():
                return folder
        raise FinetuneError(f"{origin} {path}: no {SCRIPT} in this folder")
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        return extract_sdist(path, cache_root())
    raise FinetuneError(f"{origin} {path}: not a llama.cpp folder or a llama-cpp-python sdist")


def extract_sdist(tarball: Path, root: Path) -> Path:
    """Extract the converter from a llama-cpp-python sdist into `root/<version>` (once).

    The extract is built in a temporary folder and renamed into place, so an interrupted run
    never leaves a half-written converter behind.

    Raises:
        FinetuneError: Not a readable llama-cpp-python sdist, or it has no converter.
    """
    try:
        with tarfile.open(tarball, "r:*") as archive:
            members = archive.getmembers()
            top = next((m for m in (_SDIST_TOP.match(x.name) for x in members) if m), None)
            if top is None:
                raise FinetuneError(f"{tarball}: not a llama-cpp-python source distribution")
            version = top["version"]
            target = root / version
            if (target / SCRIPT).is_file():
                return target
            prefix = top.group(0) + _VENDOR
            wanted = [
                m
                for m in members
                if m.name.startswith(prefix) and m.name[len(prefix) :].startswith(NEEDED)
            ]
            if not any(m.name == prefix + SCRIPT for m in wanted):
                raise FinetuneError(f"{tarball}: has no {_VENDOR}{SCRIPT}")
            root.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=root))
            try:
                for member in wanted:
                    member.name = member.name[len(prefix) :]
                    archive.extract(member, scratch, filter="data")
                with contextlib.suppress(FileExistsError, OSError):
                    scratch.rename(target)  # another run may have won the race: keep its copy
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    except (OSError, tarfile.TarError) as exc:
        raise FinetuneError(f"{tarball}: cannot extract the converter: {exc}") from exc
    if not (target / SCRIPT).is_file():
        raise FinetuneError(f"{tarball}: extracting into {target} failed")
    return target


def convert(converter: Path, model_dir: Path, outfile: Path, outtype: OutType) -> Path:
    """Run `convert_hf_to_gguf.py` on a saved Hugging Face folder, in a child process.

    A child process keeps the converter's imports (its own gguf-py, its logging set-up)
    out of this one, and its memory is returned when it ends.

    Raises:
        FinetuneError: The converter failed; the message ends with its last output lines.
    """
    command = [
        sys.executable,
        str(converter / SCRIPT),
        str(model_dir),
        "--outfile",
        str(outfile),
        "--outtype",
        outtype,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not outfile.is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise FinetuneError(f"{SCRIPT} failed (exit {done.returncode}):\n{tail}")
    return outfile
