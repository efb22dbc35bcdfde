"""Failure-aware routing as the REST service shows it: feedback with an outcome feeds the
model's health, GET health lists it, the model_ejected alert fires and resolves, /metrics and
the stats (the dashboard) mark models that are out, and the store keeps each outcome."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="fastapi's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

import modelrouter as mr  # noqa: E402
from modelrouter.server import PREFIX, create_app  # noqa: E402
from modelrouter.server_state import default_alert_rules  # noqa: E402
from modelrouter.store import open_store  # noqa: E402


def parse_metrics(text):
    """{(name, sorted label pairs): value} of the sample lines (the format itself is checked
    by test_server_metrics)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, _, labels = head.partition("{")
        pairs = [p.split("=", 1) for p in labels.rstrip("}").split(",") if p]
        out[(name, tuple(sorted((k, v.strip('"')) for k, v in pairs)))] = float(value)
    return out


AGENT = {"id": "a", "required": {"code": 0.5}}


def fleet():
    return [mr.Model(f"m{j}", {"code": 0.9 - 0.1 * j}, max_concurrent=4) for j in range(3)]


def reserve_and_end(c, outcome=None, **extra):
    r = c.post(f"{PREFIX}/route", json={"agent": AGENT, "reserve": True})
    assert r.status_code == 200, r.text
    routed = r.json()
    body = {"model_id": routed["model_id"], "request_id": routed["request_id"], **extra}
    if outcome is not None:
        body["outcome"] = outcome
    r = c.post(f"{PREFIX}/feedback", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def health_by_model(c):
    r = c.get(f"{PREFIX}/health")
    assert r.status_code == 200, r.text
    return r.json()


def test_default_rules_watch_ejections():
    assert "model_ejected" in [r.type for r in default_alert_rules()]


def test_server_errors_reported_through_feedback_eject_the_model_everywhere():
    app = create_app(fleet(), sample_interval_s=3600)
    with TestClient(app) as c:
        before = health_by_model(c)
        assert before["unhealthy"] == 0
        assert [m["state"] for m in before["models"]] == ["healthy"] * 3
        for _ in range(5):
            out = reserve_and_end(c, "server_error", success=False)
            ended = (out["model_id"], out["outcome"], out["released"])
            assert ended == ("m0", "server_error", True)
        after = health_by_model(c)
        m0 = after["models"][0]
        assert after["unhealthy"] == 1
        assert (m0["model_id"], m0["state"], m0["ejections"]) == ("m0", "ejected", 1)
        assert m0["until_unix"] - m0["since_unix"] == pytest.approx(30.0, abs=1e-3)
        assert reserve_and_end(c)["model_id"] == "m1"  # routing passes over it

        # The alert (a default rule), the metrics and the stats the dashboard reads.
        app.state.service.sample()
        active = c.get(f"{PREFIX}/alerts").json()["active"]
        assert [(a["type"], a["model_id"], a["state"]) for a in active] == [
            ("model_ejected", "m0", "firing")
        ]
        metrics = parse_metrics(c.get("/metrics").text)
        health = "modelrouter_model_health"
        assert metrics[(health, (("model", "m0"), ("state", "ejected")))] == 1
        assert metrics[(health, (("model", "m0"), ("state", "healthy")))] == 0
        assert metrics[(health, (("model", "m1"), ("state", "healthy")))] == 1
        ejections = "modelrouter_model_ejections_total"
        assert metrics[(ejections, (("model", "m0"),))] == 1
        assert metrics[(ejections, (("model", "m1"),))] == 0
        models = c.get(f"{PREFIX}/stats").json()["models"]
        assert [m["health"]["state"] for m in models] == ["ejected", "healthy", "healthy"]
        # The liveness probe is unchanged.
        assert set(c.get("/health").json()) == {"status", "version", "models", "store"}


def test_a_rate_limit_with_retry_after_cools_the_model_down_then_the_alert_resolves():
    app = create_app(fleet(), sample_interval_s=3600)
    with TestClient(app) as c:
        out = reserve_and_end(c, "rate_limited", retry_after_s=0.0, success=False)
        assert out["outcome"] == "rate_limited" and out["success"] is False
        m0 = health_by_model(c)["models"][0]
        assert m0["state"] in ("cooling_down", "probing") and m0["ejections"] == 0
        app.state.service.sample()
        assert [a["model_id"] for a in c.get(f"{PREFIX}/alerts").json()["active"]] == ["m0"]
        # Its Retry-After (0 s) is over: the next request probes it and succeeds.
        assert reserve_and_end(c, "ok")["model_id"] == "m0"
        assert health_by_model(c)["models"][0]["state"] == "healthy"
        app.state.service.sample()
        alerts = c.get(f"{PREFIX}/alerts").json()
        assert alerts["active"] == []
        assert [(a["model_id"], a["state"]) for a in alerts["history"]] == [
            ("m0", "firing"),
            ("m0", "resolved"),
        ]


@pytest.mark.parametrize(
    ("extra", "loc"),
    [
        ({"outcome": "exploded"}, "outcome"),
        ({"outcome": "rate_limited", "retry_after_s": -1.0}, "retry_after_s"),
        ({"outcome": "rate_limited", "retry_after_s": "soon"}, "retry_after_s"),
        ({"outcome": "server_error", "retry_after_s": 2.0}, "retry_after_s"),
        ({"retry_after_s": 2.0}, "retry_after_s"),
        ({"outcome": "server_error", "success": True}, "success"),
        ({"outcome": "ok", "success": False}, "success"),
    ],
)
def test_bad_outcomes_are_422s_naming_the_path(extra, loc):
    app = create_app(fleet(), sample_interval_s=3600)
    with TestClient(app) as c:
        r = c.post(f"{PREFIX}/route", json={"agent": AGENT, "reserve": True})
        rid = r.json()["request_id"]
        body = {"model_id": "m0", "request_id": rid, **extra}
        r = c.post(f"{PREFIX}/feedback", json=body)
        assert r.status_code == 422, r.text
        assert ("body", loc) in [tuple(e["loc"]) for e in r.json()["detail"]]
        assert r.json()["field"] == loc
        assert app.state.service.reservations  # nothing was released


def test_the_store_records_each_feedbacks_outcome(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/d.db")
    app = create_app(fleet(), store=store, sample_interval_s=3600)
    with TestClient(app) as c:
        reserve_and_end(c, "timeout", success=False)
        reserve_and_end(c, "rate_limited", retry_after_s=1.0, success=False)
        reserve_and_end(c)
        body = {"model_id": "m2", "latency_ms": 5.0, "success": False}
        assert c.post(f"{PREFIX}/feedback", json=body).json()["outcome"] == "failed"
        body = {"model_id": "m2", "latency_ms": 5.0, "outcome": "client_error", "success": False}
        assert c.post(f"{PREFIX}/feedback", json=body).json()["outcome"] == "client_error"
        store.flush()
        rows = store.feedback()
    assert [(r["outcome"], r["success"]) for r in reversed(rows)] == [
        ("timeout", False),
        ("rate_limited", False),
        ("ok", True),
        ("failed", False),
        ("client_error", False),
    ]
