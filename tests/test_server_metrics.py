"""/metrics: the Prometheus text format parsed line by line, the latency histogram (read from the
router's core PerformanceTracker), label escaping, and alerts as they fire."""

from __future__ import annotations

import math
import re

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="fastapi's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

import modelrouter as mr  # noqa: E402
from modelrouter.server import PREFIX, create_app  # noqa: E402
from modelrouter.server_state import Reservation, ServiceState  # noqa: E402

CODER = {"id": "coder", "required": {"code": 0.8}}


def tiny_fleet():
    return [mr.Model("solo", {"code": 0.9}, max_concurrent=1, max_queue=0)]


@pytest.fixture
def client():
    with TestClient(create_app(sample_interval_s=3600)) as c:
        yield c


def test_alerts_fire_and_show_in_metrics():
    rules = [mr.AlertRule("overload", 0.5, severity="critical")]
    app = create_app(tiny_fleet(), alert_rules=rules, sample_interval_s=3600)
    with TestClient(app) as c:
        assert c.get(f"{PREFIX}/alerts").json()["active"] == []
        body = {"agent": {"id": "a", "required": {"code": 0.5}}, "reserve": True}
        c.post(f"{PREFIX}/route", json=body)
        app.state.service.sample()
        alerts = c.get(f"{PREFIX}/alerts").json()
        assert [(a["type"], a["model_id"], a["state"]) for a in alerts["active"]] == [
            ("overload", "solo", "firing")
        ]
        assert alerts["history"][-1]["severity"] == "critical"
        assert c.get(f"{PREFIX}/stats").json()["active_alerts"] == 1
        metrics = parse_metrics(c.get("/metrics").text)
        assert metrics[("modelrouter_alerts_firing", (("severity", "critical"),))] == 1
        key = (("model", "solo"), ("severity", "critical"), ("type", "overload"))
        assert metrics[("modelrouter_alert", key)] == 1


LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Every line is a HELP, a TYPE or a sample; samples follow their family's TYPE."""
    assert text.endswith("\n")
    samples, typed = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter", "histogram") and name not in typed
            typed[name] = kind
            continue
        m = LINE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        name, labels = m.group(1), tuple(sorted(LABEL.findall(m.group(3) or "")))
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert family in typed, f"{name} has no TYPE line"
        assert (name, labels) not in samples
        samples[(name, labels)] = float(m.group(4))
    return samples


def test_metrics_format(client):
    client.post(f"{PREFIX}/route", json={"agent": CODER})
    for latency in (3.0, 40.0, 700.0, 99999.0):
        client.post(f"{PREFIX}/feedback", json={"model_id": "model-A", "latency_ms": latency})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = parse_metrics(r.text)
    for model in ("model-A", "model-B", "model-C"):
        for name in ("active_requests", "queued_requests", "utilization"):
            assert (f"modelrouter_{name}", (("model", model),)) in m
    assert m[("modelrouter_routes_total", (("outcome", "routed"),))] == 1
    buckets = sorted(
        (math.inf if dict(k)["le"] == "+Inf" else float(dict(k)["le"]), v)
        for (name, k), v in m.items()
        if name == "modelrouter_request_latency_ms_bucket"
    )
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] == 4
    assert dict(buckets)[5.0] == 1 and dict(buckets)[50.0] == 2 and dict(buckets)[60000.0] == 3
    count_key = ("modelrouter_request_latency_ms_count", (("model", "model-A"),))
    sum_key = ("modelrouter_request_latency_ms_sum", (("model", "model-A"),))
    assert m[count_key] == 4 and m[sum_key] == pytest.approx(3 + 40 + 700 + 99999)


def test_metrics_escape_label_values():
    models = [mr.Model('we"ird\\id', {"code": 0.9})]
    with TestClient(create_app(models, sample_interval_s=3600)) as c:
        m = parse_metrics(c.get("/metrics").text)
    assert ("modelrouter_utilization", (("model", 'we\\"ird\\\\id'),)) in m


def latency_family(m, model):
    """(le, count) pairs of the model's histogram buckets, `_count` and `_sum`."""
    buckets = sorted(
        (math.inf if dict(k)["le"] == "+Inf" else float(dict(k)["le"]), v)
        for (name, k), v in m.items()
        if name == "modelrouter_request_latency_ms_bucket" and dict(k)["model"] == model
    )
    labels = (("model", model),)
    return (
        buckets,
        m.get(("modelrouter_request_latency_ms_count", labels)),
        m.get(("modelrouter_request_latency_ms_sum", labels)),
    )


def test_metrics_and_stats_read_the_routers_core_tracker(client):
    """Whatever feeds the router's PerformanceTracker shows, however it got there: feedback,
    a reservation released, or a direct `router.record` in the same process."""
    state = client.app.state.service
    assert latency_family(parse_metrics(client.get("/metrics").text), "model-B") == ([], None, None)
    client.post(f"{PREFIX}/feedback", json={"model_id": "model-B", "latency_ms": 20.0})
    state.router.record("model-B", 400.0, False)
    state.router.performance.record("model-B", 7.0, True)
    m = parse_metrics(client.get("/metrics").text)
    buckets, count, total = latency_family(m, "model-B")
    core = state.router.performance.latency_histogram("model-B", [b for b, _ in buckets[:-1]])
    assert [n for _, n in buckets] == [*core.counts, 3] and (count, total) == (3, 427.0)
    assert dict(buckets)[10.0] == 1 and dict(buckets)[25.0] == 2 and dict(buckets)[500.0] == 3
    feedback = {
        dict(k)["success"]: v for (name, k), v in m.items() if name == "modelrouter_feedback_total"
    }
    assert feedback == {"true": 2, "false": 1}
    stats = client.get(f"{PREFIX}/stats").json()
    assert stats["feedback"] == {"total": 3, "success": 2, "failure": 1}
    fleet = state.router.performance.fleet_stats()
    assert stats["overall"]["count"] == fleet.count == 3
    assert stats["overall"]["p99_ms"] == fleet.p99_ms and stats["overall"]["max_ms"] == 400.0
    b = next(x for x in stats["models"] if x["model_id"] == "model-B")
    assert b["stats"]["count"] == 3


def manual_state(clock, **kw):
    """A service state on a manual clock, without the app around it."""
    settings = dict(strategy="optimal", policy="weighted", load_weight=0.5, store=None)
    settings.update(alert_rules=[], alert_cooldown_s=0.0, reservation_ttl_s=60.0)
    return ServiceState(tiny_fleet(), **{**settings, **kw}, clock=clock)


def test_histogram_is_since_start_while_the_stats_read_the_window():
    clock = mr.ManualClock()
    state = manual_state(clock, stats_window_s=300.0)
    state.router.record("solo", 30.0, True)
    clock.advance(1000.0)
    state.router.record("solo", 3000.0, False)
    assert state.overall_stats()["count"] == 1 and state.overall_stats()["max_ms"] == 3000.0
    assert state.stats()["models"][0]["stats"]["count"] == 1
    assert state.stats()["feedback"] == {"total": 2, "success": 1, "failure": 1}
    buckets, count, total = latency_family(parse_metrics(state.metrics()), "solo")
    assert dict(buckets)[50.0] == 1 and dict(buckets)[5000.0] == 2
    assert (count, total) == (2, 3030.0)
    clock.advance(1000.0)
    assert state.overall_stats()["count"] == 0 and state.overall_stats()["p50_ms"] is None
    assert latency_family(parse_metrics(state.metrics()), "solo")[1:] == (2, 3030.0)


def test_expired_reservations_are_recorded_with_the_time_held():
    clock = mr.ManualClock()
    state = manual_state(clock, reservation_ttl_s=30.0)
    flight = state.router.request(mr.Agent("a", {"code": 0.5}))
    state.reservations["r1"] = Reservation(flight, "a", state.now())
    clock.advance(10.0)
    assert state.expire_reservations() == 0
    clock.advance(25.0)
    assert state.expire_reservations() == 1 and state.reservations == {}
    h = state.router.performance.latency_histogram("solo", [])
    assert (h.count, h.failures, h.sum_ms) == (1, 1, 35_000.0)


def test_agent_statistics_are_capped_and_their_evictions_exported():
    app = create_app(sample_interval_s=3600)
    perf = app.state.service.router.performance
    model = app.state.service.router.models[0].id
    with TestClient(app) as c:
        for i in range(3):
            body = {"model_id": model, "latency_ms": 5.0, "agent_id": f"a{i}"}
            assert c.post("/api/v1/model-router/feedback", json=body).status_code == 200
        stats = c.get("/api/v1/model-router/stats").json()["performance"]
        assert stats["agents_tracked"] == 3 and stats["max_agents"] == perf.max_agents
        assert stats["evicted_agents"] == perf.evicted_agents == 0
        text = c.get("/metrics").text
    assert "modelrouter_agents_tracked 3" in text
    assert 'modelrouter_retries_total{budget="granted"} 0' in text
    assert "modelrouter_agents_evicted_total 0" in text
