"""Versioned schema migrations for both engines.

Each version is a list of SQL statements; version ``n`` is ``MIGRATIONS[dialect][n - 1]``.
Every pending version is applied in one transaction together with its ``schema_version`` row,
so a crash mid-upgrade leaves the database at the old version, never half-way. Append new
versions at the end; never edit a released one (databases in the field already ran it).
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import RouterError


class StoreError(RouterError):
    """The decision store cannot do what was asked (closed, schema too new, database gone)."""


_SQLITE: list[list[str]] = [
    # 1: decisions and feedback.
    [
        "CREATE TABLE assignments (id INTEGER PRIMARY KEY, ts REAL NOT NULL,"
        " request TEXT NOT NULL, response TEXT NOT NULL)",
        "CREATE INDEX assignments_ts ON assignments (ts)",
        "CREATE TABLE routing_decisions (id INTEGER PRIMARY KEY, ts REAL NOT NULL,"
        " agent_id TEXT NOT NULL, model_id TEXT, policy TEXT NOT NULL,"
        " queued INTEGER NOT NULL, outcome TEXT NOT NULL)",
        "CREATE INDEX routing_decisions_model_ts ON routing_decisions (model_id, ts)",
        "CREATE TABLE feedback (id INTEGER PRIMARY KEY, ts REAL NOT NULL, model_id TEXT NOT NULL,"
        " agent_id TEXT, latency_ms REAL NOT NULL, success INTEGER NOT NULL)",
        "CREATE INDEX feedback_model_ts ON feedback (model_id, ts)",
    ],
    # 2: assignment summary columns (backfilled from the stored JSON) and utilization samples.
    [
        "ALTER TABLE assignments ADD COLUMN strategy TEXT",
        "ALTER TABLE assignments ADD COLUMN n_agents INTEGER",
        "ALTER TABLE assignments ADD COLUMN n_assigned INTEGER",
        "ALTER TABLE assignments ADD COLUMN total_score REAL",
        # Same rules as record_assignment: wrong JSON types give NULL.
        "UPDATE assignments SET"
        " strategy = CASE WHEN json_type(response, '$.strategy_used') = 'text'"
        " THEN json_extract(response, '$.strategy_used') END,"
        " n_agents = CASE WHEN json_type(request, '$.agents') = 'array'"
        " THEN json_array_length(request, '$.agents') END,"
        " n_assigned = CASE WHEN json_type(response, '$.assignments') = 'array'"
        " THEN json_array_length(response, '$.assignments') END,"
        " total_score = CASE WHEN json_type(response, '$.total_score') IN ('integer', 'real')"
        " THEN json_extract(response, '$.total_score') END",
        "CREATE TABLE utilization (id INTEGER PRIMARY KEY, ts REAL NOT NULL,"
        " model_id TEXT NOT NULL, utilization REAL NOT NULL)",
        "CREATE INDEX utilization_model_ts ON utilization (model_id, ts)",
        "CREATE INDEX utilization_ts ON utilization (ts)",
    ],
    # 3: the outcome kind of each feedback row (modelrouter.OUTCOMES); earlier successes were
    # "ok", earlier failures stay NULL (their kind was not recorded).
    [
        "ALTER TABLE feedback ADD COLUMN outcome TEXT",
        "UPDATE feedback SET outcome = 'ok' WHERE success = 1",
    ],
    # 4: which call an attempt belonged to (Router.call / acall with a store): one call id per
    # call, attempt 0, 1, ... in order; NULL for feedback that is not part of such a call.
    [
        "ALTER TABLE feedback ADD COLUMN call_id TEXT",
        "ALTER TABLE feedback ADD COLUMN attempt INTEGER",
        "CREATE INDEX feedback_call ON feedback (call_id)",
    ],
]

_POSTGRES: list[list[str]] = [
    [
        "CREATE TABLE assignments (id BIGSERIAL PRIMARY KEY, ts DOUBLE PRECISION NOT NULL,"
        " request JSONB NOT NULL, response JSONB NOT NULL)",
        "CREATE INDEX assignments_ts ON assignments (ts)",
        "CREATE TABLE routing_decisions (id BIGSERIAL PRIMARY KEY, ts DOUBLE PRECISION NOT NULL,"
        " agent_id TEXT NOT NULL, model_id TEXT, policy TEXT NOT NULL,"
        " queued BOOLEAN NOT NULL, outcome TEXT NOT NULL)",
        "CREATE INDEX routing_decisions_model_ts ON routing_decisions (model_id, ts)",
        "CREATE TABLE feedback (id BIGSERIAL PRIMARY KEY, ts DOUBLE PRECISION NOT NULL,"
        " model_id TEXT NOT NULL, agent_id TEXT, latency_ms DOUBLE PRECISION NOT NULL,"
        " success BOOLEAN NOT NULL)",
        "CREATE INDEX feedback_model_ts ON feedback (model_id, ts)",
    ],
    [
        "ALTER TABLE assignments ADD COLUMN strategy TEXT, ADD COLUMN n_agents INTEGER,"
        " ADD COLUMN n_assigned INTEGER, ADD COLUMN total_score DOUBLE PRECISION",
        "UPDATE assignments SET"
        " strategy = CASE WHEN jsonb_typeof(response->'strategy_used') = 'string'"
        " THEN response->>'strategy_used' END,"
        " n_agents = CASE WHEN jsonb_typeof(request->'agents') = 'array'"
        " THEN jsonb_array_length(request->'agents') END,"
        " n_assigned = CASE WHEN jsonb_typeof(response->'assignments') = 'array'"
        " THEN jsonb_array_length(response->'assignments') END,"
        " total_score = CASE WHEN jsonb_typeof(response->'total_score') = 'number'"
        " THEN (response->>'total_score')::double precision END",
        "CREATE TABLE utilization (id BIGSERIAL PRIMARY KEY, ts DOUBLE PRECISION NOT NULL,"
        " model_id TEXT NOT NULL, utilization DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX utilization_model_ts ON utilization (model_id, ts)",
        "CREATE INDEX utilization_ts ON utilization (ts)",
    ],
    [
        "ALTER TABLE feedback ADD COLUMN outcome TEXT",
        "UPDATE feedback SET outcome = 'ok' WHERE success",
    ],
    [
        "ALTER TABLE feedback ADD COLUMN call_id TEXT, ADD COLUMN attempt INTEGER",
        "CREATE INDEX feedback_call ON feedback (call_id)",
    ],
]

MIGRATIONS: dict[str, list[list[str]]] = {"sqlite": _SQLITE, "postgresql": _POSTGRES}
SCHEMA_VERSION = len(_SQLITE)
assert len(_POSTGRES) == SCHEMA_VERSION, "both engines must share version numbers"

_CREATE_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
    " applied_at DOUBLE PRECISION NOT NULL)"
)


def _pending(dialect: str, current: int, target: int) -> list[tuple[int, list[str]]]:
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {current} is newer than this modelrouter understands "
            f"(up to {SCHEMA_VERSION}); upgrade modelrouter or use another database"
        )
    steps = MIGRATIONS[dialect]
    return [(v, steps[v - 1]) for v in range(current + 1, target + 1)]


def _upgrade(conn: Any, dialect: str, marker: str, target: int | None) -> int:
    """Applies the steps from the recorded version up to ``target`` on ``conn``, inside the
    caller's transaction; returns the version reached."""
    target = SCHEMA_VERSION if target is None else target
    conn.execute(_CREATE_VERSION_TABLE)
    current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
    for version, statements in _pending(dialect, current, target):
        for sql in statements:
            conn.execute(sql)
        conn.execute(
            f"INSERT INTO schema_version VALUES ({marker}, {marker})", (version, time.time())
        )
        current = version
    return current


def migrate_sqlite(conn: Any, target: int | None = None) -> int:
    """Brings an SQLite database (connection in autocommit mode) up to ``target`` (default:
    latest). ``BEGIN IMMEDIATE`` takes the write lock first, so two processes opening the same
    file cannot both apply a step."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = _upgrade(conn, "sqlite", "?", target)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return current


def migrate_postgres(conn: Any, target: int | None = None) -> int:
    """The same for PostgreSQL; a transaction-scoped advisory lock serialises concurrent
    openers (``CREATE TABLE IF NOT EXISTS`` alone races on the catalog)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('modelrouter.schema_version'))")
        return _upgrade(conn, "postgresql", "%s", target)
