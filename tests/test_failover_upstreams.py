"""Router.call / acall against real HTTP: fake OpenAI-compatible upstreams on loopback
(modelrouter.testing.fake_upstream) and the real `openai` client. A dead upstream is ejected
after the consecutive-error limit and then left alone; a rate-limited one is probed once per
Retry-After; every call succeeds."""

from __future__ import annotations

import asyncio

import pytest

import modelrouter as mr
from modelrouter.outcomes import Outcome, classify
from modelrouter.testing.fake_upstream import FakeUpstreams

openai = pytest.importorskip("openai", reason="the openai package is a dev dependency")

NAMES = ["u0", "u1", "u2"]
AGENT = mr.Agent("caller", {"chat": 0.5})
MESSAGES = [{"role": "user", "content": "hi"}]


def fleet() -> list[mr.Model]:
    """u2 is the best match, so every call goes there first while it is available."""
    return [
        mr.Model(n, {"chat": 0.95 if n == "u2" else 0.9}, max_concurrent=16, max_queue=0)
        for n in NAMES
    ]


def test_the_fake_upstream_answers_like_an_openai_server() -> None:
    with FakeUpstreams({"a": {"latency_ms": 1, "jitter_ms": 0}}) as up:
        client = openai.OpenAI(base_url=up.base_url("a"), api_key="x", max_retries=0)
        answer = client.chat.completions.create(model="m", messages=MESSAGES)
        assert answer.choices[0].message.content == "answer from a"
        assert answer.usage.total_tokens == 30
        chunks = list(
            client.chat.completions.create(
                model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
        assert [c.choices[0].delta.content for c in chunks if c.choices] == [
            f"t{i} " for i in range(5)
        ]
        assert chunks[-1].usage.completion_tokens == 10
        up.set("a", mode="rate_limit", retry_after_s=3)
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert classify(limited.value) == Outcome("rate_limited", 3.0)
        up.set("a", mode="error")
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert len(up.arrivals("a")) == 4
        with pytest.raises(ValueError, match="mode"):
            FakeUpstreams({"b": {"mode": "sometimes"}})


def test_a_dead_upstream_is_ejected_and_every_call_succeeds() -> None:
    router = mr.Router(fleet(), health={"consecutive_errors": 4})
    with FakeUpstreams({n: {"latency_ms": 2, "jitter_ms": 1} for n in NAMES}) as up:
        up.set("u2", mode="error")
        clients = {
            n: openai.OpenAI(base_url=up.base_url(n), api_key="x", max_retries=0) for n in NAMES
        }

        def fn(model_id: str) -> str:
            answer = clients[model_id].chat.completions.create(model="m", messages=MESSAGES)
            return answer.choices[0].message.content or ""

        answers = [router.call(AGENT, fn) for _ in range(200)]
        assert all(a in ("answer from u0", "answer from u1") for a in answers)
        health = router.health_of("u2")
        assert health["state"] == "ejected" and health["ejections"] == 1
        # Sequential callers: it hears exactly the consecutive-error limit, then nothing.
        assert len(up.arrivals("u2")) == 4


def test_acall_probes_a_rate_limited_upstream_once_per_retry_after() -> None:
    clock = mr.ManualClock(0.0)
    router = mr.Router(fleet(), load=mr.LoadTracker(clock=clock))

    async def main(up: FakeUpstreams) -> list[str]:
        clients = {
            n: openai.AsyncOpenAI(base_url=up.base_url(n), api_key="x", max_retries=0)
            for n in NAMES
        }

        async def fn(model_id: str) -> str:
            answer = await clients[model_id].chat.completions.create(model="m", messages=MESSAGES)
            return answer.choices[0].message.content or ""

        out = []
        for step in range(40):  # 8 calls at a time, 0.5 s of the manual clock apart
            clock.set(step * 0.5)
            out += await asyncio.gather(*(router.acall(AGENT, fn) for _ in range(8)))
            sent.append(len(up.arrivals("u2")) - sum(sent))
        await asyncio.gather(*(c.close() for c in clients.values()))
        return out

    sent: list[int] = []  # requests u2 got in each round
    with FakeUpstreams({n: {"latency_ms": 2, "jitter_ms": 1} for n in NAMES}) as up:
        up.set("u2", mode="rate_limit", retry_after_s=2)
        answers = asyncio.run(main(up))
    assert len(answers) == 320 and all(a != "answer from u2" for a in answers)
    # The first round finds it healthy; after that exactly one probe each time a 2-s
    # cooldown ends (t = 2, 4, ..., 18 of the manual clock) and nothing in between.
    assert sent[0] >= 1
    assert sent[1:] == [1 if step % 4 == 0 else 0 for step in range(1, 40)]
    assert router.health_of("u2")["state"] == "cooling_down"
