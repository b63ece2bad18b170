"""Fetch llama-cpp-python's sdist from PyPI and repack it small enough to carry to the device.

The registry's sdist (76 MB for 0.3.36) is over the device's 64 MiB working-tree limit. This
downloads it with `pip download` (into a git-ignored cache), unpacks it, drops what no build
needs (git history, llama.cpp's model vocabularies, docs, examples, tests, benches, the web
UI's JavaScript sources) and writes `.device/gpu_llamacpp/llama_cpp_python-VERSION-stripped.tar.gz`
(about 9 MB). Nothing is vendored into the repository.

The web UI folder keeps only its CMake files: with `LLAMA_BUILD_UI=OFF` and
`LLAMA_USE_PREBUILT_UI=OFF`, llama.cpp's `llama-server` builds without embedded UI assets,
which the benchmark does not need.

    python benchmarks/gpu_llamacpp/repack_sdist.py [--version 0.3.36] [--sdist FILE]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "0.3.36"
REPO = Path(__file__).resolve().parents[2]

STRIP = (
    ".git",
    "docs",
    "examples",
    "tests",
    "docker",
    "vendor/llama.cpp/.git",
    "vendor/llama.cpp/models",
    "vendor/llama.cpp/docs",
    "vendor/llama.cpp/benches",
    "vendor/llama.cpp/examples",
    "vendor/llama.cpp/tests",
    "vendor/llama.cpp/media",
    "vendor/llama.cpp/pocs",
    "vendor/llama.cpp/tools/mtmd/test-3.mp4",
    "vendor/llama.cpp/tools/ui/src",
    "vendor/llama.cpp/tools/ui/static",
    "vendor/llama.cpp/tools/ui/tests",
    "vendor/llama.cpp/tools/ui/package-lock.json",
)
"""Paths, relative to the unpacked sdist, that no CUDA build of the library or server needs.

`pocs` and `tests` are only added with LLAMA_BUILD_EXAMPLES / LLAMA_BUILD_TESTS, both off
when llama.cpp is a subproject."""


def download(version: str, cache: Path) -> Path:
    """The registry's sdist, fetched once with pip into `cache`."""
    name = f"llama_cpp_python-{version}.tar.gz"
    target = cache / name
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"llama-cpp-python=={version}",
            "-d",
            str(cache),
        ],
        check=True,
    )
    if not target.is_file():
        raise SystemExit(f"pip did not leave {target}")
    return target


def strip(root: Path) -> int:
    """Delete the STRIP paths under `root`; returns how many existed."""
    removed = 0
    for relative in STRIP:
        path = root / relative
        if path.is_dir():
            shutil.rmtree(path)
            removed += 1
        elif path.exists():
            path.unlink()
            removed += 1
    return removed


def repack(sdist: Path, out: Path) -> Path:
    """Unpack `sdist`, strip it and write the smaller tarball into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as archive:
            archive.extractall(tmp, filter="data")
        (top,) = Path(tmp).iterdir()
        removed = strip(top)
        target = out / sdist.name.replace(".tar.gz", "-stripped.tar.gz")
        with tarfile.open(target, "w:gz", compresslevel=9) as archive:
            archive.add(top, arcname=top.name)
    print(f"stripped {removed} paths: {sdist.stat().st_size / 2**20:.1f} MiB ->", end=" ")
    print(f"{target.stat().st_size / 2**20:.1f} MiB at {target}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=VERSION)
    parser.add_argument("--out", type=Path, default=REPO / ".device" / "gpu_llamacpp")
    parser.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "out" / "sdist")
    parser.add_argument("--sdist", type=Path, help="use this sdist instead of downloading")
    args = parser.parse_args()
    sdist = args.sdist or download(args.version, args.cache)
    repack(sdist, args.out)


if __name__ == "__main__":
    main()
