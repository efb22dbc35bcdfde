"""The analytics queries both engines share, and their argument checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import InvalidInputError
from ._base import TABLES, _real

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


_ASSIGNMENT_KEYS = (
    "ts",
    "request",
    "response",
    "strategy",
    "n_agents",
    "n_assigned",
    "total_score",
)
_FEEDBACK_KEYS = (
    "ts",
    "model_id",
    "agent_id",
    "latency_ms",
    "success",
    "outcome",
    "call_id",
    "attempt",
)
_ROUTE_KEYS = ("ts", "agent_id", "model_id", "policy", "queued", "outcome")


class SharedQueries:
    """Queries written once for both engines. An engine names its parameter marker, its
    utilization SQL (every marker in it is the bucket width, then ``{where}``), how it decodes
    a JSON column, and runs ``_query``; ``model_stats`` is its own."""

    _marker = "?"
    _utilization_sql = ""
    _decode_json: Callable[[Any], Any] = staticmethod(lambda value: value)

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _since(self, since: Any) -> tuple[str, tuple[Any, ...]]:
        """The WHERE clause and its parameters for an optional lower bound on ts."""
        since = check_since(since)
        return (f"WHERE ts >= {self._marker}", (since,)) if since is not None else ("", ())

    def assignments(self, limit: int = 100) -> Sequence[Mapping[str, Any]]:
        """Most recent auto-assign calls first, request and response decoded."""
        rows = self._query(
            f"SELECT {', '.join(_ASSIGNMENT_KEYS)} FROM assignments"
            f" ORDER BY ts DESC, id DESC LIMIT {self._marker}",
            (check_limit(limit),),
        )
        out = [dict(zip(_ASSIGNMENT_KEYS, r)) for r in rows]
        for d in out:
            for column in ("request", "response"):
                d[column] = self._decode_json(d[column])
        return out

    def routes(self, limit: int = 100) -> Sequence[Mapping[str, Any]]:
        """Most recent routing decisions first."""
        rows = self._query(
            f"SELECT {', '.join(_ROUTE_KEYS)} FROM routing_decisions"
            f" ORDER BY ts DESC, id DESC LIMIT {self._marker}",
            (check_limit(limit),),
        )
        return [dict(zip(_ROUTE_KEYS, r), queued=bool(r[4])) for r in rows]

    def feedback(self, limit: int = 100, call_id: str | None = None) -> Sequence[Mapping[str, Any]]:
        """Most recent feedback rows first: latency, success and the outcome kind (None for
        failures recorded before the store kept it); with ``call_id``, the attempts of that
        one ``Router.call``."""
        where, params = "", ()
        if call_id is not None:
            if not isinstance(call_id, str):
                raise InvalidInputError(f"call_id must be a string, got {call_id!r}", "call_id")
            where, params = f"WHERE call_id = {self._marker}", (call_id,)
        rows = self._query(
            f"SELECT {', '.join(_FEEDBACK_KEYS)} FROM feedback {where}"
            f" ORDER BY ts DESC, id DESC LIMIT {self._marker}",
            (*params, check_limit(limit)),
        )
        return [dict(zip(_FEEDBACK_KEYS, r), success=bool(r[4])) for r in rows]

    def utilization_over_time(
        self, bucket_s: float = 60.0, since: float | None = None
    ) -> Sequence[Mapping[str, Any]]:
        b = check_bucket(bucket_s)
        where, params = self._since(since)
        widths = (b,) * self._utilization_sql.count(self._marker)
        rows = self._query(self._utilization_sql.format(where=where), (*widths, *params))
        return [
            {"ts": float(t), "model_id": m, "utilization": u, "samples": c} for t, m, u, c in rows
        ]

    def counts(self) -> dict[str, int]:
        """Rows per table (committed ones)."""
        return {t: self._query(f"SELECT count(*) FROM {t}", ())[0][0] for t in TABLES}

    def schema_version(self) -> int:
        return self._query("SELECT max(version) FROM schema_version", ())[0][0]
