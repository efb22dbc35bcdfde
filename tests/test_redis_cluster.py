"""Shared load across replicas through a real 3-node Redis Cluster
(`modelrouter.testing.redis_server.Cluster`), with models whose hash tags land on different
nodes. Skipped only when redis-server or redis-cli is absent."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import redis_workers

import modelrouter as mr
from modelrouter.testing.redis_server import CLI, REDIS, Cluster, running

needs_cluster = pytest.mark.skipif(
    REDIS is None or CLI is None, reason="redis-server or redis-cli is not installed"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if REDIS is None or CLI is None:
        pytest.skip("redis-server or redis-cli is not installed")
    with running(Cluster) as c:
        yield c


def _fresh() -> str:
    return f"cl-{os.getpid()}-{time.monotonic_ns()}"


# --- tests -----------------------------------------------------------------------------


def test_bad_cluster_urls_name_the_backend_field() -> None:
    for url in [
        "redis+cluster://",
        "redis+cluster://127.0.0.1",
        "redis+cluster://127.0.0.1:7000,",
        "redis+cluster://127.0.0.1:port",
        "redis+cluster://127.0.0.1:7000/1",
        "redis+cluster://:7000",
        "redis-cluster://127.0.0.1:7000",
    ]:
        with pytest.raises(ValueError) as info:
            mr.LoadTracker(backend=url)
        assert isinstance(info.value, mr.InvalidInputError) and info.value.field == "backend"
        assert "backend" in str(info.value)


@needs_cluster
def test_models_on_three_nodes_share_limits_in_one_process(cluster: Cluster) -> None:
    agent = mr.Agent("x", {"code": 0.5})
    for m in cluster.spread_models(_fresh()):
        catalog = [mr.Model(m, {"code": 0.9}, max_concurrent=2)]
        a = mr.Router(catalog, load=mr.LoadTracker(backend=cluster.url, fail_mode="closed"))
        b = mr.Router(catalog, load=mr.LoadTracker(backend=cluster.url, fail_mode="closed"))
        held = [a.request(agent), b.request(agent)]
        assert all(h.lease_id for h in held)
        with pytest.raises(mr.NoCapacityError):
            b.request(agent)
        assert cluster.zcard(m) == 2
        held[0].release()
        held[0].release()  # idempotent
        assert cluster.zcard(m) == 1
        with b.request(agent) as again:
            assert again.model_id == m and cluster.zcard(m) == 2
        held[1].release()
        assert cluster.zcard(m) == 0
        status = a.load_tracker.backend_status()
        assert status is not None and status["errors"] == 0


@needs_cluster
def test_threads_in_two_processes_never_exceed_the_limit_on_any_node(cluster: Cluster) -> None:
    models, limit = cluster.spread_models(_fresh()), 3
    ctx = mp.get_context("spawn")
    live, peak = ctx.Array("i", 3), ctx.Array("i", 3)
    errors, refused = ctx.Value("i", 0), ctx.Value("i", 0)
    args = (cluster.url, models, limit, 8, 40, live, peak, errors, refused)
    procs = [ctx.Process(target=redis_workers.hammer, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert errors.value == 0
    # 16 threads against 3 × 3 slots: every model fills up, none overflows, the rest is refused.
    assert list(peak) == [limit] * 3, list(peak)
    assert refused.value > 0
    assert list(live) == [0, 0, 0]
    assert [cluster.zcard(m) for m in models] == [0, 0, 0]


@needs_cluster
def test_counts_agree_after_many_acquire_release_pairs(cluster: Cluster) -> None:
    models = cluster.spread_models(_fresh())
    tracker = mr.LoadTracker(backend=cluster.url, fail_mode="closed")
    kept = []
    for m in models:
        tracker.set_capacity(m, max_concurrent=1000)
        kept += [tracker.track(m) for _ in range(2)]
    for g in kept:
        g.__enter__()
    ctx = mp.get_context("spawn")
    errors = ctx.Value("i", 0)
    args = (cluster.url, models, 4, 1500, errors)
    procs = [ctx.Process(target=redis_workers.pairs, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    assert errors.value == 0
    for m in models:
        assert tracker.current_load(m).active_requests == 2  # type: ignore[union-attr]
        assert cluster.zcard(m) == 2
    for g in kept:
        g.release()
    for m in models:
        assert tracker.current_load(m).active_requests == 0  # type: ignore[union-attr]


@needs_cluster
def test_a_killed_holder_gives_its_slots_back_within_the_ttl(cluster: Cluster) -> None:
    ttl, models = 1.5, cluster.spread_models(_fresh())
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=redis_workers.hold, args=(cluster.url, models, 3, ttl, ready))
    proc.start()
    try:
        assert ready.wait(60)
        tracker = mr.LoadTracker(backend=cluster.url, lease_ttl_s=ttl)
        for m in models:
            tracker.set_capacity(m, max_concurrent=100)
        time.sleep(2.5 * ttl)  # a live holder renews: its leases outlive the TTL
        for m in models:
            assert tracker.current_load(m).active_requests == 3  # type: ignore[union-attr]
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        while any(tracker.current_load(m).active_requests for m in models):  # type: ignore[union-attr]
            assert time.monotonic() - killed < ttl + 0.75
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.join()


@needs_cluster
def test_a_stopped_cluster_fails_open_or_closed_quickly() -> None:
    with running(Cluster) as own:  # stopped at the end of the block
        models = own.spread_models(_fresh())
        closed = mr.LoadTracker(backend=own.url, fail_mode="closed", timeout_s=0.2)
        opened = mr.LoadTracker(backend=own.url, fail_mode="open", timeout_s=0.2)
        for t in (closed, opened):
            for m in models:
                t.set_capacity(m, max_concurrent=4)
        held = closed.track(models[0])
        held.__enter__()
        with opened.track(models[1]) as g:
            assert g.lease_id is not None
    started = time.monotonic()
    with pytest.raises(mr.BackendUnavailableError):
        with closed.track(models[2]):
            pass
    with opened.track(models[2]) as g:
        assert g.lease_id is None  # admitted on local counts
    held.release()  # never raises; the lease expires on its own
    assert time.monotonic() - started < 5
    status = opened.backend_status()
    assert status is not None and not status["available"] and status["fail_open_events"] >= 1


@needs_cluster
def test_batches_on_three_nodes_keep_each_models_limit(cluster: Cluster) -> None:
    models = cluster.spread_models(_fresh())
    a = mr.LoadTracker(backend=cluster.url, fail_mode="closed", lease_ttl_s=60)
    b = mr.LoadTracker(backend=cluster.url, fail_mode="closed", lease_ttl_s=60)
    for t in (a, b):
        for m in models:
            t.set_capacity(m, max_concurrent=8, max_queue=2)
    held = []
    for m in models:
        first, second = a.acquire_many(m, 6), b.acquire_many(m, 6)
        assert [h.queued for h in first + second] == [False] * 8 + [True] * 2
        assert cluster.zcard(m) == 8
        held += first + second
    zrems = cluster.calls("zrem")
    assert a.release_many([h for h in held if h.model_id == models[0]]) == 10
    assert cluster.calls("zrem") - zrems == 3  # per tracker one pipeline: 1 + (active, queued)
    assert a.release_many(held) == 20
    assert [cluster.zcard(m) for m in models] == [0, 0, 0]


def _node_cli(port: int, *args: str) -> list[str]:
    """redis-cli against one node, not following redirections: the reply's lines."""
    assert CLI is not None
    out = subprocess.run([CLI, "-p", str(port), *args], capture_output=True, timeout=10)
    return out.stdout.decode().split()


def _migrate_slot(cluster: Cluster, slot: int, source: int, target: int, pause_s: float) -> None:
    """Moves `slot` from node `source` to node `target` the way `redis-cli --cluster reshard`
    does, pausing `pause_s` in each intermediate state (MIGRATING/IMPORTING, keys moved) so
    that requests meet the ASK redirections and then the MOVED one."""
    ids = {p: _node_cli(p, "CLUSTER", "MYID")[0] for p in cluster.ports}
    assert _node_cli(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", ids[source]) == ["OK"]
    assert _node_cli(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", ids[target]) == ["OK"]
    time.sleep(pause_s)
    moved = 0
    while keys := _node_cli(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "100"):
        # Copy-and-delete each batch of keys in one step; a key that vanished meanwhile is fine.
        reply = _node_cli(source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS",
                          *keys)  # fmt: skip
        assert reply in (["OK"], ["NOKEY"]), reply
        moved += len(keys)
    time.sleep(pause_s)
    for p in (target, source, *(p for p in cluster.ports if p not in (source, target))):
        assert _node_cli(p, "CLUSTER", "SETSLOT", str(slot), "NODE", ids[target]) == ["OK"]


class _Traffic:
    """Threads routing one-model requests (each held 2 ms) through `routers` until stopped,
    counting per phase what was served and what failed, and the peak in flight."""

    def __init__(self, routers: list[mr.Router], agent: mr.Agent, threads: int = 6) -> None:
        self.routers, self.agent = routers, agent
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.phase = "before"
        self.live = self.peak = self.refused = self.streak = 0
        self.served: dict[str, int] = {}
        self.errors: dict[str, list[BaseException]] = {}
        self.threads = [
            threading.Thread(target=self._work, args=(routers[k % len(routers)],))
            for k in range(threads)
        ]

    def _work(self, router: mr.Router) -> None:
        while not self.stop.is_set():
            try:
                with router.request(self.agent):
                    with self.lock:
                        self.live += 1
                        self.peak = max(self.peak, self.live)
                    time.sleep(0.002)
                    with self.lock:
                        self.live -= 1
                        self.served[self.phase] = self.served.get(self.phase, 0) + 1
                        self.streak += 1
            except mr.NoCapacityError:
                with self.lock:
                    self.refused += 1
                time.sleep(0.001)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and checked
                with self.lock:
                    self.errors.setdefault(self.phase, []).append(exc)
                    self.streak = 0
                time.sleep(0.01)

    def __enter__(self) -> _Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def all_errors(self) -> list[BaseException]:
        return [e for errors in self.errors.values() for e in errors]


def _traffic_through_a_slot_move(
    cluster: Cluster, lease_ttl_s: float = 30.0
) -> tuple[_Traffic, str, int, int]:
    """A model whose slot moves to another node while 6 threads (two routers, limit 3) route
    to it; returns once the slot has moved and then 300 requests in a row went through."""
    model, limit = cluster.spread_models(_fresh())[0], 3
    key = f"{{mr:{model}}}:active"
    slot, source = int(cluster.cli("CLUSTER", "KEYSLOT", key)), cluster.owner(key)
    target = next(p for p in cluster.ports if p != source)
    catalog = [mr.Model(model, {"code": 0.9}, max_concurrent=limit, max_queue=0)]
    routers = [
        mr.Router(
            catalog,
            load=mr.LoadTracker(backend=cluster.url, fail_mode="closed", lease_ttl_s=lease_ttl_s),
        )
        for _ in range(2)
    ]
    with _Traffic(routers, mr.Agent("a", {"code": 0.5})) as traffic:
        time.sleep(0.3)
        traffic.phase = "moving"
        _migrate_slot(cluster, slot, source, target, pause_s=1.0)
        traffic.phase = "moved"
        with traffic.lock:
            traffic.streak = 0
        deadline = time.monotonic() + 30
        while traffic.streak < 300:
            assert time.monotonic() < deadline, f"no recovery: {traffic.errors.keys()}"
            time.sleep(0.01)
    assert cluster.owner(key) == target
    assert traffic.served.get("before", 0) > 0 and traffic.errors.get("before") is None
    return traffic, key, target, limit


@needs_cluster
def test_a_moved_slot_is_followed_and_the_limits_hold_throughout(cluster: Cluster) -> None:
    # A short lease TTL: releases that failed while the slot moved are re-sent by the
    # renewer within TTL/3.
    traffic, key, target, limit = _traffic_through_a_slot_move(cluster, lease_ttl_s=1.5)
    # While the slot moves a request may fail, but only as the documented fail-closed error.
    for exc in traffic.all_errors():
        assert isinstance(exc, mr.BackendUnavailableError), repr(exc)
    # The limit was reached (6 threads on 3 slots) and never exceeded, before, while and after
    # the slot moved; then requests flow again, on the new owner.
    assert traffic.refused > 0 and traffic.peak == limit and traffic.live == 0
    assert traffic.served.get("moved", 0) >= 300
    routers = traffic.routers
    deadline = time.monotonic() + 20
    while any(r.load_tracker.backend_status()["pending_releases"] for r in routers):  # type: ignore[index]
        assert time.monotonic() < deadline, [r.load_tracker.backend_status() for r in routers]
        time.sleep(0.05)
    # Every slot came back: the counts end at zero, on the new owner; new leases go there.
    assert _node_cli(target, "ZCARD", key) == ["0"]
    held = [routers[0].request(traffic.agent) for _ in range(limit)]
    assert _node_cli(target, "ZCARD", key) == [str(limit)]
    with pytest.raises(mr.NoCapacityError):
        routers[1].request(traffic.agent)
    for h in held:
        h.release()
    assert _node_cli(target, "ZCARD", key) == ["0"]


@needs_cluster
def test_no_request_fails_while_a_slot_moves(cluster: Cluster) -> None:
    traffic, *_ = _traffic_through_a_slot_move(cluster)
    errors = traffic.all_errors()
    by_phase = {phase: len(e) for phase, e in traffic.errors.items()}
    assert errors == [], f"{len(errors)} errors, by phase {by_phase}; first: {errors[0]!r}"
