"""Token sizes on the way in (estimates from OpenAI-style bodies) and on the way out (the
answer's usage) for the routed SDK client, the gateway and Router.call: admission by the
estimate, the TPM window reconciled to what the provider counted."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelrouter as mr
from modelrouter import _usage
from modelrouter.testing.fake_upstream import FakeUpstreams

openai = pytest.importorskip("openai", reason="the openai package is a dev dependency")
routed = pytest.importorskip("modelrouter.openai")


def test_estimates_of_chat_completion_and_embedding_bodies():
    chat = {"messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 100}
    assert _usage.estimate(chat) == (10 + 4, 100)
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "y" * 8}]}]}
    assert _usage.estimate(parts) == (2 + 4, 0)
    assert _usage.estimate({"prompt": "z" * 9, "max_completion_tokens": 5, "n": 3}) == (3, 15)
    assert _usage.estimate({"input": ["ab", "cd"]}) == (1, 0)
    assert _usage.estimate({"input": [[1, 2, 3]]}) == (3, 0)  # token ids count one each
    assert _usage.estimate({"max_tokens": -4, "messages": "not a list"}) == (0, 0)
    huge = {"prompt": "w" * 50_000_000}
    assert _usage.estimate(huge)[0] == _usage._MAX_CHARS // 4  # bounded work and result


@given(st.text(max_size=500), st.text(max_size=500))
def test_a_longer_prompt_never_estimates_fewer_tokens(a, b):
    one = _usage.estimate({"messages": [{"role": "user", "content": a}]})[0]
    both = _usage.estimate({"messages": [{"role": "user", "content": a + b}]})[0]
    assert both >= one >= 4


def test_usage_is_read_from_sdk_objects_bodies_and_stream_tails():
    body = json.dumps({"usage": {"prompt_tokens": 7, "completion_tokens": 3}}).encode()
    assert _usage.usage_of(body) == (7, 3)
    assert _usage.usage_of({"usage": {"prompt_tokens": 7, "total_tokens": 7}}) == (7, 0)
    assert _usage.usage_of({"usage": {"prompt_tokens": -1}}) is None
    assert _usage.usage_of(b"not json") is None
    tail = (
        b'data: {"choices":[]}\n\ndata: {"choices":[],"usage":{"prompt_tokens":5,'
        b'"completion_tokens":2}}\n\ndata: [DONE]\n\n'
    )
    assert _usage.usage_in_stream_tail(tail) == (5, 2)
    assert _usage.usage_in_stream_tail(b"data: [DONE]\n\n") is None


@pytest.fixture(scope="module")
def upstreams():
    with FakeUpstreams({"a": {"latency_ms": 1, "jitter_ms": 0}}) as up:
        yield up


def test_the_routed_client_admits_by_estimate_and_reconciles_to_usage(upstreams):
    model = mr.Model("a", {"chat": 0.9}, tpm=1000)
    router = mr.Router([model])
    client = routed.OpenAI(
        router=router,
        deployments={"a": {"base_url": upstreams.base_url("a"), "api_key": "x"}},
        agent=mr.Agent("c", {"chat": 0.5}),
    )
    messages = [{"role": "user", "content": "x" * 400}]  # ~104 tokens estimated, 20 used
    client.chat.completions.create(messages=messages, max_tokens=300)
    assert router.load("a").tokens_in_window == 30  # the fake upstream's usage: 20 + 10
    assert router.load("a").tokens_in_flight == 0
    with pytest.raises(mr.InvalidInputError) as too_big:
        client.chat.completions.create(messages=messages, max_tokens=2000)
    assert too_big.value.field == "tokens" and "tpm" in str(too_big.value)
    stream = client.chat.completions.create(
        messages=messages, max_tokens=50, stream=True, stream_options={"include_usage": True}
    )
    assert router.load("a").tokens_in_flight == 104 + 50
    list(stream)
    assert router.load("a").tokens_in_window == 60 and router.load("a").tokens_in_flight == 0


def test_router_call_sizes_every_attempt(upstreams):
    models = [mr.Model("a", {"chat": 0.9}, tpm=100), mr.Model("b", {"chat": 0.8}, tpm=10_000)]
    router = mr.Router(models)
    seen = []

    def fn(model_id: str) -> str:
        seen.append((model_id, router.load(model_id).tokens_in_flight))
        return model_id

    # 150 tokens can never fit a's TPM of 100: b serves it, a is not even tried.
    assert router.call(mr.Agent("c", {"chat": 0.5}), fn, tokens=120, max_output_tokens=30) == "b"
    assert seen == [("b", 150)]
    with pytest.raises(mr.InvalidInputError):
        router.call(mr.Agent("c", {"chat": 0.5}), fn, tokens=-1)


def test_the_gateway_sizes_calls_and_reconciles_usage(upstreams, tmp_path):
    testclient = pytest.importorskip("fastapi.testclient")
    from modelrouter.server import create_app

    spec = {"deployments": {"a": {"base_url": upstreams.base_url("a")}}, "agents": {"c": {}}}
    path = tmp_path / "upstreams.json"
    path.write_text(json.dumps({**spec, "default_agent": "c"}))
    app = create_app([mr.Model("a", {"chat": 0.9}, tpm=1000)], upstreams=path)
    router = app.state.service.router
    body = {"model": "auto", "messages": [{"role": "user", "content": "x" * 400}]}
    with testclient.TestClient(app) as c:
        assert c.post("/v1/chat/completions", json={**body, "max_tokens": 300}).status_code == 200
        assert router.load("a").tokens_in_window == 30
        too_big = c.post("/v1/chat/completions", json={**body, "max_tokens": 5000})
        assert too_big.status_code == 400 and "tpm" in too_big.json()["error"]["message"]
        streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
        assert c.post("/v1/chat/completions", json=streamed).status_code == 200
    assert router.load("a").tokens_in_window == 60 and router.load("a").tokens_in_flight == 0
