"""The OpenAI-compatible gateway (`modelrouter serve --upstreams FILE`) in a real uvicorn on
loopback, called with the real `openai` client, in front of fake upstreams: routing by agent,
byte-for-byte streams, failover with ejection, no leak when a client goes away mid-stream, and
no upstream key in anything it answers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

import modelrouter as mr
from modelrouter.store import open_store
from modelrouter.testing.asgi_server import serving
from modelrouter.testing.fake_upstream import FakeUpstreams

uvicorn = pytest.importorskip("uvicorn", reason="the server extra is a dev dependency")
openai = pytest.importorskip("openai", reason="the openai package is a dev dependency")
from modelrouter.server import create_app  # noqa: E402

NAMES = ["u0", "u1", "u2"]
SECRET = "sk-upstream-planted-secret-42"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def upstreams():
    with FakeUpstreams({n: {"latency_ms": 2, "jitter_ms": 1} for n in NAMES}) as up:
        yield up


@pytest.fixture
def gateway(upstreams, tmp_path):
    for n in NAMES:
        upstreams.set(n, mode="ok", chunk_delay_ms=0)
    upstreams.reset()
    spec = {
        "deployments": {
            n: {"base_url": upstreams.base_url(n), "api_key": SECRET, "model": f"m-{n}"}
            for n in NAMES
        },
        "agents": {"chatter": {"required": {"chat": 0.5}}},
        "default_agent": "chatter",
        "retries": 2,
    }
    path = tmp_path / "upstreams.json"
    path.write_text(json.dumps(spec))
    # u2 is the best match: calls go there first while it is available.
    models = [
        mr.Model(n, {"chat": 0.95 if n == "u2" else 0.9}, max_concurrent=8, max_queue=0)
        for n in NAMES
    ]
    store = open_store(f"sqlite:///{tmp_path / 'gw.db'}")
    app = create_app(models, store=store, upstreams=path)
    with serving(app) as base:
        yield base, app.state.service, store


def idle(service) -> bool:
    return all(service.router.load(n).active_requests == 0 for n in NAMES)


def test_openai_client_through_the_gateway(gateway, upstreams):
    base, service, _ = gateway
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
    direct = openai.OpenAI(base_url=upstreams.base_url("u2"), api_key="x", max_retries=0)
    answer = client.chat.completions.create(model="auto", messages=MESSAGES)
    assert answer.choices[0].message.content == "answer from u2"
    assert answer.model == "u2"  # the upstream's body, as it came
    pinned = client.chat.completions.create(
        model="u0", messages=MESSAGES, extra_headers={"x-modelrouter-agent": "chatter"}
    )
    assert pinned.choices[0].message.content == "answer from u0"
    assert client.completions.create(model="auto", prompt="x").choices[0].text == "ok"
    assert len(client.embeddings.create(model="auto", input=["a", "b"]).data) == 2
    kwargs = {"messages": MESSAGES, "stream": True}
    routed = [c.model_dump() for c in client.chat.completions.create(model="auto", **kwargs)]
    plain = [c.model_dump() for c in direct.chat.completions.create(model="u2", **kwargs)]
    assert routed == plain
    assert [m.id for m in client.models.list()] == ["auto", *NAMES]
    assert idle(service)


def test_one_sick_upstream_of_three_keeps_every_call_and_is_ejected(gateway, upstreams):
    base, service, store = gateway
    upstreams.set("u2", mode="error")
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
    ok = 0
    for _ in range(200):
        answer = client.chat.completions.create(model="auto", messages=MESSAGES)
        ok += answer.choices[0].message.content in ("answer from u0", "answer from u1")
    assert ok == 200
    assert service.router.health_of("u2")["state"] == "ejected"
    assert len(upstreams.arrivals("u2")) == 5  # the default consecutive-error limit
    store.flush()
    rows = store.feedback(limit=1000)
    assert sum(r["outcome"] == "server_error" for r in rows) == 5
    assert sum(r["outcome"] == "ok" for r in rows) == 200
    assert idle(service)


def test_a_relayed_stream_teaches_the_model_its_time_to_first_token(gateway, upstreams):
    """The relay reports the upstream's first chunk: one stream (one output length, from
    which latency alone could fit nothing) teaches u2 its TTFT and its time per token."""
    base, service, _ = gateway
    upstreams.set("u2", latency_ms=60, jitter_ms=0, chunk_delay_ms=40)
    try:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
        kwargs = {"stream": True, "stream_options": {"include_usage": True}}
        chunks = list(client.chat.completions.create(model="u2", messages=MESSAGES, **kwargs))
        assert chunks[-1].usage.completion_tokens == 10
    finally:
        upstreams.set("u2", latency_ms=2, jitter_ms=1)
    assert idle(service)
    ttft, per_token = service.router.token_timing("u2")
    # The first chunk waits for the upstream's 60 ms; the 10 tokens then take >= 4 x 40 ms.
    assert ttft >= 60 and per_token >= 16, (ttft, per_token)


def test_a_client_leaving_mid_stream_gives_the_slot_back(gateway, upstreams):
    base, service, store = gateway
    upstreams.set("u2", stream_chunks=50, chunk_delay_ms=50)
    body = {"model": "auto", "messages": MESSAGES, "stream": True}
    with httpx.Client(base_url=base) as c:
        with c.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            lines = r.iter_lines()  # kept: dropping the iterator would close the connection
            assert next(lines).startswith("data: ")
            assert service.router.load("u2").active_requests == 1
    deadline = time.monotonic() + 10
    while not idle(service):
        assert time.monotonic() < deadline, "the slot was not given back"
        time.sleep(0.05)
    store.flush()
    assert store.feedback(limit=1)[0]["outcome"] == "cancelled"
    assert service.router.health_of("u2")["consecutive_errors"] == 0


def test_bad_calls_get_openai_style_errors_and_no_secret_leaks(gateway, upstreams):
    base, service, _ = gateway
    upstreams.set("u0", mode="rate_limit", retry_after_s=4)
    seen = []
    with httpx.Client(base_url=base) as c:
        for path, body in [
            ("/v1/chat/completions", {"model": "nope", "messages": MESSAGES}),
            ("/v1/chat/completions", {"model": "auto", "agent": "stranger"}),
            ("/v1/chat/completions", {"model": "u0", "messages": MESSAGES}),
        ]:
            r = c.post(path, json=body)
            seen.append((r.status_code, r.headers.get("retry-after")))
            assert SECRET not in r.text and "error" in r.json()
        r = c.post("/v1/chat/completions", content=b"{not json")
        seen.append((r.status_code, None))
        service.draining = True  # after SIGTERM: refused before anything is called
        r = c.post("/v1/chat/completions", json={"model": "auto", "messages": MESSAGES})
        seen.append((r.status_code, r.headers.get("retry-after")))
        service.draining = False
        for path in ("/v1/models", "/api/v1/model-router/stats", "/metrics", "/openapi.json"):
            assert SECRET not in c.get(path).text
    assert seen == [(404, None), (400, None), (429, "4"), (400, None), (503, "1")]
    assert SECRET not in repr(service) and SECRET not in repr(service.router)
    assert service.router.health_of("u0")["state"] == "cooling_down"


def test_a_bad_upstreams_file_fails_at_start(tmp_path: Path):
    models = [mr.Model("a", {"chat": 0.9})]
    bad = tmp_path / "bad.json"
    ok = '"deployments": {"a": {"base_url": "http://x"}}'
    for text in (
        '{"deployments": {"b": {"base_url": "http://x"}}}',
        "[]",
        "{",
        "{" + ok + ', "retries": "two"}',
        '{"deployments": {"a": {"base_url": "http://x", "timeout_s": -1}}}',
        "{" + ok + ', "agents": {"x": {"required": {"code": 7}}}}',
        "{" + ok + ', "agents": ["x"]}',
    ):
        bad.write_text(text)
        with pytest.raises(mr.InvalidInputError):
            create_app(models, upstreams=bad)


def test_gateway_calls_need_a_route_key(upstreams, tmp_path):
    from modelrouter.server_auth import parse_api_keys

    testclient = pytest.importorskip("fastapi.testclient")
    upstreams.set("u0", mode="ok")
    keys = parse_api_keys(
        "caller route mr_route_key_0123456789\nfeeder report mr_report_key_0123456789"
    )
    spec = {"deployments": {"u0": {"base_url": upstreams.base_url("u0"), "api_key": SECRET}}}
    path = tmp_path / "upstreams.json"
    path.write_text(json.dumps({**spec, "agents": {"a": {}}, "default_agent": "a"}))
    app = create_app([mr.Model("u0", {"chat": 0.9})], upstreams=path, api_keys=keys)
    body = {"model": "auto", "messages": MESSAGES}
    seen = []
    with testclient.TestClient(app) as c:
        for key in (None, "mr_report_key_0123456789", "mr_route_key_0123456789"):
            headers = {"authorization": f"Bearer {key}"} if key else {}
            for method, path_ in (("POST", "/v1/chat/completions"), ("GET", "/v1/models")):
                r = c.request(method, path_, json=body if method == "POST" else None,
                              headers=headers)  # fmt: skip
                seen.append(r.status_code)
                assert SECRET not in r.text
    assert seen == [401, 401, 403, 403, 200, 200]
