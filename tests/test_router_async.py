"""Router.acquire: asyncio admission that waits for capacity without starving the event loop,
and never blocks it on a shared backend's round trip."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

import modelrouter as mr
from modelrouter.testing.redis_server import REDIS, RedisServer, running

AGENT = mr.Agent("x", {"code": 0.5})


def fleet(slots: int = 4) -> list[mr.Model]:
    return [mr.Model("m", {"code": 0.9}, max_concurrent=slots)]


async def ticker(gaps: list[float], stop: asyncio.Event) -> None:
    """Records the longest time the loop left this task waiting for a 5 ms sleep."""
    last = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.005)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


def test_many_tasks_wait_their_turn_and_all_get_served() -> None:
    router = mr.Router(fleet(4))
    peak = [0]

    async def call() -> None:
        async with router.acquire(AGENT, timeout_s=10.0) as r:
            peak[0] = max(peak[0], router.load(r.model_id).active_requests)
            await asyncio.sleep(0.01)

    async def main() -> list[float]:
        gaps: list[float] = []
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(gaps, stop))
        await asyncio.gather(*(call() for _ in range(64)))
        stop.set()
        await tick
        return gaps

    gaps = asyncio.run(main())
    assert peak[0] == 4
    assert router.load("m").active_requests == 0
    assert router.performance.stats("m").count == 64
    # The waiters yielded: the loop kept running other tasks all along.
    assert len(gaps) > 10 and max(gaps) < 0.5


def test_a_full_fleet_times_out_with_no_capacity() -> None:
    router = mr.Router(fleet(1))
    held = router.request(AGENT)

    async def main() -> None:
        started = time.monotonic()
        with pytest.raises(mr.NoCapacityError, match="waited 0.2 s"):
            await router.acquire(AGENT, timeout_s=0.2)
        assert time.monotonic() - started >= 0.2
        with pytest.raises(mr.NoCapacityError):  # no timeout: answer at once, as request()
            await router.acquire(AGENT)

    asyncio.run(main())
    held.release()
    assert router.load("m").active_requests == 0


def test_await_gives_an_admitted_request_and_exceptions_end_it_as_failed() -> None:
    router = mr.Router(fleet(2))

    async def main() -> None:
        r = await router.acquire(AGENT)
        assert router.load("m").active_requests == 1
        r.release()
        with pytest.raises(RuntimeError):
            async with router.acquire(AGENT):
                raise RuntimeError("model call failed")

    asyncio.run(main())
    stats = router.performance.stats("m")
    assert (stats.count, stats.failures) == (2, 1)
    assert router.load("m").active_requests == 0


def test_cancelled_waiters_leave_nothing_behind() -> None:
    router = mr.Router(fleet(1))
    held = router.request(AGENT)

    async def main() -> None:
        tasks = [
            asyncio.create_task(router.acquire(AGENT, timeout_s=5.0).admit()) for _ in range(20)
        ]
        await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    held.release()
    assert router.load("m").active_requests == 0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "soon"])
def test_bad_timeout_names_the_field(bad) -> None:
    router = mr.Router(fleet())
    with pytest.raises(mr.InvalidInputError) as info:
        router.acquire(AGENT, timeout_s=bad)
    assert info.value.field == "timeout_s"


@pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")
def test_a_stalled_redis_never_blocks_the_event_loop() -> None:
    with running(RedisServer) as server:
        tracker = mr.LoadTracker(backend=server.url, timeout_s=0.5, fail_mode="closed")
        router = mr.Router(fleet(4), load=tracker)

        async def main() -> list[float]:
            gaps: list[float] = []
            stop = asyncio.Event()
            tick = asyncio.create_task(ticker(gaps, stop))
            async with router.acquire(AGENT):
                pass
            assert server.proc is not None
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                with pytest.raises(mr.BackendUnavailableError):
                    await router.acquire(AGENT, timeout_s=1.0)
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            stop.set()
            await tick
            return gaps

        gaps = asyncio.run(main())
        # The admission waited 0.5 s on the stalled server; the loop kept ticking meanwhile.
        assert max(gaps) < 0.25, max(gaps)
