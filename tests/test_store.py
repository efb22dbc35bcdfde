"""Decision store: the same tests against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import math
import re
import signal
import sqlite3
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelrouter.errors import InvalidInputError
from modelrouter.store import SCHEMA_VERSION, DecisionStore, StoreError, _schema, open_store
from modelrouter.store._schema import migrate_sqlite

# The `url` (each engine), `store` and `postgres_admin_url` fixtures are in conftest.py.


def test_open_store_picks_the_engine(url):
    with open_store(url) as s:
        assert isinstance(s, DecisionStore)
        assert s.dialect == url.split(":")[0]
        assert s.schema_version() == SCHEMA_VERSION
    if url.startswith("postgresql"):
        with open_store(url.replace("postgresql://", "postgres://", 1)) as s:
            assert s.dialect == "postgresql"


def test_records_round_trip(store):
    request = {"agents": [{"id": "a"}, {"id": "b"}], "note": "é ✓"}
    response = {"assignments": [{"agent_id": "a", "model_id": "m"}], "total_score": 0.75}
    response["strategy_used"] = "optimal"
    store.record_assignment(request, response, ts=10.0)
    store.record_assignment({"agents": []}, {"assignments": []}, ts=20.0)
    store.record_route("a\tb\\c\nd", "m", "least_loaded", queued=True, ts=11.0)
    store.record_route("b", None, "predictive", outcome="no_capacity", ts=12.0)
    store.record_feedback("m", 12.5, True, agent_id="a", ts=13.0)
    store.record_utilization({"m": 0.5, "n": 1.25}, ts=14.0)
    store.flush()
    assert store.counts() == {
        "assignments": 2,
        "routing_decisions": 2,
        "feedback": 1,
        "utilization": 2,
    }
    newest, older = store.assignments()
    assert newest["ts"] == 20.0 and newest["n_agents"] == 0 and newest["total_score"] is None
    assert older["request"] == request and older["response"] == response
    assert (older["strategy"], older["n_agents"], older["n_assigned"]) == ("optimal", 2, 1)
    assert older["total_score"] == 0.75
    assert [a["ts"] for a in store.assignments(limit=1)] == [20.0]
    routes = store.routes()
    assert routes[0] == {
        "ts": 12.0,
        "agent_id": "b",
        "model_id": None,
        "policy": "predictive",
        "queued": False,
        "outcome": "no_capacity",
    }
    assert routes[1]["queued"] is True and routes[1]["model_id"] == "m"
    assert routes[1]["agent_id"] == "a\tb\\c\nd"  # survives COPY's text escaping


feedback_rows = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.floats(0, 1000),
    ),
    min_size=1,
    max_size=300,
)


def tiny0(x: float) -> float:
    """The store's documented rule: magnitudes below 1e-300 are stored and compared as 0."""
    return 0.0 if abs(x) < 1e-300 else x


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=feedback_rows, since=st.none() | st.floats(0, 1000))
def test_model_stats_match_numpy(store, rows, since):
    # One store for all examples: each example writes under its own model-id prefix.
    tag = uuid.uuid4().hex[:8]
    rows = [(m, tiny0(lat), ok, tiny0(ts)) for m, lat, ok, ts in rows]
    since = None if since is None else tiny0(since)
    for model, latency, success, ts in rows:
        store.record_feedback(f"{tag}-{model}", latency, success, ts=ts)
    store.flush()
    got = {s["model_id"]: s for s in store.model_stats(since=since) if s["model_id"][:8] == tag}
    expected = {}
    for model in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == model and (since is None or r[3] >= since)]
        if mine:
            expected[f"{tag}-{model}"] = mine
    assert sorted(got) == sorted(expected)
    for model_id, mine in expected.items():
        lat = np.array([r[1] for r in mine])
        s = got[model_id]
        assert s["count"] == len(mine)
        assert s["success_rate"] == pytest.approx(np.mean([r[2] for r in mine]), abs=1e-12)
        assert s["mean_ms"] == pytest.approx(lat.mean(), rel=1e-9)
        for p in (50, 95, 99):
            want = np.percentile(lat, p, method="linear")
            assert s[f"p{p}_ms"] == pytest.approx(want, rel=1e-9, abs=1e-6), p


def test_percentiles_are_linear_interpolation(store):
    for latency in (10.0, 20.0, 30.0, 40.0):
        store.record_feedback("m", latency, latency < 35, ts=1.0)
    store.flush()
    (s,) = store.model_stats()
    # rank (n-1)p = 1.5 -> halfway between 20 and 30; 2.85 -> 30 + 0.85 * 10
    assert (s["p50_ms"], s["p95_ms"], s["success_rate"]) == pytest.approx((25.0, 38.5, 0.75))
    assert store.model_stats(since=2.0) == []


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    samples=st.lists(
        st.tuples(st.floats(0, 10_000), st.sampled_from(["x", "y"]), st.floats(0, 2)),
        min_size=1,
        max_size=60,
    ),
    bucket=st.sampled_from([1.0, 7.5, 60.0, 3600.0]),
)
def test_utilization_buckets(store, samples, bucket):
    tag = uuid.uuid4().hex[:8]
    samples = [(tiny0(ts), model, tiny0(u)) for ts, model, u in samples]
    for ts, model, u in samples:
        store.record_utilization({f"{tag}{model}": u}, ts=ts)
    store.flush()
    got = [r for r in store.utilization_over_time(bucket) if r["model_id"].startswith(tag)]
    groups: dict[tuple[float, str], list[float]] = {}
    for ts, model, u in samples:
        groups.setdefault((math.floor(ts / bucket) * bucket, f"{tag}{model}"), []).append(u)
    assert [(r["ts"], r["model_id"]) for r in got] == sorted(groups)
    for r in got:
        values = groups[(r["ts"], r["model_id"])]
        assert r["samples"] == len(values)
        assert r["utilization"] == pytest.approx(np.mean(values), rel=1e-9, abs=1e-12)


def test_subnormal_values_are_stored_as_zero(store):
    # PostgreSQL raises "value out of range: underflow" on arithmetic that rounds to 0.
    store.record_utilization({"m": 5e-324}, ts=5e-324)
    store.record_feedback("m", 1e-310, True, ts=1e-310)
    store.flush()
    assert store.utilization_over_time(7.5) == [
        {"ts": 0.0, "model_id": "m", "utilization": 0.0, "samples": 1}
    ]
    (s,) = store.model_stats(since=5e-324)
    assert (s["count"], s["p99_ms"]) == (1, 0.0)


def _old_database(url: str) -> None:
    """A version-1 database with two assignments, as an earlier modelrouter left it."""
    request = '{"agents":[1,2,3]}'
    response = '{"assignments":[1,2],"total_score":1.5,"strategy_used":"greedy"}'
    odd = '{"agents":{"a":1},"assignments":[],"total_score":true,"strategy_used":7}'
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        assert migrate_sqlite(conn, target=1) == 1
        conn.executemany(
            "INSERT INTO assignments (ts, request, response) VALUES (?, ?, ?)",
            [(1.0, request, response), (2.0, odd, odd)],
        )
        conn.close()
        return
    import psycopg

    from modelrouter.store._schema import migrate_postgres

    with psycopg.connect(url, autocommit=True) as conn:
        assert migrate_postgres(conn, target=1) == 1
        conn.cursor().executemany(
            "INSERT INTO assignments (ts, request, response) VALUES (%s, %s, %s)",
            [(1.0, request, response), (2.0, odd, odd)],
        )


def test_old_schema_is_upgraded(url):
    _old_database(url)
    with open_store(url) as s:
        assert s.schema_version() == SCHEMA_VERSION
        odd, old = s.assignments()
        summary = ("strategy", "n_agents", "n_assigned", "total_score")
        assert tuple(old[k] for k in summary) == ("greedy", 3, 2, 1.5)
        assert tuple(odd[k] for k in summary) == (None, None, 0, None)
        # The same rules apply to new rows.
        s.record_assignment(odd["request"], odd["response"], ts=3.0)
        s.flush()
        assert tuple(s.assignments(limit=1)[0][k] for k in summary) == (None, None, 0, None)
        s.record_utilization({"m": 0.5}, ts=5.0)  # a table version 2 added
        s.flush()
        assert s.utilization_over_time(10.0)[0]["utilization"] == 0.5


def _version_2_database(url: str) -> None:
    """A version-2 database with a success and a failure, as modelrouter left it before the
    feedback rows had an outcome."""
    rows = [(1.0, "m", None, 10.0, True), (2.0, "m", "a", 20.0, False)]
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        assert migrate_sqlite(conn, target=2) == 2
        conn.executemany(
            "INSERT INTO feedback (ts, model_id, agent_id, latency_ms, success)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        conn.close()
        return
    import psycopg

    from modelrouter.store._schema import migrate_postgres

    with psycopg.connect(url, autocommit=True) as conn:
        assert migrate_postgres(conn, target=2) == 2
        conn.cursor().executemany(
            "INSERT INTO feedback (ts, model_id, agent_id, latency_ms, success)"
            " VALUES (%s, %s, %s, %s, %s)",
            rows,
        )


def test_version_2_feedback_gets_its_outcome_column(url):
    _version_2_database(url)
    with open_store(url) as s:
        assert s.schema_version() == SCHEMA_VERSION >= 3
        # Earlier successes were "ok"; the kind of an earlier failure is unknown.
        failure, success = s.feedback()
        assert (success["outcome"], success["success"]) == ("ok", True)
        assert (failure["outcome"], failure["success"], failure["agent_id"]) == (None, False, "a")
        s.record_feedback("m", 5.0, False, ts=3.0, outcome="rate_limited")
        s.record_feedback("m", 5.0, False, ts=4.0)
        s.record_feedback("m", 5.0, True, ts=5.0)
        s.flush()
        assert [r["outcome"] for r in s.feedback(limit=3)] == ["ok", "failed", "rate_limited"]
        assert s.model_stats()[0]["count"] == 5
        with pytest.raises(InvalidInputError) as err:
            s.record_feedback("m", 5.0, False, outcome="exploded")
        assert err.value.field == "outcome"


_REAL_PENDING = _schema._pending


class InjectedFailure(Exception):
    """Stands for whatever can stop an upgrade half-way (a bad statement, a lost connection)."""


def _fail_after(k: int, version: int):
    """A stand-in for ``_schema._pending`` whose step ``version`` raises once ``k`` of its
    statements have run (``k`` = all of them: just before its schema_version row)."""

    def pending(dialect: str, current: int, target: int) -> list[tuple[int, list[str]]]:
        steps = _REAL_PENDING(dialect, current, target)
        return [(v, _Failing(sql, k) if v == version else sql) for v, sql in steps]

    return pending


class _Failing(list):
    def __init__(self, statements: list[str], k: int) -> None:
        super().__init__(statements)
        self.k = k

    def __iter__(self):  # type: ignore[override]
        for i in range(len(self) + 1):
            if i == self.k:
                raise InjectedFailure(f"injected after {i} statements")
            if i < len(self):
                yield self[i]


def _schema_snapshot(url: str) -> tuple:
    """Every table, column, index and the rows of schema_version and assignments."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        try:
            master = conn.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
            ).fetchall()
            names = {row[1] for row in master}
            rows = tuple(
                conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                for t in ("schema_version", "assignments")
                if t in names
            )
            return tuple(master), rows
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
        names = {row[0] for row in columns}
        rows = tuple(
            conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
            for t in ("schema_version", "assignments")
            if t in names
        )
        return tuple(columns), tuple(indexes), rows


@pytest.mark.parametrize("start", [0, 1], ids=["empty", "version-1"])
def test_a_failed_upgrade_changes_nothing_then_a_retry_succeeds(url, monkeypatch, start):
    # The failure lands in the last step, between any two of its statements (after the
    # earlier steps ran in the same transaction when starting from an empty database).
    if start:
        _old_database(url)
    before = _schema_snapshot(url)
    assert bool(before[-1]) == bool(start)  # the old database has its version and rows
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    step = _schema.MIGRATIONS[dialect][SCHEMA_VERSION - 1]
    for k in range(len(step) + 1):
        monkeypatch.setattr(_schema, "_pending", _fail_after(k, SCHEMA_VERSION))
        with pytest.raises(InjectedFailure, match=f"after {k} statements"):
            open_store(url)
        assert _schema_snapshot(url) == before, f"partial upgrade after {k} statements"
    monkeypatch.undo()
    with open_store(url) as s:
        assert s.schema_version() == SCHEMA_VERSION
        assert len(s.assignments()) == 2 * start
        s.record_utilization({"m": 0.5}, ts=5.0)  # a table the last step adds
        s.flush()
        assert s.utilization_over_time(10.0)[0]["utilization"] == 0.5


def test_concurrent_opens_migrate_once(url):
    # Eight services starting together on an empty database: one applies each version.
    stores: list = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        stores.append(open_store(url))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stores) == 8
    for s in stores:
        s.record_feedback("m", 1.0, True)
        s.close()
    with open_store(url) as s:
        assert s.counts()["feedback"] == 8
        assert s._query("SELECT COUNT(*) FROM schema_version", ())[0][0] == SCHEMA_VERSION


def test_newer_schema_is_refused(url):
    open_store(url).close()
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO schema_version VALUES (%s, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match=f"version {SCHEMA_VERSION + 1} is newer"):
        open_store(url)


@pytest.mark.parametrize(
    "bad",
    [
        "mysql://localhost/db",
        "modelrouter.db",
        "sqlite://host/file.db",
        "sqlite:///",
        "postgresql://localhost",
        42,
    ],
)
def test_bad_url_names_the_field(bad):
    with pytest.raises(InvalidInputError) as err:
        open_store(bad)
    assert err.value.field == "url"


def test_url_from_environment_and_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELROUTER_STORE_URL", f"sqlite:///{tmp_path}/env.db")
    with open_store() as s:
        s.record_feedback("m", 1.0, True)
    assert (tmp_path / "env.db").exists()
    for url in ("sqlite://:memory:", "sqlite:///:memory:"):
        with open_store(url) as mem:
            mem.record_feedback("m", 1.0, False)
            mem.flush()
            assert mem.model_stats()[0]["success_rate"] == 0.0
    assert not Path(":memory:").exists()


@pytest.mark.parametrize(
    "call,field",
    [
        (lambda s: s.record_feedback("m", float("nan"), True), "latency_ms"),
        (lambda s: s.record_feedback("m", -1.0, True), "latency_ms"),
        (lambda s: s.record_feedback("m", 1.0, "yes"), "success"),
        (lambda s: s.record_feedback("", 1.0, True), "model_id"),
        (lambda s: s.record_feedback("m", 1.0, True, ts=float("inf")), "ts"),
        (lambda s: s.record_route("a", "m", "p", outcome="maybe"), "outcome"),
        (lambda s: s.record_route("a", None, "p"), "model_id"),
        (lambda s: s.record_route(None, "m", "p"), "agent_id"),
        (lambda s: s.record_assignment({"x": object()}, {}), "request"),
        (lambda s: s.record_assignment({}, {"x": "\x00"}), "response"),
        (lambda s: s.record_utilization({"m": -0.1}), "samples['m']"),
        (lambda s: s.utilization_over_time(0.0), "bucket_s"),
        (lambda s: s.assignments(limit=-1), "limit"),
        (lambda s: s.model_stats(since="yesterday"), "since"),
    ],
)
def test_bad_input_names_the_field(call, field):
    with open_store("sqlite://:memory:") as s:
        with pytest.raises(InvalidInputError) as err:
            call(s)
        assert err.value.field == field
        s.flush()
        assert sum(s.counts().values()) == 0


def test_unopenable_sqlite_path(tmp_path):
    with pytest.raises(StoreError, match="cannot open"):
        open_store(f"sqlite:///{tmp_path}/missing-dir/x.db")
    assert not Path(tmp_path / "missing-dir").exists()


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "open_store(" in b)
    monkeypatch.chdir(tmp_path)
    previous = signal.getsignal(signal.SIGTERM)
    namespace: dict = {}
    try:
        exec(block, namespace)
    finally:
        signal.signal(signal.SIGTERM, previous)  # pytest's own process keeps its handler
    assert "'p50_ms': 42.0" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # nothing written to the working directory
    with open_store(f"sqlite:///{namespace['directory']}/decisions.db") as s:
        assert s.counts() == {
            "assignments": 1,
            "routing_decisions": 1,
            "feedback": 1,
            "utilization": 2,
        }
