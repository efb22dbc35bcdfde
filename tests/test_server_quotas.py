"""Per-key limits of the REST service: rpm= on a key caps its requests on every endpoint,
tpm= its gateway token spend (as the upstreams count it); 429 with Retry-After at once, other
keys unaffected, usage per key in /metrics."""

from __future__ import annotations

import json

import pytest

import modelrouter as mr
from modelrouter.server_auth import parse_api_keys
from modelrouter.testing.fake_upstream import FakeUpstreams

testclient = pytest.importorskip("fastapi.testclient")
from modelrouter.server import create_app  # noqa: E402

ROUTE = "/api/v1/model-router/route"
ADMIN = {"authorization": "Bearer mr_admin_key_0123456789"}
SLOW = {"authorization": "Bearer mr_slow_key_01234567890"}
FAST = {"authorization": "Bearer mr_fast_key_01234567890"}
KEYS = (
    "ops admin mr_admin_key_0123456789\n"
    "slow route mr_slow_key_01234567890 rpm=3 tpm=100\n"
    "fast route mr_fast_key_01234567890\n"
)
AGENT = {"agent": {"id": "a", "required": {"chat": 0.5}}}


def test_key_limits_parse_and_bad_ones_are_refused():
    keys = parse_api_keys(KEYS)
    assert [(k.id, k.rpm, k.tpm) for k in keys.keys] == [
        ("ops", None, None),
        ("slow", 3, 100),
        ("fast", None, None),
    ]
    for bad in ("x route mr_x_key_0123456789012 rpm=0", "x route mr_x_key_0123456789012 qps=3",
                "x route mr_x_key_0123456789012 rpm=1 rpm=2"):  # fmt: skip
        with pytest.raises(mr.InvalidInputError) as e:
            parse_api_keys(bad)
        assert "mr_x_key" not in str(e.value)


def test_a_keys_rpm_caps_its_requests_and_no_one_elses():
    app = create_app([mr.Model("m", {"chat": 0.9})], store=None, api_keys=parse_api_keys(KEYS))
    with testclient.TestClient(app) as c:
        slow = [c.post(ROUTE, json=AGENT, headers=SLOW) for _ in range(5)]
        fast = [c.post(ROUTE, json=AGENT, headers=FAST) for _ in range(5)]
        metrics = c.get("/metrics", headers=ADMIN).text
    assert [r.status_code for r in slow] == [200, 200, 200, 429, 429]
    assert 1 <= int(slow[3].headers["retry-after"]) <= 60
    assert all(r.status_code == 200 for r in fast)
    assert 'modelrouter_key_requests_total{key="slow"} 3' in metrics
    assert 'modelrouter_key_requests_total{key="fast"} 5' in metrics
    assert 'modelrouter_key_refused_total{key="slow",limit="rpm"} 2' in metrics


def test_a_keys_tpm_caps_its_gateway_spend_by_usage(tmp_path):
    keys = parse_api_keys(KEYS.replace("rpm=3 tpm=100", "tpm=100"))
    with FakeUpstreams({"m": {"latency_ms": 1, "jitter_ms": 0}}) as up:  # usage: 30 a call
        spec = {"deployments": {"m": {"base_url": up.base_url("m")}}, "agents": {"a": {}}}
        path = tmp_path / "upstreams.json"
        path.write_text(json.dumps({**spec, "default_agent": "a"}))
        app = create_app([mr.Model("m", {"chat": 0.9})], upstreams=path, api_keys=keys)
        body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 40}
        with testclient.TestClient(app) as c:
            # Each call reserves 45 tokens (5 prompt + 40 output) and uses 30: after two
            # (60 in the window) a third's reservation would pass the 100.
            slow = [c.post("/v1/chat/completions", json=body, headers=SLOW) for _ in range(4)]
            too_big = c.post("/v1/chat/completions", json={**body, "max_tokens": 500},
                             headers=SLOW)  # fmt: skip
            fast = c.post("/v1/chat/completions", json=body, headers=FAST)
            metrics = c.get("/metrics", headers=ADMIN).text
        upstream_calls = len(up.arrivals("m"))
    assert [r.status_code for r in slow] == [200, 200, 429, 429]
    assert (
        slow[3].json()["error"]["code"] == "rate_limit_exceeded" and slow[3].headers["retry-after"]
    )
    assert too_big.status_code == 400 and "tpm" in too_big.json()["error"]["message"]
    assert fast.status_code == 200
    assert upstream_calls == 3  # refused calls never reached the upstream
    assert 'modelrouter_key_tokens_total{key="slow"} 60' in metrics
    assert 'modelrouter_key_refused_total{key="slow",limit="tpm"} 3' in metrics
