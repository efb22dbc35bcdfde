"""PostgreSQL backend (psycopg 3, imported only when a postgresql:// URL is opened).

Each batch is one transaction of ``COPY ... FROM STDIN`` streams, one per table. Percentiles
are ``percentile_cont`` in SQL: linear interpolation between the closest ranks, the same
definition the SQLite backend uses.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ._base import BaseStore
from ._queries import PERCENTILES, SharedQueries
from ._schema import StoreError, migrate_postgres

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise StoreError(
        "postgresql:// stores need psycopg 3: pip install 'modelrouter[store-postgres]'"
    ) from exc

# COPY moves a batch in one stream, several times faster than even pipelined INSERTs.
_COPY = {
    "assignments": "COPY assignments (ts, request, response, strategy, n_agents, n_assigned,"
    " total_score) FROM STDIN",
    "routing_decisions": "COPY routing_decisions (ts, agent_id, model_id, policy, queued,"
    " outcome) FROM STDIN",
    "feedback": "COPY feedback (ts, model_id, agent_id, latency_ms, success, outcome, call_id,"
    " attempt) FROM STDIN",
    "utilization": "COPY utilization (ts, model_id, utilization) FROM STDIN",
}

_STATS = (
    "SELECT model_id, count(*), avg(success::int)::double precision,"
    " percentile_cont(%s::double precision[]) WITHIN GROUP (ORDER BY latency_ms),"
    " avg(latency_ms) FROM feedback {where} GROUP BY model_id ORDER BY model_id"
)

_UTILIZATION = (
    "SELECT floor(ts / %s) * %s AS bucket, model_id, avg(utilization), count(*)"
    " FROM utilization {where} GROUP BY bucket, model_id ORDER BY bucket, model_id"
)


class PostgresStore(SharedQueries, BaseStore):
    """Store in a PostgreSQL database: a writer connection owned by the writer thread and an
    autocommit reader connection for queries; either reconnects after the server goes away."""

    dialect = "postgresql"
    _marker = "%s"
    _utilization_sql = _UTILIZATION

    def __init__(self, url: str, **kw: Any) -> None:
        super().__init__(**kw)
        self._url = url
        try:
            self._write_conn = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the store database: {exc}") from exc
        try:
            migrate_postgres(self._write_conn)
        except BaseException:
            self._write_conn.close()
            raise
        self._read_conn: Any = None
        self._read_lock = threading.Lock()
        self._start()

    def _write_batch(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        if self._write_conn.closed:
            self._write_conn = psycopg.connect(self._url, autocommit=True)
        with self._write_conn.transaction(), self._write_conn.cursor() as cur:
            for table, table_rows in rows.items():
                with cur.copy(_COPY[table]) as copy:
                    for row in table_rows:
                        copy.write_row(row)

    def _reset_writer(self) -> None:
        # A failed transaction() block has already rolled back; a dead connection is reopened
        # by the next _write_batch.
        if self._write_conn.broken:
            self._write_conn.close()

    def _is_transient(self, exc: BaseException) -> bool:
        # Lost connections, server restarts, lock timeouts: retry. Rows it rejects: don't.
        permanent = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError)
        return not isinstance(exc, permanent)

    def _close_connections(self) -> None:
        with self._read_lock:
            if self._read_conn is not None:
                self._read_conn.close()
        self._write_conn.close()

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._read_lock:
            for attempt in (0, 1):
                if self._read_conn is None or self._read_conn.closed:
                    self._read_conn = psycopg.connect(self._url, autocommit=True)
                try:
                    return self._read_conn.execute(sql, params).fetchall()
                except psycopg.OperationalError:
                    if attempt or not self._read_conn.broken:
                        raise
                    self._read_conn.close()  # server restarted: one fresh try
        raise AssertionError("unreachable")

    # -- queries -------------------------------------------------------------------------------

    def model_stats(self, since: float | None = None) -> Sequence[Mapping[str, Any]]:
        where, params = self._since(since)
        out = []
        for model_id, n, success, pcts, mean in self._query(
            _STATS.format(where=where), (list(PERCENTILES), *params)
        ):
            stats: dict[str, Any] = {"model_id": model_id, "count": n, "success_rate": success}
            for p, value in zip(PERCENTILES, pcts):
                stats[f"p{round(p * 100)}_ms"] = value
            stats["mean_ms"] = mean
            out.append(stats)
        return out
