"""Degradations are visible: the `modelrouter` logger records each one once per transition
(lost, then regained), never once per call — a shared Redis backend under fail_mode="open",
decision-store back-pressure, and alert sinks that fail."""

from __future__ import annotations

import logging
import threading
import time

import pytest

import modelrouter as mr
from modelrouter.store import open_store
from modelrouter.testing.redis_server import RedisServer


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def records(caplog, text: str, level: int) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.startswith("modelrouter") and r.levelno == level and text in r.getMessage()
    ]


def test_losing_and_regaining_redis_with_fail_open_is_logged_once_each(caplog):
    caplog.set_level(logging.INFO, logger="modelrouter")
    server = RedisServer().start()
    try:
        tracker = mr.LoadTracker(backend=server.url, fail_mode="open", timeout_s=0.2)
        router = mr.Router([mr.Model("m", {"code": 0.9}, max_concurrent=50)], load=tracker)
        agent = mr.Agent("a", {"code": 0.5})
        with router.request(agent):
            pass
        assert tracker.backend_status()["available"] is True
        server.stop()
        for _ in range(3):  # three fail-fast windows, several requests in each
            for _ in range(10):
                with router.request(agent):  # admitted on this process's own counts
                    pass
            time.sleep(0.6)
        assert tracker.backend_status()["fail_open_events"] >= 30
        lost = f"shared load backend {server.url} is unavailable"
        wait_for(lambda: records(caplog, lost, logging.WARNING))
        time.sleep(0.2)  # a second record would have arrived by now
        (record,) = records(caplog, lost, logging.WARNING)
        assert record.name == "modelrouter"
        assert "fail_mode=open: limits now hold per replica" in record.getMessage()

        server = RedisServer(port=server.port).start()  # the same address comes back

        def admitted_through_redis() -> bool:
            with router.request(agent):
                pass
            return tracker.backend_status()["available"]

        wait_for(admitted_through_redis)
        for _ in range(10):
            with router.request(agent):
                pass
        back = f"shared load backend {server.url} answers again"
        wait_for(lambda: records(caplog, back, logging.INFO))
        time.sleep(0.2)
        assert len(records(caplog, back, logging.INFO)) == 1
        assert len(records(caplog, lost, logging.WARNING)) == 1
    finally:
        server.stop()


def test_store_back_pressure_is_logged_when_full_and_when_caught_up(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="modelrouter")
    store = open_store(f"sqlite:///{tmp_path}/d.db", max_queue=4, batch_size=2)
    gate = threading.Event()
    commit = store._commit
    store._commit = lambda rows, n: (gate.wait(10), commit(rows, n))[1]  # a stalled database
    try:
        store.record_route("a0", "m", "least_loaded")
        wait_for(lambda: store._busy)  # the writer holds it, stalled
        for i in range(1, 5):  # four more fill the queue
            store.record_route(f"a{i}", "m", "least_loaded")
        assert store.room() == 0
        for _ in range(50):
            assert store.room() == 0
        full = records(caplog, "decision store queue full (4 rows)", logging.WARNING)
        assert len(full) == 1 and full[0].name == "modelrouter.store"
        gate.set()
        store.flush(timeout=10)
        caught_up = records(caplog, "decision store caught up", logging.INFO)
        assert len(caught_up) == 1
        assert store.room() == 4 and store.written == 5
    finally:
        gate.set()
        store.close()


def test_a_failing_alert_sink_is_logged_when_it_fails_and_when_it_recovers(caplog):
    caplog.set_level(logging.INFO, logger="modelrouter")
    clock = mr.ManualClock()
    load = mr.LoadTracker(clock=clock)
    load.set_capacity("m", max_concurrent=10)
    down = {"on": True}

    def sink(alert):
        if down["on"]:
            raise ConnectionError("webhook unreachable")

    am = mr.AlertManager([mr.AlertRule("overload", 0.5)], load=load, on_alert=sink, clock=clock)

    def episode():  # one firing and one resolved notice: two sink calls
        load.set_load("m", active_requests=9)
        am.evaluate()
        load.set_load("m", active_requests=1)
        am.evaluate()

    for _ in range(3):
        episode()
    assert am.sink_errors == 6
    failed = records(caplog, "failed on", logging.ERROR)
    assert len(failed) == 1 and failed[0].name == "modelrouter.alerts" and failed[0].exc_info
    down["on"] = False
    episode()
    episode()
    assert len(records(caplog, "delivers again", logging.INFO)) == 1
    down["on"] = True
    episode()
    assert len(records(caplog, "failed on", logging.ERROR)) == 2


@pytest.mark.parametrize("level", [logging.DEBUG])
def test_nothing_is_logged_on_the_healthy_path(caplog, level):
    caplog.set_level(level, logger="modelrouter")
    router = mr.Router([mr.Model("m", {"code": 0.9})])
    for _ in range(100):
        with router.request(mr.Agent("a", {"code": 0.5})):
            pass
    time.sleep(0.1)
    assert [r for r in caplog.records if r.name.startswith("modelrouter")] == []
