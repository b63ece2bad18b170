"""Exact and near-duplicate detection for labelled training rows.

Duplicates inflate a label's weight and leak between the train and validation splits, so the
export drops them. Exact duplicates are equal after case folding and whitespace collapsing.
Near duplicates have a Jaccard similarity of at least 0.9 between their sets of character
5-grams; candidates come from MinHash signatures (128 hash functions) cut into 16 bands of 8
rows (locality-sensitive hashing), so the work grows with the number of rows, not its square.
Candidates whose signatures agree enough are confirmed with the exact Jaccard of the 5-grams.

Why not datasketch's MinHash and MinHashLSH: the same algorithm on them groups 1.4-4.5x slower
and adds ~3.7 s of import (scipy.integrate) to every export; `benchmarks/dedup_speed.py` and
benchmarks/RESULTS.md section 7 have the figures.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

SHINGLE = 5
NUM_PERM = 128
BANDS = 16
ROWS = NUM_PERM // BANDS
NEAR_THRESHOLD = 0.9
METHOD = (
    f"exact: equal after case folding and whitespace collapsing; near: Jaccard >= "
    f"{NEAR_THRESHOLD} of character {SHINGLE}-gram sets, candidates by MinHash LSH "
    f"({NUM_PERM} hashes, {BANDS} bands of {ROWS} rows), confirmed exactly"
)
"""One line for report.json, so readers know what "duplicate" meant."""

_SPACE = re.compile(r"\s+")
_PAD = "\0" * (SHINGLE - 1)
_BLOCK_CHARS = 16_384
"""Characters hashed per vectorised block: NUM_PERM x this x 4 bytes (8 MiB) stays in cache."""

_rng = np.random.default_rng(20240501)
_MULTIPLIERS = _rng.integers(1, 2**32, size=NUM_PERM, dtype=np.uint64).astype(np.uint32) | 1
_SALTS = _rng.integers(0, 2**32, size=NUM_PERM, dtype=np.uint64).astype(np.uint32)
_BAND_WEIGHTS = _rng.integers(1, 2**63, size=ROWS, dtype=np.uint64) | np.uint64(1)
_BASE = np.uint64(1_000_003)
_PREFILTER = 0.7
"""Signature agreement below which a candidate is skipped without the exact check. The
estimate's standard error at 0.9 is 0.027, so this is over 7 errors below any true match,
while templated tickets (often 0.5-0.8 alike) skip most exact checks."""


def normalise(text: str) -> str:
    """The comparison form of a text: case-folded, whitespace collapsed, trimmed."""
    return _SPACE.sub(" ", text).strip().casefold()


def _window_hashes(padded: str) -> np.ndarray:
    """32-bit hashes of every 5-character window of a string (a polynomial rolling hash over
    code points: vectorised, and unlike Python's `hash` the same in every process)."""
    codes = np.frombuffer(padded.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    count = codes.size - SHINGLE + 1
    hashed = np.zeros(count, dtype=np.uint64)
    for offset in range(SHINGLE):
        hashed = hashed * _BASE + codes[offset : offset + count]
    return (hashed ^ (hashed >> np.uint64(32))).astype(np.uint32)


def shingles(normalised: str) -> np.ndarray:
    """Sorted unique hashes of the text's character 5-grams.

    The text is padded with 4 NULs, so it has one 5-gram per character and a text shorter
    than 5 still has some.
    """
    return np.unique(_window_hashes((normalised or "\x01") + _PAD))


def _signatures(keys: Sequence[str]) -> np.ndarray:
    """MinHash signatures, one row per text, hashed in cache-sized blocks of texts.

    Shingles are never kept: memory stays at the signatures (512 bytes a text) however many
    rows there are.
    """
    out = np.empty((len(keys), NUM_PERM), dtype=np.uint32)
    start = 0
    while start < len(keys):
        stop, chars = start, 0
        while stop < len(keys) and (stop == start or chars < _BLOCK_CHARS):
            chars += len(keys[stop] or "\x01") + SHINGLE - 1
            stop += 1
        texts = [(k or "\x01") for k in keys[start:stop]]
        hashed = _window_hashes("".join(t + _PAD for t in texts) + _PAD)
        lengths = np.array([len(t) for t in texts])
        starts = np.concatenate(([0], np.cumsum(lengths + SHINGLE - 1)[:-1]))
        valid = np.zeros(hashed.size, dtype=bool)
        valid[np.repeat(starts, lengths) + _ranges(lengths)] = True
        windows = hashed[valid]
        mixed = np.bitwise_xor(windows[None, :], _SALTS[:, None])
        np.multiply(mixed, _MULTIPLIERS[:, None], out=mixed)
        np.bitwise_xor(mixed, mixed >> np.uint32(16), out=mixed)
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        out[start:stop] = np.minimum.reduceat(mixed, offsets, axis=1).T
        start = stop
    return out


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """0..n-1 for each n in `lengths`, concatenated."""
    ends = np.cumsum(lengths)
    offsets: np.ndarray = np.arange(ends[-1]) - np.repeat(ends - lengths, lengths)
    return offsets


def _band_hashes(signatures: np.ndarray) -> list[list[int]]:
    """One 64-bit hash per band per row; equal bands give equal hashes (a rare collision
    only adds a candidate, which the exact check then rejects)."""
    bands = signatures.astype(np.uint64).reshape(len(signatures), BANDS, ROWS)
    combined = (bands * _BAND_WEIGHTS).sum(axis=2, dtype=np.uint64)
    hashes: list[list[int]] = combined.tolist()
    return hashes


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays."""
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


@dataclass(slots=True)
class Groups:
    """Rows grouped by duplication: each group's first row is its representative."""

    members: list[list[int]] = field(default_factory=list)
    """Row indices of each group, in input order."""
    kinds: dict[int, str] = field(default_factory=dict)
    """'exact' or 'near' for every row that duplicates an earlier one."""


def group_duplicates(texts: Sequence[str], *, near: bool = True) -> Groups:
    """Group exact and near-duplicate texts, greedily in input order.

    A row joins the group of the first earlier representative it duplicates; otherwise it
    starts a group. Near matching compares a row only with representatives that share an LSH
    band with it.

    Args:
        texts: The texts, in the order whose first occurrence should be kept.
        near: Also group near duplicates (False: exact only).

    Returns:
        The groups and the kind of each duplicate row.
    """
    exact = exact_pass(texts)
    keys, pending, group_of_rep = exact.keys, exact.pending, exact.group_of_rep
    if not near or len(pending) < 2:
        return exact.groups
    signatures = _signatures([keys[i] for i in pending])
    band_hashes = _band_hashes(signatures)
    buckets: list[dict[int, list[int]]] = [{} for _ in range(BANDS)]

    @functools.lru_cache(maxsize=20_000)
    def rep_shingles(row: int) -> np.ndarray:
        return shingles(keys[pending[row]])

    merged_into: dict[int, int] = {}
    for row, index in enumerate(pending):
        row_set: np.ndarray | None = None
        seen: set[int] = set()
        match: int | None = None
        for b, band in enumerate(band_hashes[row]):
            for other in buckets[b].get(band, []):
                if other in seen:
                    continue
                seen.add(other)
                agreeing = np.count_nonzero(signatures[row] == signatures[other])
                if agreeing < _PREFILTER * NUM_PERM:
                    continue
                if row_set is None:
                    row_set = shingles(keys[index])
                if jaccard(row_set, rep_shingles(other)) >= NEAR_THRESHOLD:
                    match = other
                    break
            if match is not None:
                break
        if match is None:
            for b, band in enumerate(band_hashes[row]):
                buckets[b].setdefault(band, []).append(row)
            continue
        merged_into[index] = group_of_rep[pending[match]]
    return merge_near(exact, merged_into)


@dataclass(slots=True)
class ExactPass:
    """Exact duplicates grouped; what near matching starts from."""

    groups: Groups
    keys: list[str]
    """Each text normalised."""
    pending: list[int]
    """The representatives of the exact groups, in input order: near-match candidates."""
    group_of_rep: dict[int, int]
    """Representative row -> its group's index in `groups.members`."""


def exact_pass(texts: Sequence[str]) -> ExactPass:
    """Group rows whose normalised texts are equal; each group's first row represents it."""
    result = ExactPass(Groups(), [normalise(t) for t in texts], [], {})
    by_key: dict[str, int] = {}
    groups = result.groups
    for index, key in enumerate(result.keys):
        if key in by_key:
            groups.members[by_key[key]].append(index)
            groups.kinds[index] = "exact"
            continue
        by_key[key] = len(groups.members)
        result.group_of_rep[index] = len(groups.members)
        groups.members.append([index])
        result.pending.append(index)
    return result


def merge_near(exact: ExactPass, merged_into: dict[int, int]) -> Groups:
    """Fold each representative's exact group into the group it near-duplicates
    (`merged_into`: representative row -> target group index) and drop emptied groups."""
    groups = exact.groups
    if not merged_into:
        return groups
    for index, target in merged_into.items():
        source = exact.group_of_rep[index]
        for member in groups.members[source]:
            groups.kinds.setdefault(member, "near")
        groups.kinds[index] = "near"
        groups.members[target].extend(groups.members[source])
        groups.members[source] = []
    groups.members = [sorted(m) for m in groups.members if m]
    return groups
