"""Decision store: every assignment, routing decision and feedback record, persisted.

SQLite (WAL) by default, PostgreSQL via a URL. ``record_*`` calls validate and enqueue; one
background thread per store commits in batches, so the hot path never waits on disk. Schema
migrations are versioned (``schema_version`` table) and applied on open.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import unquote, urlsplit

from ..errors import InvalidInputError
from ._base import BaseStore
from ._schema import SCHEMA_VERSION, StoreError
from ._signals import install_signal_handlers
from ._sqlite import SQLiteStore

DEFAULT_URL = "sqlite:///modelrouter.db"
_S = TypeVar("_S")


@runtime_checkable
class DecisionStore(Protocol):
    """What the service needs from a store. Every method is thread-safe; writes are batched
    and become visible to queries after ``flush()`` (or within the batch interval)."""

    def record_assignment(
        self, request: Mapping[str, Any], response: Mapping[str, Any], ts: float | None = None
    ) -> None:
        """One POST auto-assign-all: its request and response bodies."""
        ...

    def record_route(
        self,
        agent_id: str,
        model_id: str | None,
        policy: str,
        *,
        queued: bool = False,
        outcome: str = "routed",
        ts: float | None = None,
    ) -> None:
        """One routing decision (``outcome`` is "routed", "no_capacity" or "infeasible")."""
        ...

    def record_feedback(
        self,
        model_id: str,
        latency_ms: float,
        success: bool,
        agent_id: str | None = None,
        ts: float | None = None,
        *,
        outcome: str | None = None,
        call_id: str | None = None,
        attempt: int | None = None,
    ) -> None:
        """One finished request's latency and outcome: ``outcome`` is one of
        ``modelrouter.OUTCOMES`` ("ok", "rate_limited", "server_error", ...), by default "ok"
        or "failed" after ``success``. ``call_id`` and ``attempt`` (0, 1, ...) tie the
        attempts of one ``Router.call`` together."""
        ...

    def record_utilization(self, samples: Mapping[str, float], ts: float | None = None) -> None:
        """Per-model utilization at one instant (the service samples it periodically)."""
        ...

    def assignments(self, limit: int = 100) -> Sequence[Mapping[str, Any]]:
        """Most recent assignments first: {"ts", "request", "response"}, plus the summary
        columns "strategy", "n_agents", "n_assigned", "total_score" (None where absent)."""
        ...

    def model_stats(self, since: float | None = None) -> Sequence[Mapping[str, Any]]:
        """Per model: {"model_id", "count", "success_rate", "p50_ms", "p95_ms", "p99_ms"}
        (+ "mean_ms"), over feedback with ``ts >= since``. Percentiles are exact, linear
        interpolation between the closest ranks (numpy's default, PostgreSQL's
        ``percentile_cont``)."""
        ...

    def utilization_over_time(
        self, bucket_s: float = 60.0, since: float | None = None
    ) -> Sequence[Mapping[str, Any]]:
        """{"ts" (bucket start, a multiple of ``bucket_s``), "model_id", "utilization" (mean
        in bucket), "samples"} rows, oldest bucket first."""
        ...

    def flush(self) -> None:
        """Blocks until every record handed in so far is durable. Implementations also take
        ``timeout=`` (seconds, then ``StoreError``)."""
        ...

    def close(self) -> None:
        """Flushes, then releases the connection; idempotent. Later ``record_*`` calls raise
        ``StoreError``."""
        ...

    def __enter__(self: _S) -> _S:
        """``with open_store(url) as store:`` closes it on the way out."""
        ...

    def __exit__(self, *exc: object) -> None: ...


def open_store(url: str | None = None, **options: Any) -> DecisionStore:
    """``sqlite:///path/to/file.db`` (default ``sqlite:///modelrouter.db``, or the
    ``MODELROUTER_STORE_URL`` environment variable when ``url`` is None), ``sqlite://:memory:``
    or ``postgresql://user:pass@host/db`` (needs ``modelrouter[store-postgres]``).

    As in SQLAlchemy, ``sqlite:///rel/x.db`` is relative to the working directory and
    ``sqlite:////abs/x.db`` absolute. ``options`` go to the store: ``batch_size`` (500),
    ``flush_interval_s`` (0.05), ``max_queue`` (10,000 rows before callers block),
    ``put_timeout_s`` (30).
    """
    if url is None:
        url = os.environ.get("MODELROUTER_STORE_URL") or DEFAULT_URL
    if not isinstance(url, str):
        raise InvalidInputError(f"url must be a string, got {url!r}", "url")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise InvalidInputError(f"url {url!r} has no scheme (sqlite:// or postgresql://)", "url")
    if scheme == "sqlite":
        if rest in (":memory:", "/:memory:"):
            return SQLiteStore(":memory:", **options)
        if not rest.startswith("/") or len(rest) < 2:
            raise InvalidInputError(
                f"url {url!r}: expected sqlite:///relative/path.db, sqlite:////absolute/path.db"
                " or sqlite://:memory:",
                "url",
            )
        return SQLiteStore(unquote(rest[1:]), **options)
    if scheme in ("postgresql", "postgres"):
        if not urlsplit(url).path.strip("/") and "dbname=" not in url:
            raise InvalidInputError(f"url {url!r} names no database", "url")
        from ._postgres import PostgresStore

        return PostgresStore(url, **options)
    raise InvalidInputError(
        f"unsupported store url scheme {scheme!r} in {url!r}; use sqlite:// or postgresql://",
        "url",
    )


__all__ = [
    "DEFAULT_URL",
    "SCHEMA_VERSION",
    "BaseStore",
    "DecisionStore",
    "SQLiteStore",
    "StoreError",
    "install_signal_handlers",
    "open_store",
]
