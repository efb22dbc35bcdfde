"""SQLite backend: WAL journal, ``synchronous=NORMAL``.

WAL lets queries read while the writer commits. With ``synchronous=NORMAL`` a committed batch
survives the process dying (SIGKILL included); only a power cut or OS crash can roll back the
last transactions, which is the usual trade for not fsyncing every commit.

Percentiles: linear interpolation between the two closest ranks (Hyndman & Fan type 7), the same
as PostgreSQL's ``percentile_cont`` and numpy's default ``percentile(method="linear")``. Window
functions pick the two ranks in SQL; Python does the final interpolation.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._base import BaseStore
from ._queries import PERCENTILES, SharedQueries
from ._schema import StoreError, migrate_sqlite

_INSERT = {
    "assignments": "INSERT INTO assignments (ts, request, response, strategy, n_agents,"
    " n_assigned, total_score) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "routing_decisions": "INSERT INTO routing_decisions (ts, agent_id, model_id, policy, queued,"
    " outcome) VALUES (?, ?, ?, ?, ?, ?)",
    "feedback": "INSERT INTO feedback (ts, model_id, agent_id, latency_ms, success, outcome,"
    " call_id, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "utilization": "INSERT INTO utilization (ts, model_id, utilization) VALUES (?, ?, ?)",
}


def _rank_columns() -> str:
    cols = []
    for p in PERCENTILES:
        lo = f"CAST((n - 1) * {p!r} AS INTEGER)"
        cols.append(f"MAX(CASE WHEN i = {lo} THEN v END)")
        cols.append(f"MAX(CASE WHEN i = MIN({lo} + 1, n - 1) THEN v END)")
    return ", ".join(cols)


_STATS = (
    "WITH r AS (SELECT model_id, latency_ms AS v, success,"
    " ROW_NUMBER() OVER (PARTITION BY model_id ORDER BY latency_ms) - 1 AS i,"
    " COUNT(*) OVER (PARTITION BY model_id) AS n FROM feedback {where})"
    f" SELECT model_id, MAX(n), AVG(success), AVG(v), {_rank_columns()}"
    " FROM r GROUP BY model_id ORDER BY model_id"
)

# floor(ts / b) without the math extension: CAST truncates toward zero, so correct negatives.
_UTILIZATION = (
    "SELECT k * ? AS bucket, model_id, AVG(utilization), COUNT(*) FROM ("
    " SELECT CAST(ts / ? AS INTEGER) - (ts < 0 AND ts / ? <> CAST(ts / ? AS INTEGER)) AS k,"
    " model_id, utilization FROM utilization {where})"
    " GROUP BY k, model_id ORDER BY k, model_id"
)


def interpolate(n: int, p: float, lo: float, hi: float) -> float:
    """Type-7 percentile from the two ranks around ``(n - 1) * p``."""
    h = (n - 1) * p
    return lo + (hi - lo) * (h - math.floor(h))


class SQLiteStore(SharedQueries, BaseStore):
    """Default store: one file (or ``:memory:``), a writer connection used only by the writer
    thread and a reader connection for queries. ``:memory:`` shares one connection, since
    separate connections would see separate databases."""

    dialect = "sqlite"
    _marker = "?"
    _utilization_sql = _UTILIZATION
    _decode_json = staticmethod(json.loads)

    def __init__(self, path: str = "modelrouter.db", **kw: Any):
        super().__init__(**kw)
        self.path = path
        self._memory = path == ":memory:"
        self._durable = not self._memory
        try:
            self._write_conn = self._connect()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {path!r}: {exc}") from exc
        try:
            migrate_sqlite(self._write_conn)
        except BaseException:
            self._write_conn.close()
            raise
        self._read_conn = self._write_conn if self._memory else self._connect()
        self._read_lock = threading.Lock()
        self._start()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves; timeout waits on other writers.
        conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        if not self._memory:
            _switch_to_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _write_batch(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        conn = self._write_conn
        lock = self._read_lock if self._memory else None
        if lock is not None:
            lock.acquire()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for table, table_rows in rows.items():
                    conn.executemany(_INSERT[table], table_rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            if lock is not None:
                lock.release()

    def _reset_writer(self) -> None:
        pass  # the rollback in _write_batch leaves the connection usable

    def _is_transient(self, exc: BaseException) -> bool:
        # "database is locked" / disk full / I/O errors may pass; constraint or type errors won't.
        return isinstance(exc, sqlite3.OperationalError)

    def _close_connections(self) -> None:
        with self._read_lock:
            self._read_conn.close()
            if not self._memory:
                self._write_conn.close()

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._read_lock:
            return self._read_conn.execute(sql, params).fetchall()

    # -- queries -------------------------------------------------------------------------------

    def model_stats(self, since: float | None = None) -> Sequence[Mapping[str, Any]]:
        where, params = self._since(since)
        out = []
        for row in self._query(_STATS.format(where=where), params):
            model_id, n, success, mean = row[:4]
            stats: dict[str, Any] = {"model_id": model_id, "count": n, "success_rate": success}
            for k, p in enumerate(PERCENTILES):
                lo, hi = row[4 + 2 * k], row[5 + 2 * k]
                stats[f"p{round(p * 100)}_ms"] = interpolate(n, p, lo, hi)
            stats["mean_ms"] = mean
            out.append(stats)
        return out


def _switch_to_wal(conn: sqlite3.Connection, timeout_s: float = 30.0) -> None:
    """``PRAGMA journal_mode=WAL``, retried: switching needs a moment alone with the file, and
    SQLite does not wait for it (its busy timeout does not cover this pragma), so several
    services opening one new database at once would otherwise fail with "database is locked"."""
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
