"""modelrouter.openai: the routed SDK clients against fake OpenAI-compatible upstreams on
loopback, compared with the plain `openai` client on the same upstream. Nothing leaks: a
stream read to the end, closed, dropped, broken by its consumer or cancelled gives its slot
back and records its outcome."""

from __future__ import annotations

import asyncio
import gc

import pytest

import modelrouter as mr
from modelrouter.store import open_store
from modelrouter.testing.fake_upstream import FakeUpstreams

openai = pytest.importorskip("openai", reason="the openai package is a dev dependency")
routed = pytest.importorskip("modelrouter.openai")

NAMES = ["u0", "u1", "u2"]
AGENT = mr.Agent("caller", {"chat": 0.5})
MESSAGES = [{"role": "user", "content": "hi"}]
SECRET = "sk-planted-secret-0123456789"


def fleet() -> list[mr.Model]:
    """u2 is the best match: calls go there first while it is available."""
    return [
        mr.Model(n, {"chat": 0.95 if n == "u2" else 0.9}, max_concurrent=8, max_queue=0)
        for n in NAMES
    ]


@pytest.fixture(scope="module")
def upstreams():
    with FakeUpstreams({n: {"latency_ms": 2, "jitter_ms": 1} for n in NAMES}) as up:
        yield up


@pytest.fixture(autouse=True)
def healthy(upstreams):
    for n in NAMES:
        upstreams.set(n, mode="ok")
    upstreams.reset()


def deployments(up: FakeUpstreams) -> dict[str, dict[str, str]]:
    return {n: {"base_url": up.base_url(n), "api_key": SECRET, "model": f"m-{n}"} for n in NAMES}


def idle(router: mr.Router) -> bool:
    return all(router.load(n).active_requests == 0 for n in NAMES)


def test_auto_routes_and_a_concrete_model_pins(upstreams):
    router = mr.Router(fleet())
    client = routed.OpenAI(router=router, deployments=deployments(upstreams), agent=AGENT)
    plain = openai.OpenAI(base_url=upstreams.base_url("u2"), api_key="x", max_retries=0)
    answer = client.chat.completions.create(model="auto", messages=MESSAGES)
    direct = plain.chat.completions.create(model="m-u2", messages=MESSAGES)
    assert answer.choices[0].message.content == direct.choices[0].message.content
    assert answer.usage == direct.usage
    pinned = client.chat.completions.create(model="u0", messages=MESSAGES)
    assert pinned.choices[0].message.content == "answer from u0"
    assert client.completions.create(model="u1", prompt="x").choices[0].text == "ok"
    assert len(client.embeddings.create(input=["a", "b"]).data) == 2
    assert idle(router)
    stats = router.performance.stats("u2")
    assert stats.successes == 2 and stats.p50_ms is not None  # both "auto" calls
    assert router.performance.stats("u0").successes == 1


def test_a_failing_upstream_is_retried_ejected_and_every_call_succeeds(upstreams):
    router = mr.Router(fleet(), health={"consecutive_errors": 3})
    client = routed.OpenAI(router=router, deployments=deployments(upstreams), agent=AGENT)
    upstreams.set("u2", mode="error")
    answers = [
        client.chat.completions.create(messages=MESSAGES).choices[0].message.content
        for _ in range(300)
    ]
    assert all(a in ("answer from u0", "answer from u1") for a in answers)
    assert router.health_of("u2")["state"] == "ejected"
    assert len(upstreams.arrivals("u2")) == 3
    assert idle(router)


def test_a_pinned_call_is_not_moved_and_its_error_is_the_sdks(upstreams):
    router = mr.Router(fleet())
    client = routed.OpenAI(router=router, deployments=deployments(upstreams), agent=AGENT)
    upstreams.set("u0", mode="rate_limit", retry_after_s=7)
    with pytest.raises(mr.CallFailedError) as failed:
        client.chat.completions.create(model="u0", messages=MESSAGES)
    ((model, kind, exc),) = failed.value.attempts
    assert (model, kind) == ("u0", "rate_limited") and isinstance(exc, openai.RateLimitError)
    health = router.health_of("u0")
    assert health["state"] == "cooling_down"
    assert health["until"] - health["since"] == pytest.approx(7.0)


def test_streams_pass_chunks_through_and_hold_the_slot_until_the_end(upstreams, tmp_path):
    router = mr.Router(fleet())
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        client = routed.OpenAI(
            router=router, deployments=deployments(upstreams), agent=AGENT, store=store
        )
        plain = openai.OpenAI(base_url=upstreams.base_url("u2"), api_key="x", max_retries=0)
        kwargs = {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
        stream = client.chat.completions.create(**kwargs)
        assert router.load("u2").active_requests == 1
        chunks = [c.model_dump() for c in stream]
        direct = [c.model_dump() for c in plain.chat.completions.create(model="m-u2", **kwargs)]
        assert chunks == direct
        assert stream.usage.completion_tokens == 10 and stream.time_to_first_token_s > 0
        assert idle(router)

        closed = client.chat.completions.create(**kwargs)
        next(closed)
        closed.close()
        assert idle(router)

        class ConsumerBug(Exception):
            pass

        with pytest.raises(ConsumerBug), client.chat.completions.create(**kwargs) as s:
            for _ in s:
                raise ConsumerBug
        assert idle(router)

        dropped = client.chat.completions.create(**kwargs)
        next(dropped)
        del dropped
        gc.collect()
        assert idle(router)
        store.flush()
        kinds = [row["outcome"] for row in reversed(store.feedback())]  # type: ignore[attr-defined]
    assert kinds == ["ok", "cancelled", "cancelled", "cancelled"]
    assert router.health_of("u2")["consecutive_errors"] == 0  # the caller's, not the model's


def test_a_stream_teaches_the_model_its_time_to_first_token(upstreams):
    """The routed stream reports its first chunk to the router: one stream (one output length,
    from which latency alone could fit nothing) teaches both TTFT and the time per token."""
    router = mr.Router(fleet())
    client = routed.OpenAI(router=router, deployments=deployments(upstreams), agent=AGENT)
    plain = client.chat.completions.create(model="u2", messages=MESSAGES)
    assert plain.usage.completion_tokens == 10
    assert all(v != v for v in router.token_timing("u2"))  # NaN: nothing learned yet
    upstreams.set("u2", latency_ms=60, jitter_ms=0, chunk_delay_ms=40)
    try:
        kwargs = {"stream": True, "stream_options": {"include_usage": True}}
        stream = client.chat.completions.create(model="u2", messages=MESSAGES, **kwargs)
        assert len(list(stream)) == 6  # 5 pieces and the usage chunk
    finally:
        upstreams.set("u2", latency_ms=2, jitter_ms=1, chunk_delay_ms=0)
    ttft, per_token = router.token_timing("u2")
    # The first chunk waits for the upstream's 60 ms; the 10 tokens then take >= 4 x 40 ms.
    assert ttft >= 60 and per_token >= 16, (ttft, per_token)
    with pytest.raises(KeyError):
        router.token_timing("nope")


def test_async_client_streams_and_a_cancelled_task_gives_the_slot_back(upstreams):
    router = mr.Router(fleet())

    async def main() -> list[str]:
        async with routed.AsyncOpenAI(
            router=router, deployments=deployments(upstreams), agent=AGENT
        ) as client:
            answer = await client.chat.completions.create(messages=MESSAGES)
            stream = await client.chat.completions.create(messages=MESSAGES, stream=True)
            pieces = [c.choices[0].delta.content async for c in stream if c.choices]

            upstreams.set("u2", latency_ms=5000, jitter_ms=0)
            task = asyncio.create_task(client.chat.completions.create(messages=MESSAGES))
            await asyncio.sleep(0.2)
            assert router.load("u2").active_requests == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return [answer.choices[0].message.content, "".join(pieces)]

    assert asyncio.run(main()) == ["answer from u2", "t0 t1 t2 t3 t4 "]
    assert idle(router)


def test_no_secret_in_reprs_and_bad_input_names_the_field(upstreams):
    router = mr.Router(fleet())
    client = routed.OpenAI(router=router, deployments=deployments(upstreams))
    assert SECRET not in repr(client) and "u1" in repr(client)
    with pytest.raises(mr.InvalidInputError) as e:
        client.chat.completions.create(messages=MESSAGES)
    assert e.value.field == "agent"
    with pytest.raises(mr.UnknownModelError):
        client.chat.completions.create(agent=AGENT, model="nope", messages=MESSAGES)
    for bad in ({"u0": deployments(upstreams)["u0"]}, {**deployments(upstreams), "x": {}}):
        with pytest.raises(mr.InvalidInputError) as e:
            routed.OpenAI(router=router, deployments=bad)
        assert e.value.field == "deployments"
    with pytest.raises(mr.InvalidInputError, match="unknown keys"):
        routed.OpenAI(router=router, deployments={n: {"url": "x"} for n in NAMES})


def test_fallbacks_choose_where_a_failed_call_goes(upstreams):
    router = mr.Router(fleet())
    client = routed.OpenAI(
        router=router, deployments=deployments(upstreams), agent=AGENT, fallbacks=["u0"]
    )
    upstreams.set("u2", mode="error")
    answer = client.chat.completions.create(messages=MESSAGES)
    assert answer.choices[0].message.content == "answer from u0"  # not u1, the router's next
