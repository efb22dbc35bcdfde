"""Shared load across replicas through a real 3-node Redis Cluster (started here on free
loopback ports, no persistence), with models whose hash tags land on different nodes.
Skipped only when redis-server or redis-cli is absent."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import modelrouter as mr

REDIS = shutil.which("redis-server")
CLI = shutil.which("redis-cli")
needs_cluster = pytest.mark.skipif(
    REDIS is None or CLI is None, reason="redis-server or redis-cli is not installed"
)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        # Cluster nodes also listen on port + 10000 (the bus): keep both below 65536.
        ports = [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()
    if any(p + 10000 > 65535 for p in ports):
        return _free_ports(n)
    return ports


class Cluster:
    def __init__(self) -> None:
        self.ports = _free_ports(3)
        self.dir = tempfile.mkdtemp(prefix="mr-redis-cluster-")
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:2])

    def cli(self, *args: str, port: int | None = None) -> str:
        assert CLI is not None
        cmd = [CLI, "-c", "-p", str(port or self.ports[0]), *args]
        out = subprocess.run(cmd, capture_output=True, timeout=10, check=False)
        return out.stdout.decode().strip()

    def start(self) -> Cluster:
        assert REDIS is not None and CLI is not None
        for p in self.ports:
            cmd = [REDIS, "--port", str(p), "--cluster-enabled", "yes"]
            cmd += ["--cluster-config-file", f"nodes-{p}.conf", "--save", "", "--appendonly"]
            cmd += ["no", "--bind", "127.0.0.1", "--dir", self.dir]
            self.procs.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        try:
            deadline = time.monotonic() + 10
            while not all(self.cli("PING", port=p) == "PONG" for p in self.ports):
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            create = [CLI, "--cluster", "create", *nodes, "--cluster-replicas", "0"]
            subprocess.run(
                [*create, "--cluster-yes"], capture_output=True, timeout=30, check=True
            )
            deadline = time.monotonic() + 20
            while not all(
                "cluster_state:ok" in self.cli("CLUSTER", "INFO", port=p) for p in self.ports
            ):
                assert time.monotonic() < deadline, "the cluster did not come up"
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(10)
        self.procs = []
        shutil.rmtree(self.dir, ignore_errors=True)

    def owner(self, key: str) -> int:
        """The port of the node that holds `key`'s slot."""
        slot = int(self.cli("CLUSTER", "KEYSLOT", key))
        for line in self.cli("CLUSTER", "NODES").splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for part in fields[8:]:
                lo, _, hi = part.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    return port
        raise AssertionError(f"no node owns slot {slot}")

    def spread_models(self, prefix: str) -> list[str]:
        """One model per node: their `{mr:<model>}` hash tags land on three different nodes."""
        found: dict[int, str] = {}
        i = 0
        while len(found) < 3:
            model = f"{prefix}-{i}"
            found.setdefault(self.owner(f"{{mr:{model}}}:active"), model)
            i += 1
        return [found[p] for p in sorted(found)]

    def zcard(self, model: str) -> int:
        return int(self.cli("ZCARD", f"{{mr:{model}}}:active") or 0)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if REDIS is None or CLI is None:
        pytest.skip("redis-server or redis-cli is not installed")
    c = Cluster().start()
    yield c
    c.stop()


def _fresh() -> str:
    return f"cl-{os.getpid()}-{time.monotonic_ns()}"


# --- workers run in spawned processes --------------------------------------------------


def _hammer(
    url: str, models: list[str], limit: int, threads: int, rounds: int, live: Any, peak: Any,
    errors: Any,
) -> None:
    catalog = [mr.Model(m, {"code": 0.9}, max_concurrent=limit) for m in models]
    router = mr.Router(catalog, policy="least_loaded", backend=url, fail_mode="closed")
    agent = mr.Agent("a", {"code": 0.5})
    index = {m: i for i, m in enumerate(models)}

    def work() -> None:
        done = 0
        while done < rounds:
            try:
                with router.request(agent) as handle:
                    i = index[handle.model_id]
                    with live.get_lock():
                        live[i] += 1
                        peak[i] = max(peak[i], live[i])
                    time.sleep(0.002)
                    with live.get_lock():
                        live[i] -= 1
                done += 1
            except mr.NoCapacityError:
                time.sleep(0.001)
            except Exception:
                with errors.get_lock():
                    errors.value += 1
                return

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def _pairs(url: str, models: list[str], threads: int, pairs: int, errors: Any) -> None:
    tracker = mr.LoadTracker(backend=url, fail_mode="closed")
    for m in models:
        tracker.set_capacity(m, max_concurrent=1000)

    def work(k: int) -> None:
        try:
            for n in range(pairs):
                with tracker.track(models[(n + k) % len(models)]):
                    pass
        except Exception:
            with errors.get_lock():
                errors.value += 1

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def _hold(url: str, models: list[str], n: int, ttl: float, ready: Any) -> None:
    tracker = mr.LoadTracker(backend=url, lease_ttl_s=ttl, fail_mode="closed")
    guards = []
    for m in models:
        tracker.set_capacity(m, max_concurrent=100)
        guards += [tracker.track(m) for _ in range(n)]
    for g in guards:
        g.__enter__()
    ready.set()
    time.sleep(600)


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
    models = cluster.spread_models(_fresh())
    a = mr.LoadTracker(backend=cluster.url, fail_mode="closed")
    b = mr.LoadTracker(backend=cluster.url, fail_mode="closed")
    for t in (a, b):
        for m in models:
            t.set_capacity(m, max_concurrent=2)
    for m in models:
        held = [a.track(m), b.track(m)]
        for g in held:
            g.__enter__()
            assert g.lease_id
        with pytest.raises(mr.NoCapacityError):
            with b.track(m):
                pass
        assert cluster.zcard(m) == 2
        held[0].release()
        held[0].release()  # idempotent
        assert cluster.zcard(m) == 1
        held[1].release()
        assert cluster.zcard(m) == 0
    assert a.backend_status()["errors"] == 0  # type: ignore[index]


@needs_cluster
def test_threads_in_two_processes_never_exceed_the_limit_on_any_node(cluster: Cluster) -> None:
    models, limit = cluster.spread_models(_fresh()), 3
    ctx = mp.get_context("spawn")
    live, peak = ctx.Array("i", 3), ctx.Array("i", 3)
    errors = ctx.Value("i", 0)
    args = (cluster.url, models, limit, 8, 40, live, peak, errors)
    procs = [ctx.Process(target=_hammer, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert errors.value == 0
    assert all(1 <= v <= limit for v in peak), list(peak)
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
    procs = [ctx.Process(target=_pairs, args=(cluster.url, models, 4, 1500, errors))]
    procs.append(ctx.Process(target=_pairs, args=(cluster.url, models, 4, 1500, errors)))
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
    proc = ctx.Process(target=_hold, args=(cluster.url, models, 3, ttl, ready))
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
    own = Cluster().start()
    try:
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
    finally:
        own.stop()
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
