"""The decision store's batched writer keeps its promise on both engines: a transaction holds
at most ``batch_size`` rows, a full batch commits without waiting for ``flush_interval_s``, and
a partial one commits within the interval. Commits are observed from a second connection and by
wrapping the writer's ``_write_batch`` (never by sleeping and hoping)."""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from modelrouter.store import open_store

# The `url` fixture (each engine) is in conftest.py.


@contextmanager
def committed_rows(url: str) -> Iterator[Callable[[], int]]:
    """A second connection to the store's database: how many feedback rows are committed."""
    if url.startswith("sqlite"):
        conn: Any = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
    else:
        import psycopg

        conn = psycopg.connect(url, autocommit=True)
    try:
        yield lambda: int(conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])
    finally:
        conn.close()


def record_commits(store: Any) -> list[tuple[float, list[float]]]:
    """Wraps the writer's transaction: (monotonic time it committed, the rows' ts) per batch."""
    commits: list[tuple[float, list[float]]] = []
    write = store._write_batch

    def write_batch(rows: dict[str, list[tuple[Any, ...]]]) -> None:
        write(rows)
        commits.append((time.monotonic(), [r[0] for table in rows.values() for r in table]))

    store._write_batch = write_batch
    return commits


def wait_for(condition: Callable[[], bool], timeout_s: float) -> float:
    """Polls `condition` until it holds; the seconds it took (fails after `timeout_s`)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout_s, f"not within {timeout_s} s"
        time.sleep(0.005)
    return time.monotonic() - start


def writer_waiting(store: Any) -> bool:
    """The writer thread is blocked in its wait for the next interval or wake-up."""
    frame = sys._current_frames().get(store._thread.ident)
    return frame is not None and frame.f_code.co_name == "wait"


def test_a_full_batch_commits_without_waiting_for_the_interval(url):
    # An interval of an hour: only reaching batch_size can make the writer commit.
    with open_store(url, batch_size=50, flush_interval_s=3600) as store:
        commits = record_commits(store)
        with committed_rows(url) as committed:
            for batch in range(1, 4):
                wait_for(lambda: writer_waiting(store), timeout_s=20)
                for i in range(50):
                    store.record_feedback("m", 1.0, True, ts=float(i))
                wait_for(lambda n=50 * batch: committed() == n, timeout_s=20)
            # One transaction per full batch, holding all of it.
            assert [len(rows) for _, rows in commits] == [50, 50, 50]


def test_no_transaction_holds_more_than_batch_size_rows(url):
    with open_store(url, batch_size=50, flush_interval_s=3600) as store:
        commits = record_commits(store)
        for i in range(1234):
            store.record_feedback("m", 1.0, True, ts=float(i))
        store.flush()
        sizes = [len(rows) for _, rows in commits]
        assert sum(sizes) == 1234 and max(sizes) == 50, sizes


def test_a_partial_batch_commits_within_the_interval(url):
    interval, duration = 0.25, 1.5
    # batch_size is never reached: only the interval makes the writer commit.
    with open_store(url, batch_size=10_000, flush_interval_s=interval) as store:
        commits = record_commits(store)
        with committed_rows(url) as committed:
            n, start = 0, time.monotonic()
            while time.monotonic() - start < duration:  # a trickle: a row every 10 ms
                store.record_feedback("m", 1.0, True, ts=time.monotonic())
                n += 1
                time.sleep(0.01)
            wait_for(lambda: committed() == n, timeout_s=20)
    delays = [at - ts for at, rows in commits for ts in rows]
    assert len(delays) == n
    # Each row is committed at most one interval after it was recorded (plus the commit
    # itself, generously bounded)...
    assert max(delays) < interval + 0.75, max(delays)
    # ...and rows are batched, not committed one by one: about duration / interval
    # transactions (a row landing during a commit may start one more right after it).
    assert 2 <= len(commits) <= 2 * (duration / interval + 2), len(commits)
