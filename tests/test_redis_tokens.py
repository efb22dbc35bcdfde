"""Token-aware limits shared through a real redis-server: N processes together keep one RPM
and one TPM quota (the Lua admission of `src/redis_backend/limits.rs`)."""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from collections.abc import Iterator

import pytest
import redis_workers

import modelrouter as mr
from modelrouter.testing.redis_server import REDIS, RedisServer, running

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with running(RedisServer) as srv:
        yield srv


def _race(server: RedisServer, limits: dict[str, int]) -> tuple[list[int], float]:
    model = f"tok-{uuid.uuid4().hex[:8]}"
    ctx = mp.get_context("spawn")
    totals = ctx.Array("q", 3)
    args = (server.url, model, limits, 8, 25, totals)
    procs = [ctx.Process(target=redis_workers.token_hammer, args=args) for _ in range(4)]
    start = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    return list(totals), time.monotonic() - start


def test_four_processes_keep_one_tpm_quota(server: RedisServer) -> None:
    (requests, tokens, errors), elapsed = _race(server, {"tpm": 10_000})
    assert errors == 0
    # The whole race runs inside one 60-s window: what every process admitted is that
    # window's content. Never over the quota, and filled to within one request of it.
    assert elapsed < 60
    assert tokens <= 10_000
    assert tokens > 10_000 - 900, tokens


def test_four_processes_keep_the_rpm_exact(server: RedisServer) -> None:
    (requests, _, errors), elapsed = _race(server, {"rpm": 57})
    assert errors == 0 and elapsed < 60
    assert requests == 57


def test_shared_usage_reconciles_and_refusals_say_when(server: RedisServer) -> None:
    model = f"tok-{uuid.uuid4().hex[:8]}"
    catalog = [mr.Model(model, {"code": 0.9}, tpm=1000, max_tokens_in_flight=900)]
    routers = [
        mr.Router(catalog, load=mr.LoadTracker(backend=server.url, fail_mode="closed"))
        for _ in range(2)
    ]
    agent = mr.Agent("a", {"code": 0.5})
    first = routers[0].request(agent, tokens=200, max_output_tokens=600)
    assert first.lease_id is not None
    # Tokens in flight are shared: the other replica sees 800 of 900 held.
    with pytest.raises(mr.NoCapacityError, match="max_tokens_in_flight"):
        routers[1].request(agent, tokens=150)
    first.set_usage(200, 50)  # 250 used: the window and the tokens in flight shrink
    load = routers[1].load(model)
    assert (load.tokens_in_window, load.tokens_in_flight) == (250, 250)
    first.release()
    with routers[1].request(agent, tokens=700):
        pass
    with pytest.raises(mr.NoCapacityError, match="tpm") as e:
        routers[0].request(agent, tokens=100)
    assert 55 < e.value.retry_after_s <= 60
    with pytest.raises(ValueError, match="tpm of 1000"):
        routers[0].request(agent, tokens=1001)
