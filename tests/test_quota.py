"""mr.Quota: one caller's RPM/TPM/tokens-in-flight quota (an API key's), exact over any 60-s
window (checked against a brute-force oracle of every window), refusing at once with the wait."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modelrouter as mr


def test_refusals_say_when_and_reconciled_usage_frees_the_window():
    clock = mr.ManualClock(0.0)
    q = mr.Quota(rpm=2, tpm=100, clock=clock)
    with q.admit(30) as a:
        a.set_usage(5, 5)
        assert q.load() == {"requests_in_window": 1, "tokens_in_window": 10, "tokens_in_flight": 10}
    assert q.load()["tokens_in_flight"] == 0
    clock.set(10.0)
    q.admit(90).release()
    with pytest.raises(mr.NoCapacityError) as refused:
        q.admit(1)  # a third request in the minute
    assert refused.value.retry_after_s == pytest.approx(50.0)  # the t=0 request leaves at 60
    with pytest.raises(mr.InvalidInputError) as never:
        q.admit(101)
    assert never.value.field == "tokens" and "tpm" in str(never.value)
    assert repr(q) == "Quota(rpm=2, tpm=100, max_tokens_in_flight=None)"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rpm": 0}, "rpm"),
        ({"tpm": 1.5}, "tpm"),
        ({"max_tokens_in_flight": -1}, "max_tokens_in_flight"),
    ],
)
def test_bad_limits_name_the_field(kwargs, field):
    with pytest.raises(mr.InvalidInputError) as e:
        mr.Quota(**kwargs)
    assert e.value.field == field


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 5.0), st.integers(0, 40)),
        min_size=1,
        max_size=80,
    )
)
def test_no_60s_window_ever_holds_more_than_the_limits(steps):
    clock = mr.ManualClock(0.0)
    q = mr.Quota(rpm=7, tpm=100, clock=clock)
    t, admitted = 0.0, []
    for gap, tokens in steps:
        t += gap * 10
        clock.set(t)
        try:
            q.admit(tokens).release()
        except mr.NoCapacityError:
            continue
        admitted.append((t, tokens))
    for start, _ in admitted:  # every window ending at an admission holds at most the limits
        inside = [n for at, n in admitted if start - 60 < at <= start]
        assert len(inside) <= 7 and sum(inside) <= 100


def test_32_threads_racing_for_a_tpm_never_overshoot():
    q = mr.Quota(tpm=10_000)
    spent: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(100):
            try:
                q.admit(37)
            except mr.NoCapacityError:
                continue
            with lock:
                spent.append(37)

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(spent) == 10_000 // 37 * 37
