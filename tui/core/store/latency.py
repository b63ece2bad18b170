"""The latency histogram's buckets: shared by the v3 backfill, the writers and the readers."""

from __future__ import annotations

import math

LATENCY_BASE = 1.01
"""Latency histogram buckets grow by 1 %: percentiles at any scale within 1 % of exact."""


def latency_bucket(ms: float) -> int:
    return math.floor(math.log(max(ms, 0.001)) / math.log(LATENCY_BASE))


def bucket_value(bucket: int) -> float:
    """The geometric middle of a bucket: what a percentile falling in it reports."""
    return float(LATENCY_BASE ** (bucket + 0.5))
