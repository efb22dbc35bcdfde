"""`LoadTracker.acquire_many` / `release_many`: a batch admits exactly what one request at a
time would, and gives everything back exactly once (in-process counts; Redis in test_redis*)."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelrouter as mr


def tracker(max_concurrent: int, max_queue: int, held: int = 0) -> mr.LoadTracker:
    t = mr.LoadTracker(clock=mr.ManualClock(0.0))
    t.set_capacity("m", max_concurrent=max_concurrent, max_queue=max_queue)
    t.update_load("m", held)
    return t


def one_at_a_time(t: mr.LoadTracker, n: int, max_c: int, max_q: int) -> list[mr.InFlight]:
    """The oracle: a Router admitting single requests until refused (the handles are kept)."""
    model = mr.Model("m", {"c": 1.0}, max_concurrent=max_c, max_queue=max_q)
    router = mr.Router([model], load=t)
    agent = mr.Agent("a", {"c": 0.5})
    out = []
    for _ in range(n):
        try:
            out.append(router.request(agent))
        except mr.NoCapacityError:
            break
    return out


def counts(t: mr.LoadTracker) -> tuple[int, int]:
    load = t.current_load("m")
    assert load is not None
    return load.active_requests, load.queue_depth


@given(st.integers(0, 6), st.integers(0, 4), st.integers(0, 8), st.integers(0, 12), st.booleans())
def test_a_batch_admits_what_single_requests_would(max_c, max_q, held, n, one_by_one):
    max_c = max(max_c, 1)
    held = min(held, max_c)
    batched, single = tracker(max_c, max_q, held), tracker(max_c, max_q, held)
    handles = batched.acquire_many("m", n)
    expected = one_at_a_time(single, n, max_c, max_q)
    free = max_c - held
    slots = min(n, free)
    assert [h.queued for h in handles] == [False] * slots + [True] * min(n - slots, max_q)
    assert [h.queued for h in handles] == [h.queued for h in expected]
    assert all(h.model_id == "m" and not h.released and h.lease_id is None for h in handles)
    assert counts(batched) == counts(single)
    if one_by_one:
        for h in handles:
            h.release()
    else:
        assert batched.release_many(handles) == len(handles)
    assert counts(batched) == (held, 0)
    assert batched.release_many(handles) == 0  # exactly once
    assert all(h.released for h in handles)


def test_handles_work_as_context_managers_and_mix_with_single_releases():
    t = tracker(4, 0)
    handles = t.acquire_many("m", 6)
    assert len(handles) == 4
    with handles[0]:
        assert counts(t) == (4, 0)
    handles[1].release()
    assert counts(t) == (2, 0)
    assert t.release_many(handles) == 2
    assert counts(t) == (0, 0)


def test_bad_batches_name_the_field():
    t = tracker(2, 0)
    for n in (-1, 10_001):
        with pytest.raises(ValueError) as info:
            t.acquire_many("m", n)
        assert isinstance(info.value, mr.InvalidInputError) and info.value.field == "n"
    with pytest.raises(KeyError):
        t.acquire_many("nope", 1)
    with pytest.raises(TypeError):
        t.acquire_many("m", "3")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        t.release_many([object()])  # type: ignore[list-item]
    assert t.acquire_many("m", 0) == []
    assert t.release_many([]) == 0


def test_release_many_spans_models_and_trackers():
    a, b = tracker(3, 0), mr.LoadTracker()
    b.set_capacity("x", max_concurrent=2)
    handles = a.acquire_many("m", 3) + b.acquire_many("x", 5)
    assert len(handles) == 5
    assert a.release_many(handles) == 5
    assert counts(a) == (0, 0) and b.current_load("x").active_requests == 0  # type: ignore[union-attr]


def test_threads_batching_at_once_never_exceed_the_limits():
    t = mr.LoadTracker()
    t.set_capacity("m", max_concurrent=50, max_queue=10)
    taken: list[list[mr.InFlight]] = []  # kept alive: a dropped handle gives its slot back
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        handles = t.acquire_many("m", 13)
        with lock:
            taken.append(handles)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(map(len, taken)) == 60
    assert counts(t) == (50, 10)
    assert sum(h.queued for batch in taken for h in batch) == 10
