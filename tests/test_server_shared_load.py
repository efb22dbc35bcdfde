"""Two service instances (as two uvicorn workers would be) given the same Redis load backend
share the live load: a slot reserved through one is taken for the other."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="fastapi's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

import modelrouter as mr  # noqa: E402
from modelrouter.server import PREFIX, create_app  # noqa: E402
from modelrouter.testing.redis_server import REDIS, RedisServer, running  # noqa: E402


@pytest.fixture
def redis_url():
    if REDIS is None:
        pytest.skip("redis-server is not installed")
    with running(RedisServer) as srv:
        yield srv.url


def wait_for(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_workers_share_load_through_redis(redis_url):
    fleet = [mr.Model("shared-solo", {"code": 0.9}, max_concurrent=1, max_queue=0)]
    body = {"agent": {"id": "a", "required": {"code": 0.5}}, "reserve": True}
    one = create_app(fleet, load_backend=redis_url, sample_interval_s=3600)
    two = create_app(fleet, load_backend=redis_url, sample_interval_s=3600)
    with TestClient(one) as c1, TestClient(two) as c2:
        first = c1.post(f"{PREFIX}/route", json=body)
        assert first.status_code == 200
        # Admission is atomic in Redis, so the other instance is refused at once ...
        assert c2.post(f"{PREFIX}/route", json=body).status_code == 503
        # ... and its view of the load shows the slot once its short read cache (5 ms) expires.
        assert wait_for(lambda: c2.get(f"{PREFIX}/stats").json()["models"][0]["active"] == 1)
        rid = first.json()["request_id"]
        c1.post(f"{PREFIX}/feedback", json={"model_id": "shared-solo", "request_id": rid})
        assert c2.post(f"{PREFIX}/route", json=body).status_code == 200


def test_without_a_backend_each_instance_counts_alone():
    fleet = [mr.Model("solo", {"code": 0.9}, max_concurrent=1, max_queue=0)]
    body = {"agent": {"id": "a", "required": {"code": 0.5}}, "reserve": True}
    with TestClient(create_app(fleet, sample_interval_s=3600)) as c1:
        with TestClient(create_app(fleet, sample_interval_s=3600)) as c2:
            assert c1.post(f"{PREFIX}/route", json=body).status_code == 200
            assert c2.post(f"{PREFIX}/route", json=body).status_code == 200
