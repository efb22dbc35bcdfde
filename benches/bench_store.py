"""Sustained routing-decision inserts through the decision store's batched writer, on SQLite
(WAL, synchronous=NORMAL, a file in a temp dir) and PostgreSQL (MODELROUTER_BENCH_POSTGRES_URL,
else a throwaway local cluster with fsync on, from modelrouter.testing.postgres as in the tests),
against the naive one-INSERT-one-COMMIT-per-decision loop a service would otherwise run on its
request path.

Like for like: per engine both methods write the same rows (same count, same values) into the
same table state, an empty ``routing_decisions`` table (a new SQLite file, or TRUNCATE on
PostgreSQL) at the start of every repetition, with the same repetitions and no warm-up. The
two differ in when a decision is committed, which the section states.

Usage: python benches/bench_store.py [--scale 1.0 --repeat 3]"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import statistics
import sys
import tempfile
import textwrap
import time

from modelrouter.store import open_store

ROWS = {"sqlite": 100_000, "postgresql": 10_000}  # per repetition, both methods
BATCH_SIZE, FLUSH_INTERVAL_S = 500, 0.05


def row(i: int) -> tuple[float, str, str, str, bool, str]:
    """Decision ``i``: the same values through both methods."""
    return (float(i), f"agent-{i % 1000}", f"deploy-{i % 16}", "least_loaded", False, "routed")


def batched(url: str, n: int) -> tuple[float, float, int]:
    """(decisions/s from the first call until flush() returns, mean caller-side µs per call,
    which includes any back-pressure wait, rows in the table afterwards) at ``url``."""
    with open_store(url, batch_size=BATCH_SIZE, flush_interval_s=FLUSH_INTERVAL_S) as store:
        rows = [row(i) for i in range(n)]
        start = time.perf_counter()
        for ts, agent, model, policy, queued, outcome in rows:
            store.record_route(agent, model, policy, queued=queued, outcome=outcome, ts=ts)
        enqueued = time.perf_counter()
        store.flush()
        elapsed = time.perf_counter() - start
        stored = store.counts()["routing_decisions"]
    return n / elapsed, (enqueued - start) / n * 1e6, stored


def naive_sqlite(path: str, n: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    sql = (
        "INSERT INTO routing_decisions (ts, agent_id, model_id, policy, queued, outcome)"
        " VALUES (?, ?, ?, ?, ?, ?)"
    )
    rows = [row(i) for i in range(n)]
    start = time.perf_counter()
    for values in rows:
        conn.execute("BEGIN")
        conn.execute(sql, values)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def naive_postgres(url: str, n: int) -> float:
    import psycopg

    sql = (
        "INSERT INTO routing_decisions (ts, agent_id, model_id, policy, queued, outcome)"
        " VALUES (%s, %s, %s, %s, %s, %s)"
    )
    rows = [row(i) for i in range(n)]
    with psycopg.connect(url, autocommit=True) as conn:
        start = time.perf_counter()
        for values in rows:
            conn.execute(sql, values)
        return n / (time.perf_counter() - start)


def empty_sqlite(path: str) -> str:
    """A new SQLite file with the store's schema and an empty table."""
    if os.path.exists(path):
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + suffix)
    with open_store(f"sqlite:///{path}"):
        pass
    return path


def empty_postgres(url: str) -> dict[str, str]:
    """Schema in place and routing_decisions empty; returns the server's durability settings."""
    import psycopg

    with open_store(url):
        pass
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE routing_decisions")
        return {
            k: str(conn.execute(f"SHOW {k}").fetchone()[0])  # type: ignore[index]
            for k in ("fsync", "synchronous_commit")
        }


def measure(name: str, n: int, repeat: int, fresh, run_batched, run_naive) -> dict[str, object]:
    """Both methods ``repeat`` times each, alternating, every run on an empty table."""
    b_rates, b_call, naive, stored = [], [], [], []
    for _ in range(repeat):
        fresh()
        rate, call_us, rows = run_batched(n)
        b_rates.append(rate)
        b_call.append(call_us)
        stored.append(rows)
        fresh()
        naive.append(run_naive(n))
    best = max(range(repeat), key=b_rates.__getitem__)
    return {
        "name": name,
        "rows": n,
        "batched": (b_rates[best], statistics.median(b_rates)),
        "call_us": b_call[best],
        "naive": (max(naive), statistics.median(naive)),
        "all_stored": all(rows == n for rows in stored),
    }


@contextlib.contextmanager
def postgres_url():
    url = os.environ.get("MODELROUTER_BENCH_POSTGRES_URL")
    if url:
        yield url, "MODELROUTER_BENCH_POSTGRES_URL"
        return
    from modelrouter.testing import postgres

    with postgres.cluster(fsync=True) as admin, postgres.database(admin) as db:
        yield db, "local PostgreSQL cluster, fsync on"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply the row counts")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    counts = {k: max(1, int(v * args.scale)) for k, v in ROWS.items()}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/bench.db"
        results.append(
            measure(
                "SQLite (WAL, synchronous=NORMAL)",
                counts["sqlite"],
                args.repeat,
                lambda: empty_sqlite(path),
                lambda n: batched(f"sqlite:///{path}", n),
                lambda n: naive_sqlite(path, n),
            )
        )
    pg_settings: dict[str, str] = {}
    try:
        with postgres_url() as (url, setup):
            pg_settings = empty_postgres(url)
            results.append(
                measure(
                    f"PostgreSQL ({setup})",
                    counts["postgresql"],
                    args.repeat,
                    lambda: empty_postgres(url),
                    lambda n: batched(url, n),
                    lambda n: naive_postgres(url, n),
                )
            )
    except Exception as exc:  # noqa: BLE001 - report and keep the SQLite numbers
        print(f"PostgreSQL skipped: {exc!r}", file=sys.stderr)

    print("## Decision store\n")
    intro = (
        "`python benches/bench_store.py` (run by `make bench`): per engine, the same rows "
        "(count in the table) written by two methods from one Python thread, each run starting "
        f"from an empty `routing_decisions` table, {args.repeat} runs per method, alternating, "
        "no warm-up; best and median run. Batched: `record_route` calls through the store's "
        f"writer thread (transactions of up to {BATCH_SIZE} rows, every "
        f"{FLUSH_INTERVAL_S * 1000:g} ms), timed from the first call until `flush()` returns, "
        "i.e. until every row is committed; the caller's µs/call (best run) include waiting on "
        "a full queue. Per row: one INSERT + COMMIT per decision on the same table. The speed-up "
        "divides the best batched rate by the best per-row rate."
    )
    print(textwrap.fill(intro, 100, break_on_hyphens=False), end="\n\n")
    print(
        "| engine | rows per run | batched decisions/s (best / median) | caller µs/call "
        "| per-row commit/s (best / median) | speed-up |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        (b_best, b_med), (n_best, n_med) = r["batched"], r["naive"]
        print(
            f"| {r['name']} | {r['rows']:,} | {b_best:,.0f} / {b_med:,.0f} | {r['call_us']:.1f} "
            f"| {n_best:,.0f} / {n_med:,.0f} | {b_best / n_best:.0f}× |"
        )
    pg = (
        f"PostgreSQL as configured in this run (fsync={pg_settings['fsync']}, "
        f"synchronous_commit={pg_settings['synchronous_commit']})"
        if pg_settings
        else "PostgreSQL (not run)"
    )
    durability = (
        "Durability: per row, a decision is committed before its call returns. Batched, a "
        "decision waits in the process's memory until its batch commits (at most "
        f"{FLUSH_INTERVAL_S * 1000:g} ms or {BATCH_SIZE} rows later, longer when the database "
        "is slow); if the process dies first, the decisions still queued are lost. A committed "
        "row is as durable as the engine's commit: SQLite in WAL with synchronous=NORMAL keeps "
        "it when the process dies but may roll back the last transactions on a power cut or "
        f"OS crash; {pg} keeps it on a power cut when both are on."
    )
    print()
    print(textwrap.fill(durability, 100, break_on_hyphens=False))
    for r in results:
        if not r["all_stored"]:
            print(f"\n{r['name']}: a batched run left fewer rows in the table than it recorded.")


if __name__ == "__main__":
    main()
