"""Shared load across replicas through a real redis-server (started here on a free loopback
port, no persistence). Skipped only when the redis-server binary is absent."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis_workers

import modelrouter as mr
from modelrouter.testing.redis_server import REDIS, RedisServer, running

needs_redis = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    if REDIS is None:
        pytest.skip("redis-server is not installed")
    with running(RedisServer) as srv:
        yield srv


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of the test's own, which the test may stop and start."""
    if REDIS is None:
        pytest.skip("redis-server is not installed")
    with running(RedisServer) as srv:
        yield srv


def _model(max_concurrent: int, max_queue: int = 0) -> list[mr.Model]:
    return [mr.Model("m", {"code": 0.9}, max_concurrent=max_concurrent, max_queue=max_queue)]


def _fresh() -> str:
    return f"model-{os.getpid()}-{time.monotonic_ns()}"


# --- tests -----------------------------------------------------------------------------


def test_bad_settings_name_the_field() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"backend": "http://127.0.0.1:6379"}, "backend"),
        ({"backend": "redis://127.0.0.1:1", "lease_ttl_s": 0.0}, "lease_ttl_s"),
        ({"backend": "redis://127.0.0.1:1", "lease_ttl_s": float("nan")}, "lease_ttl_s"),
        ({"backend": "redis://127.0.0.1:1", "fail_mode": "sideways"}, "fail_mode"),
        ({"fail_mode": "sideways"}, "fail_mode"),
        ({"backend": "redis://127.0.0.1:1", "timeout_s": -1.0}, "timeout_s"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValueError) as info:
            mr.LoadTracker(**kwargs)
        assert isinstance(info.value, mr.InvalidInputError) and info.value.field == field
    tracker = mr.LoadTracker(backend="redis://127.0.0.1:1")
    with pytest.raises(mr.InvalidInputError) as info, pytest.warns(DeprecationWarning):
        mr.Router(_model(1), tracker=tracker, backend="redis://127.0.0.1:1")
    assert info.value.field == "tracker"  # the old spelling: settings belong to the tracker
    assert mr.LoadTracker().backend_status() is None


@needs_redis
def test_replicas_in_one_process_share_limits(server: RedisServer) -> None:
    a = mr.Router(_model(2), load=mr.LoadTracker(backend=server.url))
    b = mr.Router(_model(2), load=mr.LoadTracker(backend=server.url))
    agent = mr.Agent("x", {"code": 0.5})
    held = [a.request(agent), b.request(agent)]
    assert all(h.lease_id for h in held)
    with pytest.raises(mr.NoCapacityError):
        b.request(agent)
    time.sleep(0.01)  # readings are cached for a few ms
    assert a.load("m").active_requests == 2
    assert server.cli("ZCARD", "{mr:m}:active") == "2"
    held[0].release()
    held[0].release()  # idempotent
    with b.request(agent) as r:
        assert r.model_id == "m"
    held[1].release()
    assert b.load_tracker.current_load("m").active_requests == 0  # type: ignore[union-attr]


@needs_redis
def test_shared_counts_never_go_stale_while_the_backend_answers(server: RedisServer) -> None:
    clock = mr.ManualClock()
    tracker = mr.LoadTracker(stale_after_s=1.0, clock=clock, backend=server.url)
    tracker.set_capacity("idle", max_concurrent=2)
    clock.advance(10.0)
    assert tracker.current_load("idle") is not None


@needs_redis
def test_four_processes_never_exceed_the_limit(server: RedisServer) -> None:
    ctx = mp.get_context("spawn")
    live, peak, errors = ctx.Array("i", 1), ctx.Array("i", 1), ctx.Value("i", 0)
    refused = ctx.Value("i", 0)
    args = (server.url, ["m"], 10, 8, 40, live, peak, errors, refused)
    procs = [ctx.Process(target=redis_workers.hammer, args=args) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert errors.value == 0
    # 32 threads against 10 slots: the limit is reached, never passed, and the rest refused.
    assert peak[0] == 10, peak[0]
    assert refused.value > 0
    assert live[0] == 0
    assert server.cli("ZCARD", "{mr:m}:active") == "0"


@needs_redis
def test_a_killed_process_gives_its_slots_back_within_the_ttl(server: RedisServer) -> None:
    ttl, model = 1.5, _fresh()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=redis_workers.hold, args=(server.url, [model], 5, ttl, ready))
    proc.start()
    try:
        assert ready.wait(60)
        tracker = mr.LoadTracker(backend=server.url, lease_ttl_s=ttl)
        tracker.set_capacity(model, max_concurrent=100)
        time.sleep(2.5 * ttl)  # a live holder renews: its leases outlive the TTL
        assert tracker.current_load(model).active_requests == 5  # type: ignore[union-attr]
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        while tracker.current_load(model).active_requests:  # type: ignore[union-attr]
            assert time.monotonic() - killed < ttl + 0.75
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.join()


@needs_redis
def test_counts_agree_after_100k_acquire_release_pairs(server: RedisServer) -> None:
    model = _fresh()
    tracker = mr.LoadTracker(backend=server.url, fail_mode="closed")
    tracker.set_capacity(model, max_concurrent=1000)
    kept = [tracker.track(model) for _ in range(3)]
    for g in kept:
        g.__enter__()
    ctx = mp.get_context("spawn")
    errors = ctx.Value("i", 0)
    args = (server.url, [model], 8, 3125, errors)
    procs = [ctx.Process(target=redis_workers.pairs, args=args) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    assert errors.value == 0
    assert tracker.current_load(model).active_requests == 3  # type: ignore[union-attr]
    assert server.cli("ZCARD", f"{{mr:{model}}}:active") == "3"
    for g in kept:
        g.release()
    assert tracker.current_load(model).active_requests == 0  # type: ignore[union-attr]


@needs_redis
def test_fail_open_falls_back_to_local_counts_and_recovers(own_server: RedisServer) -> None:
    tracker = mr.LoadTracker(backend=own_server.url, fail_mode="open", timeout_s=0.2)
    router = mr.Router(_model(2), load=tracker)
    agent = mr.Agent("x", {"code": 0.5})
    first = router.request(agent)
    assert first.lease_id is not None
    own_server.stop()
    started = time.monotonic()
    second = router.request(agent)  # local counts: 1 held + this one = the limit of 2
    assert second.lease_id is None
    with pytest.raises(mr.NoCapacityError):
        router.request(agent)
    assert time.monotonic() - started < 3
    status = tracker.backend_status()
    assert status is not None
    assert not status["available"] and status["fail_open_events"] >= 1
    assert status["last_error"] and status["fail_mode"] == "open"
    second.release()
    own_server.start()
    time.sleep(0.6)
    with router.track("m") as third:
        assert third.lease_id is not None
    assert tracker.backend_status()["available"]  # type: ignore[index]
    first.release()


@needs_redis
def test_fail_closed_raises_quickly(own_server: RedisServer) -> None:
    tracker = mr.LoadTracker(backend=own_server.url, fail_mode="closed", timeout_s=0.2)
    router = mr.Router(_model(4), load=tracker)
    held = router.track("m")
    held.__enter__()
    own_server.stop()
    started = time.monotonic()
    with pytest.raises(mr.BackendUnavailableError) as info:
        with router.track("m"):
            pass
    assert isinstance(info.value, mr.RouterError) and isinstance(info.value, ConnectionError)
    with pytest.raises(mr.BackendUnavailableError):
        router.request(mr.Agent("x", {"code": 0.5}))
    held.release()  # the lease expires on its own; releasing never raises
    assert time.monotonic() - started < 3


@needs_redis
def test_a_restarted_server_is_reconnected_without_an_error(own_server: RedisServer) -> None:
    tracker = mr.LoadTracker(backend=own_server.url, fail_mode="closed", timeout_s=0.5)
    tracker.set_capacity("m", max_concurrent=4)
    with tracker.track("m"):  # leaves a pooled connection behind
        pass
    own_server.stop()
    own_server.start()
    with tracker.track("m") as g:  # the stale pooled connection is replaced, no error
        assert g.lease_id is not None
    assert tracker.backend_status()["errors"] == 0  # type: ignore[index]


@needs_redis
def test_a_batch_is_one_script_call_and_shares_the_limits(server: RedisServer) -> None:
    m = _fresh()
    a = mr.LoadTracker(backend=server.url, fail_mode="closed", lease_ttl_s=60)
    b = mr.LoadTracker(backend=server.url, fail_mode="closed", lease_ttl_s=60)
    for t in (a, b):
        t.set_capacity(m, max_concurrent=30, max_queue=5)
    first = a.acquire_many(m, 20)
    assert [h.queued for h in first] == [False] * 20
    assert len({h.lease_id for h in first}) == 20 and all(h.lease_id for h in first)
    scripts = server.calls("evalsha") + server.calls("eval")
    second = b.acquire_many(m, 20)  # 10 slots left across both trackers, then 5 queue places
    assert server.calls("evalsha") + server.calls("eval") == scripts + 1
    assert [h.queued for h in second] == [False] * 10 + [True] * 5
    assert server.cli("ZCARD", f"{{mr:{m}}}:active") == "30"
    assert server.cli("ZCARD", f"{{mr:{m}}}:queued") == "5"
    zrems = server.calls("zrem")
    assert a.release_many(first) == 20
    assert server.calls("zrem") == zrems + 1  # 20 leases, one command
    assert server.cli("ZCARD", f"{{mr:{m}}}:active") == "10"
    second[0].release()
    assert b.release_many(second) == 14
    assert a.release_many(first + second) == 0
    assert server.cli("ZCARD", f"{{mr:{m}}}:active") == "0"
    assert server.cli("ZCARD", f"{{mr:{m}}}:queued") == "0"


@needs_redis
def test_a_batch_fails_open_on_local_counts_or_closed_with_nothing_held(
    own_server: RedisServer,
) -> None:
    opened = mr.LoadTracker(backend=own_server.url, fail_mode="open", timeout_s=0.2)
    closed = mr.LoadTracker(backend=own_server.url, fail_mode="closed", timeout_s=0.2)
    for t in (opened, closed):
        t.set_capacity("m", max_concurrent=3, max_queue=1)
    own_server.stop()
    batch = opened.acquire_many("m", 10)
    assert [h.queued for h in batch] == [False, False, False, True]
    assert all(h.lease_id is None for h in batch)
    with pytest.raises(mr.BackendUnavailableError):
        closed.acquire_many("m", 2)
    assert opened.release_many(batch) == 4
    assert closed.backend_status()["held_leases"] == 0  # type: ignore[index]


@needs_redis
def test_a_forked_child_never_reuses_its_parents_lease_ids(server: RedisServer) -> None:
    model = _fresh()
    tracker = mr.LoadTracker(backend=server.url, fail_mode="closed")
    tracker.set_capacity(model, max_concurrent=100)
    before_fork = tracker.acquire_many(model, 1)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one lease, its id to the parent, then out without cleanup
        try:
            (child,) = tracker.acquire_many(model, 1)
            os.write(write_end, (child.lease_id or "").encode())
        finally:
            os._exit(0)
    os.close(write_end)
    (mine,) = tracker.acquire_many(model, 1)
    with os.fdopen(read_end) as pipe:
        theirs = pipe.read()
    os.waitpid(pid, 0)
    assert theirs and mine.lease_id and theirs != mine.lease_id
    # Both leases are held in Redis: the child's one did not merge into the parent's.
    assert server.cli("ZCARD", f"{{mr:{model}}}:active") == "3"
    tracker.release_many([*before_fork, mine])


@needs_redis
def test_a_stalled_server_leaves_no_orphan_leases(server: RedisServer) -> None:
    """SIGSTOP the server while both slots are held, release them and try one more admission
    (it times out and is admitted on local counts). Once the server runs again, capacity must
    be back within one renewal interval (TTL/3), not one lease TTL; the timed-out admission,
    which the server may still run when it resumes, must never take a slot."""
    ttl = 6.0
    tracker = mr.LoadTracker(backend=server.url, lease_ttl_s=ttl, timeout_s=0.2)
    tracker.set_capacity("stall", 2)
    held = tracker.acquire_many("stall", 2)
    assert server.cli("ZCARD", "{mr:stall}:active") == "2"
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        for handle in held:  # the first times out, the second finds the backend marked down
            handle.release()
        time.sleep(0.6)  # past the fail-fast window, so the next admission is really sent
        late = tracker.acquire_many("stall", 1)
        assert len(late) == 1 and late[0].lease_id is None  # fail open: local counts
        status = tracker.backend_status()
        assert status is not None and status["pending_releases"] >= 2
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    resumed = time.monotonic()

    def settled() -> bool:
        status = tracker.backend_status()
        assert status is not None
        slots = server.cli("ZCARD", "{mr:stall}:active"), server.cli("ZCARD", "{mr:stall}:queued")
        return slots == ("0", "0") and status["pending_releases"] == 0

    while not settled():
        waited = time.monotonic() - resumed
        assert waited < ttl / 3 + 1.0, f"slots still held {waited:.1f} s after the server resumed"
        time.sleep(0.05)
    tracker.release_many(late)
    time.sleep(0.3)
    assert settled()  # the late admission never takes a slot, whenever the server runs it
