"""Decision store: every assignment, routing decision and feedback record, persisted.

Interface fixed here first so the REST service can be written against it; the implementation
(SQLite with WAL by default, PostgreSQL via a URL, batched background writes, versioned
migrations, analytics queries) lands with the store work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


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
    ) -> None:
        """One finished request's latency and outcome."""
        ...

    def record_utilization(self, samples: Mapping[str, float], ts: float | None = None) -> None:
        """Per-model utilization at one instant (the service samples it periodically)."""
        ...

    def assignments(self, limit: int = 100) -> Sequence[Mapping[str, Any]]:
        """Most recent assignments first: {"ts", "request", "response"}."""
        ...

    def model_stats(self, since: float | None = None) -> Sequence[Mapping[str, Any]]:
        """Per model: {"model_id", "count", "success_rate", "p50_ms", "p95_ms", "p99_ms"}."""
        ...

    def utilization_over_time(
        self, bucket_s: float = 60.0, since: float | None = None
    ) -> Sequence[Mapping[str, Any]]:
        """{"ts" (bucket start), "model_id", "utilization" (mean in bucket)} rows."""
        ...

    def flush(self) -> None:
        """Blocks until every record handed in so far is durable."""
        ...

    def close(self) -> None:
        """Flushes, then releases the connection; idempotent."""
        ...


def open_store(url: str | None = None) -> DecisionStore:
    """``sqlite:///path/to/file.db`` (default ``sqlite:///modelrouter.db``), ``sqlite://:memory:``
    or ``postgresql://user:pass@host/db``."""
    raise NotImplementedError("the decision store implementation lands with the store work")
