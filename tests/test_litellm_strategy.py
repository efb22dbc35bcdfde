"""modelrouter.litellm: a real LiteLLM Router keeps its model_list and routes through
modelrouter (admission, policies, health), against fake OpenAI-compatible upstreams on
loopback; LiteLLM's callbacks end every admitted request with its outcome."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

import modelrouter as mr
from modelrouter.testing.fake_upstream import FakeUpstreams

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # nothing beyond loopback
litellm = pytest.importorskip("litellm", reason="litellm is a dev dependency")
from modelrouter.litellm import ModelRouterStrategy  # noqa: E402

# LiteLLM's own import-time noise (its pydantic models), not ours.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydantic._internal._generate_schema")
NAMES = ["d0", "d1", "d2"]
MESSAGES = [{"role": "user", "content": "hi"}]
CODER = mr.Agent("coder", {"chat": 0.5})


def setup(up: FakeUpstreams, **health: float) -> tuple[mr.Router, ModelRouterStrategy, object]:
    model_list = [
        {
            "model_name": "fake",
            "litellm_params": {"model": "openai/fake", "api_base": up.base_url(n), "api_key": "x"},
            "model_info": {"id": n},
        }
        for n in NAMES
    ]
    # d2 is the best match: modelrouter sends calls there first while it is available.
    models = [mr.Model(n, {"chat": 0.95 if n == "d2" else 0.9}, max_concurrent=8) for n in NAMES]
    router = mr.Router(models, health=health or None)
    strategy = ModelRouterStrategy(router, model_list, agents={"coder": CODER}, agent=CODER)
    lite = litellm.Router(model_list=model_list, num_retries=2)
    strategy.install(lite)
    return router, strategy, lite


@pytest.fixture
def upstreams():
    with FakeUpstreams({n: {"latency_ms": 2, "jitter_ms": 1} for n in NAMES}) as up:
        yield up
    litellm.callbacks = [c for c in litellm.callbacks if not isinstance(c, ModelRouterStrategy)]


async def settle(strategy: ModelRouterStrategy) -> None:
    for _ in range(200):  # LiteLLM runs its callbacks as tasks after the call returns
        if strategy.open_requests() == 0:
            return
        await asyncio.sleep(0.01)


def test_litellm_calls_go_where_modelrouter_says_and_end_with_their_outcome(upstreams):
    router, strategy, lite = setup(upstreams, consecutive_errors=3)

    async def main() -> list[str]:
        first = await lite.acompletion(model="fake", messages=MESSAGES, metadata={"agent": "coder"})
        upstreams.set("d2", mode="error")
        out = [first.choices[0].message.content]
        for _ in range(40):
            answer = await lite.acompletion(model="fake", messages=MESSAGES)
            out.append(answer.choices[0].message.content)
        await settle(strategy)
        return out

    answers = asyncio.run(main())
    assert answers[0] == "answer from d2"
    assert all(a in ("answer from d0", "answer from d1") for a in answers[1:])
    assert router.health_of("d2")["state"] == "ejected"
    assert len(upstreams.arrivals("d2")) == 1 + 3  # the ok call, then the error limit
    assert strategy.open_requests() == 0
    assert all(router.load(n).active_requests == 0 for n in NAMES)
    assert router.performance.stats("d2").failures == 3


def test_a_litellm_stream_teaches_the_model_its_time_to_first_token(upstreams):
    """LiteLLM's own first-chunk time (``completion_start_time``) reaches the router: one
    stream teaches d2 its TTFT, which latency alone (one output length) could not."""
    router, strategy, lite = setup(upstreams)
    upstreams.set("d2", latency_ms=60, jitter_ms=0, chunk_delay_ms=40)

    async def main() -> list[int]:
        counts = []
        for _ in range(3):
            stream = await lite.acompletion(
                model="fake", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            counts.append(len([chunk async for chunk in stream]))
            await settle(strategy)
        return counts

    assert min(asyncio.run(main())) >= 5
    assert strategy.open_requests() == 0
    ttft, per_token = router.token_timing("d2")
    # Every first chunk waited for the upstream's 60 ms. The time per token mixes LiteLLM's
    # clock (first chunk) with ours (the end), so only its being learned is asserted.
    assert ttft >= 60 and per_token > 0, (ttft, per_token)


def test_unknown_agents_and_deployments_are_refused(upstreams):
    router, strategy, lite = setup(upstreams)
    with pytest.raises(mr.InvalidInputError):
        strategy.get_available_deployment("fake", request_kwargs={"metadata": {"agent": "x"}})
    with pytest.raises(mr.UnknownModelError):
        strategy.get_available_deployment("no-such-group")
    picked = strategy.get_available_deployment("d1", specific_deployment=True)
    assert picked["model_info"]["id"] == "d1" and router.load("d1").active_requests == 1
    with pytest.raises(mr.InvalidInputError):
        ModelRouterStrategy(router, [{"model_name": "x", "model_info": {}}])


def test_every_strategy_of_a_process_sees_its_calls_end(upstreams):
    """LiteLLM keeps one logger per class and sorts its callbacks at its first call: a second
    strategy, installed after calls were made, must still hear of its own calls (once)."""

    async def calls(lite, n: int) -> None:
        for _ in range(n):
            await lite.acompletion(model="fake", messages=MESSAGES)

    first_router, first, first_lite = setup(upstreams)
    asyncio.run(calls(first_lite, 3))
    second_router, second, second_lite = setup(upstreams)

    async def both() -> None:
        await calls(second_lite, 12)  # more than the 8 slots a leak would exhaust
        await settle(second)

    asyncio.run(both())
    assert first.open_requests() == 0 and second.open_requests() == 0
    assert second_router.performance.fleet_stats().count == 12
    assert first_router.performance.fleet_stats().count == 3


# The two orders in which a LiteLLM version can report a failed attempt and pick its retry,
# driven directly (no upstream): the retry must avoid the failed deployment either way, and
# the failure must be counted once. d2 is the best match, then d1, then d0.
def ranked() -> tuple[mr.Router, ModelRouterStrategy]:
    params = {"model": "openai/fake", "api_base": "http://127.0.0.1:9/v1", "api_key": "x"}
    model_list = [
        {"model_name": "fake", "litellm_params": params, "model_info": {"id": n}} for n in NAMES
    ]
    scores = {"d0": 0.9, "d1": 0.93, "d2": 0.95}
    models = [mr.Model(n, {"chat": scores[n]}, max_concurrent=8) for n in NAMES]
    router = mr.Router(models)
    strategy = ModelRouterStrategy(router, model_list, agent=CODER)
    strategy.install(litellm.Router(model_list=model_list))
    return router, strategy


def failure(trace: str, deployment: str) -> dict:
    """The kwargs LiteLLM hands its failure callbacks (its model_call_details)."""
    return {
        "litellm_trace_id": trace,
        "litellm_params": {"model_info": {"id": deployment}, "litellm_trace_id": trace},
        "exception": litellm.InternalServerError("upstream failed", "openai", "fake"),
    }


def crumb(trace: str, **attempt: object) -> dict:
    """A retry's breadcrumb for an attempt that raised a 500 (metadata["previous_models"])."""
    return {"exception_type": "InternalServerError", "litellm_trace_id": trace, **attempt}


def test_a_retry_picked_before_the_failure_callback_avoids_and_ends_the_attempt():
    """An attempt whose failure callback has not run when LiteLLM picks the retry (a logger
    run late): the retry's breadcrumb ends it (1.53-1.83 name the deployment only in the
    metadata they copy, and list other calls' attempts too); the late callback then finds
    nothing left to end."""
    router, strategy = ranked()
    t = f"t-{uuid.uuid4()}"
    first = strategy.get_available_deployment("fake", request_kwargs={"litellm_trace_id": t})
    assert first["model_info"]["id"] == "d2"
    previous = [
        crumb("other", metadata={"model_info": {"id": "d1"}}),  # another call's attempt
        crumb(t, metadata={"model_info": {"id": "d2"}}),
    ]
    retry = strategy.get_available_deployment(
        "fake", request_kwargs={"litellm_trace_id": t, "metadata": {"previous_models": previous}}
    )
    assert retry["model_info"]["id"] == "d1"  # not d2, and d1 is not another call's failure
    assert router.performance.stats("d2").failures == 1
    assert router.load("d2").active_requests == 0 and strategy.open_requests() == 1
    asyncio.run(_late(failure(t, "d2")))
    assert router.performance.stats("d2").failures == 1


async def _late(kwargs: dict) -> None:
    """LiteLLM's async failure callback, as its logging calls modelrouter's logger."""
    ours = {
        id(c): c
        for c in [*litellm.callbacks, *getattr(litellm, "_async_failure_callback", [])]
        if type(c).__module__ == "modelrouter.litellm"
    }
    assert len(ours) == 1
    for callback in ours.values():
        await callback.async_log_failure_event(kwargs, None, 0.0, 0.0)


@pytest.mark.parametrize(
    "attempt",
    [{"deployment_id": "d2"}, {"metadata": {"model_info": {"id": "d2"}}}, {}],
    ids=["deployment_id", "metadata-model_info", "no-deployment-named"],
)
def test_a_retry_picked_after_the_failure_callback_avoids_the_failed_deployment(attempt):
    """LiteLLM (1.53.1 to 1.110.2 at least) awaits its failure callbacks before it retries: the
    outcome is in the router when the retry picks, and the retry avoids that deployment
    whatever its breadcrumb names (1.110: deployment_id; 1.83: the metadata's model_info)."""
    router, strategy = ranked()
    t = f"t-{uuid.uuid4()}"
    strategy.get_available_deployment("fake", request_kwargs={"litellm_trace_id": t})
    asyncio.run(_late(failure(t, "d2")))
    assert router.performance.stats("d2").failures == 1 and strategy.open_requests() == 0
    metadata = {"previous_models": [crumb(t, **attempt)], "attempted_retries": 1}
    retry = strategy.get_available_deployment(
        "fake", request_kwargs={"litellm_trace_id": t, "metadata": metadata}
    )
    assert retry["model_info"]["id"] == "d1"
    assert router.performance.stats("d2").failures == 1  # counted once
    assert router.load("d2").active_requests == 0


def test_only_a_streams_own_first_chunk_time_is_taken():
    """LiteLLM sets ``completion_start_time`` to the end for a call that was not streamed:
    that is not a time to first token. Odd values are ignored, never raised."""
    import datetime as dt

    from modelrouter.litellm import _time_to_first_token_ms as ttft

    start = dt.datetime(2026, 1, 1, 12, 0, 0)
    later = start + dt.timedelta(milliseconds=250)
    assert ttft({"stream": True, "completion_start_time": later}, start) == 250.0
    assert ttft({"optional_params": {"stream": True}, "completion_start_time": later}, start) == 250
    assert ttft({"stream": False, "completion_start_time": later}, start) is None
    assert ttft({"completion_start_time": later}, start) is None
    assert ttft({"stream": True, "completion_start_time": start}, later) is None  # before start
    aware = later.replace(tzinfo=dt.timezone.utc)
    assert ttft({"stream": True, "completion_start_time": aware}, start) is None
    assert ttft({"stream": True, "completion_start_time": 1.5}, start) is None
    assert ttft(None, start) is None
