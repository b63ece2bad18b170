"""Near-duplicate grouping: the product's numpy MinHash/LSH against the same algorithm on datasketch.

Issue 13 asked to replace the hand-written MinHash/LSH in `tui/core/dedup.py` with datasketch's
`MinHash` and `MinHashLSH`, keeping the measured speed. This runs both on real ticket texts and
says which is faster. The datasketch version below is the candidate replacement written as
well as the library allows: the same 5-gram shingles, 128 permutations in 16 bands of 8 rows,
the same 0.7 signature prefilter and exact Jaccard confirmation, each text's shingles hashed
once, signatures from `MinHash.generator` (which reuses the permutations), representatives
inserted into one `MinHashLSH` and queried greedily in input order.

Both are timed in one process on the same texts after a warm-up (median of `--repeats`, range
in brackets); the import of each in a fresh interpreter is timed too, since `triagedesk
export` pays it once per run. The two also have to agree: the script counts the groups that
differ (only tie-breaks between two representatives a row is 0.9-similar to can differ).

    uv run --group bench python -m benchmarks.dedup_speed
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from tui.core import dedup

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DEFAULT_SETS = ("bitext_cs_20k/bitext_cs_20k.jsonl", "banking77/train.jsonl")


def group_duplicates_datasketch(texts: Sequence[str]) -> dedup.Groups:
    """`dedup.group_duplicates` with datasketch's MinHash and MinHashLSH for the candidates."""
    from datasketch import MinHash, MinHashLSH

    exact = dedup.exact_pass(texts)
    keys, pending, group_of_rep = exact.keys, exact.pending, exact.group_of_rep
    if len(pending) < 2:
        return exact.groups
    row_sets: list[np.ndarray] = []

    def shingle_lists() -> Iterator[list[int]]:
        for index in pending:  # each row's shingles once: for its signature, then its check
            row_sets.append(dedup.shingles(keys[index]))
            yield row_sets[-1].tolist()

    def identity(value: int) -> int:  # the shingles are hashed already; datasketch mixes again
        return value

    signatures = MinHash.generator(
        shingle_lists(), num_perm=dedup.NUM_PERM, seed=20240501, hashfunc=identity
    )
    lsh = MinHashLSH(num_perm=dedup.NUM_PERM, params=(dedup.BANDS, dedup.ROWS))
    reps: dict[int, MinHash] = {}
    rep_sets: OrderedDict[int, np.ndarray] = OrderedDict()
    merged_into: dict[int, int] = {}
    for row, (index, signature) in enumerate(zip(pending, signatures, strict=True)):
        row_set = row_sets.pop()
        match = None
        for other in sorted(lsh.query(signature)):
            if signature.jaccard(reps[other]) < 0.7:
                continue
            other_set = rep_sets.get(other)
            if other_set is None:
                other_set = dedup.shingles(keys[pending[other]])
            if dedup.jaccard(row_set, other_set) >= dedup.NEAR_THRESHOLD:
                match = other
                break
        if match is not None:
            merged_into[index] = group_of_rep[pending[match]]
            continue
        lsh.insert(row, signature, check_duplication=False)
        reps[row] = signature
        rep_sets[row] = row_set
        if len(rep_sets) > 20_000:
            rep_sets.popitem(last=False)
    return dedup.merge_near(exact, merged_into)


def load_texts(relative: str) -> list[str]:
    with (DATASETS / relative).open(encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


def timed(fn: Callable[[], dedup.Groups], repeats: int) -> tuple[list[float], dedup.Groups]:
    result = fn()  # warm-up: numpy and datasketch code paths, caches
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - started)
    return samples, result


def import_seconds(statement: str, repeats: int) -> list[float]:
    """Wall time of a fresh interpreter running `statement`, less one running `pass`."""

    def run(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        return time.perf_counter() - started

    return [run(statement) - run("pass") for _ in range(repeats)]


def fmt(samples: list[float]) -> str:
    return f"{statistics.median(samples):.2f} ({min(samples):.2f}-{max(samples):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    rows = []
    print(
        "| texts | rows | near | exact | numpy s | datasketch s | datasketch / numpy | groups that differ |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for relative in args.sets:
        texts = load_texts(relative)
        ours, ours_groups = timed(lambda t=texts: dedup.group_duplicates(t), args.repeats)
        theirs, their_groups = timed(lambda t=texts: group_duplicates_datasketch(t), args.repeats)
        a = {frozenset(m) for m in ours_groups.members}
        b = {frozenset(m) for m in their_groups.members}
        near = sum(1 for kind in ours_groups.kinds.values() if kind == "near")
        exact = sum(1 for kind in ours_groups.kinds.values() if kind == "exact")
        ratio = statistics.median(theirs) / statistics.median(ours)
        row = {
            "set": relative,
            "rows": len(texts),
            "near": near,
            "exact": exact,
            "numpy_s": ours,
            "datasketch_s": theirs,
            "ratio": ratio,
            "groups_differing": len(a - b),
            "groups": len(a),
        }
        rows.append(row)
        print(
            f"| {relative} | {len(texts):,} | {near} | {exact} | {fmt(ours)} | {fmt(theirs)} "
            f"| {ratio:.2f}x | {len(a - b)} of {len(a):,} |"
        )
    ours_import = import_seconds("import tui.core.dedup", args.repeats)
    their_import = import_seconds(
        "import tui.core.dedup; from datasketch import MinHash, MinHashLSH", args.repeats
    )
    print(f"\nimport in a fresh interpreter: numpy version {fmt(ours_import)} s, ")
    print(f"with datasketch {fmt(their_import)} s (it imports scipy.integrate for its LSH)")
    if args.json:
        payload = {"sets": rows, "import_numpy_s": ours_import, "import_datasketch_s": their_import}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
