"""Decision store durability: nothing acknowledged is lost on close, SIGTERM, contention,
back-pressure, rejected rows or a dropped database connection (both engines)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading

import pytest

from modelrouter.store import StoreError, open_store
from modelrouter.testing import postgres

# The `url` (each engine), `store` and `postgres_admin_url` fixtures are in conftest.py.


@pytest.mark.parametrize("batch_size,max_queue", [(1, 10), (7, 50), (500, 10_000)])
def test_close_then_reopen_loses_nothing(url, batch_size, max_queue):
    # No flush: close() alone must commit everything that was acknowledged.
    s = open_store(url, batch_size=batch_size, max_queue=max_queue, flush_interval_s=10.0)
    for i in range(1500):
        s.record_route(f"agent-{i}", "m", "weighted", ts=float(i))
        s.record_feedback("m", float(i), i % 3 != 0, ts=float(i))
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.record_feedback("m", 1.0, True)
    with open_store(url) as again:
        assert again.counts()["routing_decisions"] == 1500
        assert again.counts()["feedback"] == 1500
        agents = {r["agent_id"] for r in again.routes(limit=10_000)}
        assert agents == {f"agent-{i}" for i in range(1500)}


def test_concurrent_writers_all_persisted(url):
    # A small queue so the eight threads also meet back-pressure.
    per_thread, n_threads = 800, 8
    s = open_store(url, max_queue=64, batch_size=50)
    barrier = threading.Barrier(n_threads)

    def work(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            s.record_route(f"t{t}-{i}", f"m{t}", "power_of_two")
            if i % 200 == 0:
                s.flush()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s.flush()
    assert s.counts()["routing_decisions"] == per_thread * n_threads
    assert len({r["agent_id"] for r in s.routes(limit=100_000)}) == per_thread * n_threads
    s.close()
    assert s.dropped == 0


CHILD = """
import signal, sys
from modelrouter.store import install_signal_handlers, open_store
if sys.argv[2] == "chain":
    def previous(signum, frame):
        print("\\nprevious handler", flush=True)
        sys.exit(3)
    signal.signal(signal.SIGTERM, previous)
# Long interval, huge batches: at SIGTERM most acknowledged rows are still queued.
store = open_store(sys.argv[1], flush_interval_s=2.0, batch_size=1_000_000)
install_signal_handlers()
i = 0
while True:
    store.record_route(f"agent-{i}", "m", "least_loaded")
    print(i, flush=True)
    i += 1
"""


def _kill_mid_stream(url: str, mode: str) -> tuple[int, set[int], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, mode], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if len(lines) >= 3000:
            break
    proc.send_signal(signal.SIGTERM)
    lines += proc.stdout.readlines()
    code = proc.wait(timeout=120)
    acked = {int(x) for x in lines if x.endswith("\n") and x.strip().isdigit()}
    return code, acked, [x.strip() for x in lines if x.strip() and not x.strip().isdigit()]


def test_sigterm_mid_stream_keeps_every_acknowledged_row(url):
    code, acked, _ = _kill_mid_stream(url, "default")
    assert code == -signal.SIGTERM  # the default action still ran after the flush
    assert len(acked) >= 3000
    with open_store(url) as s:
        stored = {int(r["agent_id"].split("-")[1]) for r in s.routes(limit=10**9)}
    assert acked <= stored


def test_sigterm_chains_to_the_previous_handler(tmp_path):
    url = f"sqlite:///{tmp_path}/chain.db"
    code, acked, other = _kill_mid_stream(url, "chain")
    assert code == 3 and other == ["previous handler"]
    with open_store(url) as s:
        stored = {int(r["agent_id"].split("-")[1]) for r in s.routes(limit=10**9)}
    assert acked <= stored


def _reject_slow_feedback(url: str) -> None:
    """A constraint the store does not know about, so the database rejects some rows."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        conn.execute(
            "CREATE TRIGGER too_slow BEFORE INSERT ON feedback WHEN NEW.latency_ms >= 1000"
            " BEGIN SELECT RAISE(ABORT, 'too slow'); END"
        )
        conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE feedback ADD CONSTRAINT too_slow CHECK (latency_ms < 1000)")


def test_rejected_row_costs_only_itself(url):
    open_store(url).close()
    _reject_slow_feedback(url)
    with open_store(url) as s:
        for latency in (1.0, 5000.0, 2.0):
            s.record_feedback("m", latency, True)
        with pytest.raises(StoreError, match="lost"):
            s.flush()
        assert (s.dropped, s.counts()["feedback"]) == (1, 2)
        s.record_feedback("m", 3.0, True)
        s.flush()  # the writer carries on
        assert s.counts()["feedback"] == 3


def test_postgres_writer_reconnects(request):
    admin = request.getfixturevalue("postgres_admin_url")
    import psycopg

    with postgres.database(admin) as url, open_store(url) as s:
        s.record_route("before", "m", "weighted")
        s.flush()
        assert s.counts()["routing_decisions"] == 1
        with psycopg.connect(url, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert killed == (2,)  # the store's writer and reader connections
        s.record_route("after", "m", "weighted")
        s.flush()
        assert {r["agent_id"] for r in s.routes()} == {"before", "after"}


def test_full_queue_blocks_the_caller_instead_of_dropping():
    gate = threading.Event()
    with open_store("sqlite://:memory:", max_queue=5, batch_size=2, put_timeout_s=0.2) as s:
        write = s._write_batch
        s._write_batch = lambda rows: (gate.wait(), write(rows))  # a stalled database
        acked = 0
        with pytest.raises(StoreError, match="queue full"):
            for i in range(1000):
                s.record_feedback("m", float(i), True)
                acked += 1
        assert acked < 1000
        s._put_timeout = 60.0
        blocked = threading.Thread(target=s.record_feedback, args=("m", -0.0, True))
        blocked.start()  # waits for room, does not drop
        blocked.join(0.3)
        assert blocked.is_alive(), "the producer returned while the queue was full"
        assert s.counts()["feedback"] < acked  # nothing written meanwhile: still stalled
        gate.set()
        blocked.join()
        s.flush()
        assert s.counts()["feedback"] == acked + 1
