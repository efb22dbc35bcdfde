"""Argument checks shared by both engines' analytics queries."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInputError
from ._base import _real

# Reported as p50_ms, p95_ms, p99_ms.
PERCENTILES = (0.5, 0.95, 0.99)


def check_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidInputError(f"limit must be an int >= 0, got {limit!r}", "limit")
    return limit


def check_since(since: Any) -> float | None:
    return None if since is None else _real(since, "since")


def check_bucket(bucket_s: Any) -> float:
    b = _real(bucket_s, "bucket_s")
    # Below a millisecond, ts / bucket_s loses meaning (and can overflow the bucket index).
    if b < 1e-3:
        raise InvalidInputError(f"bucket_s must be >= 0.001, got {bucket_s!r}", "bucket_s")
    return b
