"""/metrics: the Prometheus text format parsed line by line, the latency histogram, label
escaping, and alerts as they fire."""

from __future__ import annotations

import math
import re

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="fastapi's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

import modelrouter as mr  # noqa: E402
from modelrouter.server import PREFIX, create_app  # noqa: E402

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
