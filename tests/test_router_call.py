"""Router.call / acall: run fn(model_id) under admission; retryable failures go to another
model, context-length errors to a larger context window, fallbacks in order, within the retry
budget; the final error carries every attempt."""

from __future__ import annotations

import asyncio

import pytest

import modelrouter as mr
from modelrouter.store import DecisionStore, open_store

AGENT = mr.Agent("x", {"code": 0.5})


class Status(Exception):
    def __init__(self, status_code: int, message: str = "") -> None:
        super().__init__(message or f"HTTP {status_code}")
        self.status_code = status_code


def fleet() -> list[mr.Model]:
    return [
        mr.Model("big", {"code": 0.9}, context_window=4096, max_concurrent=4),
        mr.Model("bigger", {"code": 0.8}, context_window=32768, max_concurrent=4),
        mr.Model("small", {"code": 0.7}, context_window=2048, max_concurrent=4),
    ]


def test_a_failing_model_is_retried_elsewhere_and_the_value_returned():
    r = mr.Router(fleet())
    seen: list[str] = []

    def fn(model_id: str) -> str:
        seen.append(model_id)
        if model_id == "big":
            raise Status(503)
        return f"answer from {model_id}"

    assert r.call(AGENT, fn) == "answer from bigger"
    assert seen == ["big", "bigger"]
    assert r.health_of("big")["consecutive_errors"] == 1
    assert all(r.load(m.id).active_requests == 0 for m in fleet())


def test_context_length_errors_go_to_a_larger_context_window():
    r = mr.Router(fleet())
    seen: list[str] = []

    def fn(model_id: str) -> str:
        seen.append(model_id)
        if model_id != "bigger":
            raise Status(400, "This model's maximum context length is 4096 tokens")
        return "fits"

    assert r.call(AGENT, fn) == "fits"
    assert seen == ["big", "bigger"]
    assert r.health_of("big")["consecutive_errors"] == 0  # the caller's prompt, not the model


def test_client_errors_are_not_retried_and_every_attempt_is_reported():
    r = mr.Router(fleet())

    def fn(model_id: str) -> str:
        raise Status(401, "bad key")

    with pytest.raises(mr.CallFailedError) as e:
        r.call(AGENT, fn)
    assert [(m, k) for m, k, _ in e.value.attempts] == [("big", "client_error")]
    assert isinstance(e.value.__cause__, Status)


def test_retries_are_bounded_by_the_count_and_fallbacks_are_followed_in_order():
    r = mr.Router(fleet())
    seen: list[str] = []

    def always_down(model_id: str) -> str:
        seen.append(model_id)
        raise Status(500)

    with pytest.raises(mr.CallFailedError, match="no retries left") as e:
        r.call(AGENT, always_down, retries=2, fallbacks=["small", "bigger"])
    assert seen == ["big", "small", "bigger"]
    assert [k for _, k, _ in e.value.attempts] == ["server_error"] * 3
    with pytest.raises(mr.CallFailedError):
        r.call(AGENT, always_down, retries=0)
    assert seen[-1] == "big" and len(seen) == 4


def test_the_retry_budget_stops_retries_when_spent():
    r = mr.Router(fleet())
    calls = 0

    def down(model_id: str) -> str:
        nonlocal calls
        calls += 1
        raise Status(502)

    # 20 % of the calls plus a floor of 10/s over 10 s: 100 failing calls get at most 100 + 20
    # retries in all, not the 200 that retries=2 would otherwise make.
    for _ in range(100):
        with pytest.raises(mr.CallFailedError):
            r.call(AGENT, down, retries=2)
    assert calls <= 100 + 100 * 0.2 + 10 * 10
    stats = r.retry_stats()
    assert stats["granted"] == calls - 100 and stats["refused"] > 0


def test_acall_retries_coroutines():
    r = mr.Router(fleet())

    async def fn(model_id: str) -> str:
        await asyncio.sleep(0)
        if model_id == "big":
            raise Status(429)
        return model_id

    assert asyncio.run(r.acall(AGENT, fn)) == "bigger"
    assert r.health_of("big")["state"] == "cooling_down"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"retries": -1}, "retries"),
        ({"retries": 2**70}, "retries"),
        ({"fallbacks": "big"}, "fallbacks"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"store": "sqlite://"}, "store"),
    ],
)
def test_bad_call_settings_name_the_field(kwargs, field):
    r = mr.Router(fleet())
    with pytest.raises(mr.InvalidInputError) as e:
        r.call(AGENT, lambda m: m, **kwargs)
    assert e.value.field == field


def _attempts(store: DecisionStore, call_id: str) -> list[tuple[int, str, str, bool]]:
    store.flush()
    rows = store.feedback(call_id=call_id)  # type: ignore[attr-defined]
    return sorted((r["attempt"], r["model_id"], r["outcome"], r["success"]) for r in rows)


def test_a_store_records_every_attempt_of_a_call_under_one_call_id(tmp_path):
    r = mr.Router(fleet())
    with open_store(f"sqlite:///{tmp_path / 'calls.db'}") as store:

        def down(model_id: str) -> str:
            raise Status(503 if model_id == "big" else 500)

        with pytest.raises(mr.CallFailedError) as failed:
            r.call(AGENT, down, retries=2, store=store)
        call_id = failed.value.call_id
        assert call_id is not None
        tried = [(i, m, k, False) for i, (m, k, _) in enumerate(failed.value.attempts)]
        assert _attempts(store, call_id) == tried
        assert [k for _, _, k, _ in tried] == ["server_error"] * 3

        def flaky(model_id: str) -> str:
            if model_id == "big":
                raise Status(429)
            return model_id

        before = store.counts()["feedback"]
        assert r.call(AGENT, flaky, store=store) == "bigger"
        store.flush()
        rows = store.feedback(limit=2)  # type: ignore[attr-defined]
        assert store.counts()["feedback"] == before + 2
        (ids,) = {row["call_id"] for row in rows}
        assert ids != call_id
        assert _attempts(store, ids) == [
            (0, "big", "rate_limited", False),
            (1, "bigger", "ok", True),
        ]
        assert all(row["latency_ms"] >= 0 and row["agent_id"] == "x" for row in rows)


def test_acall_records_attempts_and_a_cancelled_one(tmp_path):
    r = mr.Router(fleet())

    async def hang(model_id: str) -> str:
        if model_id == "big":
            raise Status(500)
        await asyncio.sleep(60)
        return model_id

    async def main(store: DecisionStore) -> None:
        task = asyncio.create_task(r.acall(AGENT, hang, store=store))
        for _ in range(100):
            await asyncio.sleep(0)
            if r.load("bigger").active_requests:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with open_store(f"sqlite:///{tmp_path / 'acalls.db'}") as store:
        asyncio.run(main(store))
        store.flush()
        (row_ids,) = {row["call_id"] for row in store.feedback()}  # type: ignore[attr-defined]
        assert _attempts(store, row_ids) == [
            (0, "big", "server_error", False),
            (1, "bigger", "cancelled", False),
        ]
    assert all(r.load(m.id).active_requests == 0 for m in fleet())
