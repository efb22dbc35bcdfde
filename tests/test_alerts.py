"""AlertManager: pending → firing after for_s, flaps, cooldown, resolved once, bounded history,
sinks (including a raising one) and the webhook sink against a local HTTP server."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelrouter as mr
from modelrouter.alerts import webhook_sink

TYPES = [
    "high_latency",
    "low_success_rate",
    "overload",
    "over_target_utilization",
    "stale_data",
    "no_capacity",
    "backend_unavailable",
    "model_ejected",
]


def load_fixture(models=("m",), max_concurrent=10):
    clock = mr.ManualClock()
    load = mr.LoadTracker(clock=clock)
    for m in models:
        load.set_capacity(m, max_concurrent=max_concurrent, target_utilization=0.8)
    return clock, load


def set_util(load, model: str, active: int) -> None:
    load.set_load(model, active_requests=active)


def reference(steps, for_s: float, cooldown_s: float):
    """The documented semantics for one rule and one model: (state, started_at, emitted_at)."""
    now, cond, out = 0.0, None, []
    for dt, breached in steps:
        now += dt
        if not breached:
            if cond and cond[0] == "firing":
                out.append(("resolved", cond[1], now))
            cond = None
            continue
        if cond is None:
            cond = ("pending", now, None)
        if cond[0] == "pending" and now - cond[1] >= for_s:
            cond = ("firing", cond[1], now)
            out.append(("firing", cond[1], now))
        elif cond[0] == "firing" and now - cond[2] >= cooldown_s:
            cond = ("firing", cond[1], now)
            out.append(("firing", cond[1], now))
    return out


@given(
    steps=st.lists(st.tuples(st.integers(0, 4), st.booleans()), max_size=40),
    for_s=st.integers(0, 6),
    cooldown_s=st.integers(0, 8),
)
def test_matches_the_reference_state_machine(steps, for_s, cooldown_s):
    clock, load = load_fixture()
    rule = mr.AlertRule("overload", 0.5, for_s=float(for_s))
    am = mr.AlertManager([rule], cooldown_s=float(cooldown_s), load=load)
    alerts = []
    for dt, breached in steps:
        clock.advance(float(dt))
        set_util(load, "m", 8 if breached else 2)
        alerts += am.evaluate()
    assert [(a.state, a.started_at, a.emitted_at) for a in alerts] == reference(
        steps, for_s, cooldown_s
    )
    resolved = [a.id for a in alerts if a.state == "resolved"]
    fired = {a.id for a in alerts if a.state == "firing"}
    assert len(resolved) == len(set(resolved)) and set(resolved) <= fired


def test_pending_until_for_s_then_firing():
    clock, load = load_fixture()
    am = mr.AlertManager([mr.AlertRule("overload", 0.5, for_s=10.0)], load=load)
    set_util(load, "m", 9)
    assert am.evaluate() == []
    clock.advance(9.0)
    set_util(load, "m", 9)
    assert am.evaluate() == [] and am.active() == []
    clock.advance(1.0)
    set_util(load, "m", 9)
    (alert,) = am.evaluate()
    assert (alert.state, alert.type, alert.model_id) == ("firing", "overload", "m")
    assert (alert.started_at, alert.emitted_at, alert.value) == (0.0, 10.0, 0.9)
    assert [a.id for a in am.active()] == [alert.id]


def test_flap_shorter_than_for_s_sends_nothing():
    clock, load = load_fixture()
    sent = []
    am = mr.AlertManager(
        [mr.AlertRule("overload", 0.5, for_s=5.0)], load=load, on_alert=sent.append
    )
    for active in (9, 9, 1, 9, 9, 1):
        clock.advance(2.0)
        set_util(load, "m", active)
        assert am.evaluate() == []
    assert sent == [] and am.history() == []


def test_cooldown_stops_repeats_but_never_hides_a_new_alert():
    clock, load = load_fixture(models=("a", "b"))
    rules = [mr.AlertRule("overload", 0.5), mr.AlertRule("over_target_utilization", 1.2)]
    am = mr.AlertManager(rules, cooldown_s=60.0, load=load)
    set_util(load, "a", 9)
    assert [(x.type, x.model_id) for x in am.evaluate()] == [("overload", "a")]
    clock.advance(10.0)
    set_util(load, "a", 9)
    assert am.evaluate() == []  # same alert inside its cooldown
    set_util(load, "b", 9)
    assert [(x.type, x.model_id) for x in am.evaluate()] == [("overload", "b")]
    set_util(load, "a", 10)  # 1.0 / 0.8 = 1.25 > 1.2: another type on the same model
    assert [(x.type, x.model_id) for x in am.evaluate()] == [("over_target_utilization", "a")]
    clock.advance(50.0)
    set_util(load, "a", 10)
    set_util(load, "b", 9)
    repeats = am.evaluate()
    assert [(x.type, x.model_id, x.state) for x in repeats] == [("overload", "a", "firing")]
    assert len({x.id for x in am.active()}) == 3


def test_resolved_is_emitted_exactly_once_and_refiring_is_new():
    clock, load = load_fixture()
    am = mr.AlertManager([mr.AlertRule("overload", 0.5)], cooldown_s=1e9, load=load)
    set_util(load, "m", 9)
    (fired,) = am.evaluate()
    set_util(load, "m", 1)
    (resolved,) = am.evaluate()
    assert (resolved.state, resolved.id, resolved.started_at) == ("resolved", fired.id, 0.0)
    for _ in range(3):
        assert am.evaluate() == []
    set_util(load, "m", 9)
    (again,) = am.evaluate()  # inside the cooldown, yet a new episode is always sent
    assert again.state == "firing" and again.id != fired.id


def test_performance_rules_and_min_samples():
    clock = mr.ManualClock()
    perf = mr.PerformanceTracker(clock=clock)
    rules = [
        mr.AlertRule("high_latency", 500.0, severity="critical", min_samples=3),
        mr.AlertRule("low_success_rate", 0.9, model_id="b"),
    ]
    am = mr.AlertManager(rules, performance=perf)
    perf.record("a", 900.0)
    perf.record("a", 900.0)
    perf.record("b", 10.0, False)
    assert [(x.type, x.model_id) for x in am.evaluate()] == [("low_success_rate", "b")]
    perf.record("a", 900.0)
    (alert,) = am.evaluate()
    assert (alert.type, alert.severity, alert.model_id) == ("high_latency", "critical", "a")
    assert alert.value == pytest.approx(900.0, rel=0.01) and alert.threshold == 500.0
    assert "high_latency" in alert.message and '"a"' in alert.message


def test_fleet_no_capacity_and_stale_data():
    clock, load = load_fixture(models=("a", "b"), max_concurrent=1)
    rules = [mr.AlertRule("no_capacity", 0), mr.AlertRule("stale_data", 30.0, for_s=5.0)]
    am = mr.AlertManager(rules, load=load)
    set_util(load, "a", 1)
    assert am.evaluate() == []
    set_util(load, "b", 1)
    (full,) = am.evaluate()
    assert (full.type, full.model_id, full.value) == ("no_capacity", None, 0.0)
    clock.advance(31.0)
    assert am.evaluate() == []  # stale_data pending
    clock.advance(5.0)
    out = am.evaluate()
    assert sorted((x.type, x.model_id) for x in out) == [("stale_data", "a"), ("stale_data", "b")]


def test_history_is_bounded_and_filterable():
    clock, load = load_fixture(models=("a", "b"))
    rules = [mr.AlertRule("overload", 0.5), mr.AlertRule("overload", 0.8, severity="error")]
    am = mr.AlertManager(rules, cooldown_s=0.0, load=load, history_limit=7)
    for i in range(10):
        clock.advance(1.0)
        set_util(load, "a", 9)
        set_util(load, "b", 6 if i < 9 else 1)
        am.evaluate()
    hist = am.history()
    assert len(hist) == 7
    assert [h.emitted_at for h in hist] == sorted(h.emitted_at for h in hist)
    assert all(h.severity == "error" for h in am.history(severity="error"))
    assert [h.state for h in am.history(model_id="b")] == ["firing", "resolved"]
    assert len(am.history(model_id="a", limit=2)) == 2
    assert am.history(type="stale_data") == []
    with pytest.raises(ValueError, match="critical"):
        am.history(severity="fatal")
    with pytest.raises(ValueError, match="no_capacity"):
        am.history(type="latency")


def test_sinks_get_every_notification_and_a_raising_sink_breaks_nothing(caplog):
    clock, load = load_fixture()
    got = []

    def broken(alert):
        raise RuntimeError("sink down")

    am = mr.AlertManager([mr.AlertRule("overload", 0.5)], load=load, on_alert=broken)
    am.add_sink(got.append)
    set_util(load, "m", 9)
    with caplog.at_level(logging.ERROR, logger="modelrouter.alerts"):
        out = am.evaluate()
    assert len(out) == 1 and [a.id for a in got] == [out[0].id]
    assert am.sink_errors == 1 and am.history()[0].id == out[0].id
    assert any("sink down" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    set_util(load, "m", 1)
    assert [a.state for a in am.evaluate()] == ["resolved"] and got[-1].state == "resolved"
    with pytest.raises(ValueError, match="callable"):
        am.add_sink(42)


class Collector(BaseHTTPRequestHandler):
    bodies: list = []
    status = 200

    def do_POST(self):  # noqa: N802
        length = int(self.headers["Content-Length"])
        Collector.bodies.append((self.headers["Content-Type"], self.rfile.read(length)))
        self.send_response(Collector.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Collector.bodies, Collector.status = [], 200
    httpd = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    httpd.shutdown()
    httpd.server_close()


def test_webhook_sink_posts_json(server):
    clock, load = load_fixture()
    am = mr.AlertManager([mr.AlertRule("overload", 0.5)], load=load, on_alert=webhook_sink(server))
    set_util(load, "m", 9)
    (alert,) = am.evaluate()
    ((content_type, body),) = Collector.bodies
    assert content_type == "application/json"
    assert json.loads(body) == alert.to_dict()
    assert set(alert.to_dict()) >= {"id", "type", "severity", "model_id", "state", "message"}


def test_failing_webhook_is_logged_not_raised(server, caplog):
    Collector.status = 500
    clock, load = load_fixture()
    am = mr.AlertManager([mr.AlertRule("overload", 0.5)], load=load, on_alert=webhook_sink(server))
    set_util(load, "m", 9)
    with caplog.at_level(logging.ERROR, logger="modelrouter.alerts"):
        assert len(am.evaluate()) == 1
    assert am.sink_errors == 1 and len(Collector.bodies) == 1
    with pytest.raises(ValueError):
        webhook_sink("ftp://example.invalid/")


def test_unknown_type_and_severity_list_the_valid_ones():
    with pytest.raises(ValueError) as info:
        mr.AlertRule("latency_high", 1.0)
    assert all(t in str(info.value) for t in TYPES)
    with pytest.raises(ValueError, match="info, warning, error, critical"):
        mr.AlertRule("overload", 1.0, severity="fatal")
    for t in TYPES:
        assert mr.AlertRule(t, 1.0).type == t


def test_bad_rules_and_settings():
    with pytest.raises(ValueError, match="for_s"):
        mr.AlertRule("overload", 1.0, for_s=-1.0)
    with pytest.raises(ValueError, match="threshold"):
        mr.AlertRule("overload", float("nan"))
    with pytest.raises(ValueError, match="needs load"):
        mr.AlertManager([mr.AlertRule("overload", 1.0)], performance=mr.PerformanceTracker())
    with pytest.raises(ValueError, match="needs performance"):
        mr.AlertManager([mr.AlertRule("high_latency", 1.0)], load=mr.LoadTracker())
    with pytest.raises(ValueError, match="cooldown_s"):
        mr.AlertManager([], cooldown_s=-1.0)
    alert_cls = mr.Alert
    with pytest.raises(TypeError):
        alert_cls()  # created only by the manager


def test_backend_unavailable_fires_when_the_shared_load_backend_is_down():
    # Port 1 on loopback refuses at once: the backend is down from the first admission.
    tracker = mr.LoadTracker(backend="redis://127.0.0.1:1/0", fail_mode="open", timeout_s=0.2)
    router = mr.Router([mr.Model("m", {"code": 0.9})], load=tracker)
    am = mr.AlertManager(
        [mr.AlertRule("backend_unavailable", 0.5, severity="critical")], load=tracker
    )
    with router.request(mr.Agent("a", {"code": 0.5})):
        pass
    fired = am.evaluate()
    assert [(a.type, a.state, a.value) for a in fired] == [("backend_unavailable", "firing", 1.0)]
    assert tracker.backend_status()["fail_open_events"] >= 1


def test_backend_unavailable_stays_quiet_without_a_backend():
    load = mr.LoadTracker()
    load.set_capacity("m", max_concurrent=1)
    am = mr.AlertManager([mr.AlertRule("backend_unavailable", 0.5)], load=load)
    assert am.evaluate() == [] and am.active() == []


def _health_router():
    clock = mr.ManualClock()
    fleet = [mr.Model(f"m{j}", {"code": 0.9 - 0.1 * j}, max_concurrent=4) for j in range(3)]
    return mr.Router(fleet, load=mr.LoadTracker(clock=clock)), clock


def test_model_ejected_fires_while_out_and_resolves_when_healthy_again():
    router, clock = _health_router()
    agent = mr.Agent("x", {"code": 0.5})
    am = mr.AlertManager(
        [mr.AlertRule("model_ejected", 0.0, severity="error")], health=router, clock=clock
    )
    assert am.evaluate() == []
    for _ in range(5):
        with router.request(agent) as f:
            assert f.model_id == "m0"
            f.fail("server_error")
    with router.request(agent) as f:
        assert f.model_id == "m1"
        f.fail("rate_limited", retry_after_s=2.0)
    fired = am.evaluate()
    assert [(a.type, a.model_id, a.state, a.value) for a in fired] == [
        ("model_ejected", "m0", "firing", 3.0),
        ("model_ejected", "m1", "firing", 2.0),
    ]
    assert "state ejected" in fired[0].message and "state cooling_down" in fired[1].message
    # m1's cooldown is over and its probe succeeds: resolved; m0 is still out.
    clock.advance(2.0)
    probe = router.request(agent)
    assert probe.model_id == "m1"
    probe.release()
    resolved = am.evaluate()
    assert [(a.model_id, a.state, a.id) for a in resolved] == [("m1", "resolved", fired[1].id)]
    assert [a.model_id for a in am.active()] == ["m0"]


def test_model_ejected_threshold_one_ignores_probing_and_a_callable_source_works():
    states = {"a": {"state": "probing"}, "b": {"state": "ejected"}}
    am = mr.AlertManager([mr.AlertRule("model_ejected", 1.0)], health=lambda: states)
    assert [a.model_id for a in am.evaluate()] == ["b"]
    states["b"] = {"state": "healthy"}
    assert [(a.model_id, a.state) for a in am.evaluate()] == [("b", "resolved")]


def test_the_health_source_is_read_once_per_evaluation():
    reads = []

    def source():
        reads.append(1)
        return {f"m{j}": {"state": "ejected"} for j in range(50)}

    rules = [mr.AlertRule("model_ejected", 0.0), mr.AlertRule("model_ejected", 2.0)]
    am = mr.AlertManager(rules, health=source)
    assert len(am.evaluate()) == 100 and len(reads) == 1


def test_model_ejected_needs_a_health_source():
    with pytest.raises(ValueError, match="needs health"):
        mr.AlertManager([mr.AlertRule("model_ejected", 0.0)], load=mr.LoadTracker())
    with pytest.raises(ValueError, match="health"):
        mr.AlertManager([mr.AlertRule("model_ejected", 0.0)], health=42)
