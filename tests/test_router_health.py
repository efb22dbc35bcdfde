"""Failure-aware routing from Python: outcomes reported on a request feed the router's health
(outlier ejection, cooldowns, one probe at a time), and routing passes over models that are out."""

from __future__ import annotations

import pytest

import modelrouter as mr

AGENT = mr.Agent("x", {"code": 0.5})


def fleet(n: int = 4) -> list[mr.Model]:
    return [mr.Model(f"m{j}", {"code": 0.9 - 0.1 * j}, max_concurrent=4) for j in range(n)]


def router() -> tuple[mr.Router, mr.ManualClock]:
    clock = mr.ManualClock()
    return mr.Router(fleet(), load=mr.LoadTracker(clock=clock)), clock


def test_five_server_errors_eject_a_model_until_its_probe_succeeds():
    r, clock = router()
    for _ in range(5):
        with r.request(AGENT) as f:
            assert f.model_id == "m0"
            f.fail("server_error")
    h = r.health_of("m0")
    assert h["state"] == "ejected" and h["ejections"] == 1 and h["until"] == 30.0
    assert h["reason"] == "5 consecutive errors"
    assert r.route(AGENT) == "m1"
    clock.advance(30.0)
    assert r.health_of("m0")["state"] == "probing"
    probe = r.request(AGENT)
    assert probe.model_id == "m0"
    with r.request(AGENT) as other:  # one probe at a time
        assert other.model_id != "m0"
    probe.release()  # success
    assert r.health()["m0"]["state"] == "healthy"
    assert r.route(AGENT) == "m0"


def test_a_rate_limit_cools_down_until_retry_after():
    r, clock = router()
    with r.request(AGENT) as f:
        f.fail("rate_limited", retry_after_s=2.0)
    assert r.health_of("m0")["state"] == "cooling_down"
    assert r.health_of("m0")["ejections"] == 0
    assert r.route(AGENT) == "m1"
    clock.advance(2.0)
    assert r.route(AGENT) == "m0"  # probing: the next request may try it


def test_the_callers_errors_are_not_held_against_the_model():
    r, _ = router()
    for _ in range(10):
        with r.request(AGENT) as f:
            f.fail("client_error")
        with r.request(AGENT) as f:
            f.fail("context_length")
    assert r.health_of("m0")["state"] == "healthy"
    assert r.performance.stats("m0").count == 0


def test_an_exception_still_counts_as_a_failure():
    r, _ = router()
    for _ in range(5):
        with pytest.raises(RuntimeError), r.request(AGENT):
            raise RuntimeError("upstream broke")
    assert r.health_of("m0")["state"] == "ejected"


def test_bad_outcomes_are_value_errors_naming_the_field():
    r, _ = router()
    f = r.request(AGENT)
    with pytest.raises(mr.InvalidInputError, match="server_error") as e:
        f.fail("exploded")
    assert e.value.field == "kind"
    with pytest.raises(mr.InvalidInputError) as e:
        f.fail("rate_limited", retry_after_s=-1.0)
    assert e.value.field == "retry_after_s"
    f.release()
    assert mr.OUTCOMES == [
        "ok",
        "rate_limited",
        "server_error",
        "timeout",
        "context_length",
        "client_error",
        "cancelled",
        "failed",
    ]
    with pytest.raises(KeyError):
        r.health_of("nope")


def test_exceptions_raised_in_the_block_are_classified():
    httpx = pytest.importorskip("httpx", reason="httpx is not installed")
    r, _ = router()
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    limited = httpx.Response(429, headers={"Retry-After": "3"}, request=request)
    with pytest.raises(httpx.HTTPStatusError), r.request(AGENT) as f:
        assert f.model_id == "m0"
        raise httpx.HTTPStatusError("429", request=request, response=limited)
    h = r.health_of("m0")
    assert h["state"] == "cooling_down" and h["until"] == 3.0
    bad = httpx.Response(400, json={"error": {"code": "invalid_request"}}, request=request)
    for _ in range(10):
        with pytest.raises(httpx.HTTPStatusError), r.request(AGENT) as f:
            raise httpx.HTTPStatusError("400", request=request, response=bad)
    assert r.health_of("m1")["state"] == "healthy"  # the caller's error, never the model's
    from modelrouter import outcomes

    assert mr.OUTCOMES == list(outcomes.OUTCOME_KINDS)  # the classifier's list is the core's


def test_health_settings_by_name():
    clock = mr.ManualClock()
    r = mr.Router(
        fleet(),
        load=mr.LoadTracker(clock=clock),
        health={"consecutive_errors": 2, "base_ejection_s": 5},
    )
    for _ in range(2):
        with r.request(AGENT) as f:
            f.fail("timeout")
    assert r.health_of("m0")["until"] == 5.0
    for bad, field in [
        ({"consecutive_erors": 2}, "health"),
        ({"failure_rate": 2.0}, "failure_rate"),
        ({"min_requests": 1.5}, "min_requests"),
        ({"interval_s": "soon"}, "interval_s"),
    ]:
        with pytest.raises(mr.InvalidInputError) as e:
            mr.Router(fleet(), health=bad)
        assert e.value.field == field


def test_record_takes_an_outcome_and_the_callers_errors_do_not_count():
    r, _ = router()
    for _ in range(10):
        r.record("m0", 5.0, False, outcome="client_error")
    assert r.health_of("m0")["state"] == "healthy"
    assert r.performance.stats("m0").count == 0
    r.record("m0", 5.0, False, outcome="rate_limited", retry_after_s=4.0)
    assert r.health_of("m0")["state"] == "cooling_down"
    with pytest.raises(mr.InvalidInputError) as e:
        r.record("m0", 5.0, False, outcome="sideways")
    assert e.value.field == "kind"
