"""The REST service's background task: it samples utilization (a history point and a store
row) and evaluates the alert rules once at start and then every ``sample_interval_s``. Ticks
are counted by wrapping the alert manager and a recording store; time is the monotonic clock,
with generous bounds and a polling deadline."""

from __future__ import annotations

import inspect
import statistics
import threading
import time
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="fastapi's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from modelrouter.server import create_app  # noqa: E402
from modelrouter.store import open_store  # noqa: E402


class CountingAlerts:
    """The service's AlertManager, with the monotonic time of every ``evaluate`` call."""

    def __init__(self, alerts: Any) -> None:
        self._alerts = alerts
        self.evaluated: list[float] = []

    def evaluate(self, *args: Any, **kw: Any) -> Any:
        self.evaluated.append(time.monotonic())
        return self._alerts.evaluate(*args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._alerts, name)


def test_the_default_interval_is_the_documented_two_seconds():
    # README: "a background task samples utilization ... and evaluates the alert rules every 2 s".
    assert inspect.signature(create_app).parameters["sample_interval_s"].default == 2.0


@pytest.mark.parametrize("interval", [0.1, 0.25])
def test_sampling_and_alert_evaluation_follow_the_configured_interval(interval):
    ticks = 10
    store = open_store("sqlite://:memory:")
    utilization: list[float] = []
    lock = threading.Lock()
    record = store.record_utilization

    def record_utilization(samples: Any, ts: float | None = None) -> None:
        with lock:
            utilization.append(time.monotonic())
        record(samples, ts=ts)

    store.record_utilization = record_utilization  # type: ignore[method-assign]
    app = create_app(store=store, sample_interval_s=interval)
    state = app.state.service
    alerts = state.alerts = CountingAlerts(state.alerts)
    with TestClient(app):
        start = time.monotonic()
        deadline = start + 30 * ticks * interval
        while len(alerts.evaluated) < ticks + 1:  # the one at start, then `ticks` more
            assert time.monotonic() < deadline, f"{len(alerts.evaluated)} ticks in 30x the time"
            time.sleep(0.01)
        evaluated = list(alerts.evaluated)
    # Every tick evaluates the alerts, keeps a history point and stores the utilization.
    with lock:
        assert len(utilization) == len(evaluated)
    assert len(state.history) == len(evaluated)
    gaps = [b - a for a, b in zip(evaluated, evaluated[1:])]
    # Never faster than configured (asyncio may wake a timer up to its clock resolution early)...
    assert min(gaps) >= interval * 0.9, gaps
    # ...and, the loop being otherwise idle, not much slower: the typical gap is the interval.
    assert statistics.median(gaps) <= interval * 2, gaps
