"""PerformanceTracker: percentiles against exact numpy percentiles, merge, sliding window,
fleet-wide stats, cumulative latency histograms, memory bound, thread safety, exports and bad
input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelrouter as mr

# HdrHistogram reports the top of the bucket holding the sample of rank ceil(q·n), which is
# numpy's "inverted_cdf" sample; buckets are at most 1/128 of their value wide.
REL = 0.01
# Latencies are recorded in whole microseconds.
ABS_MS = 0.0005


def assert_close_above(got: float, exact: float) -> None:
    assert exact - ABS_MS <= got <= exact * (1 + REL) + ABS_MS, (got, exact)


@given(
    seed=st.integers(0, 2**32 - 1),
    mu=st.floats(0.0, 7.0),
    sigma=st.floats(0.05, 1.2),
    n=st.integers(1, 3000),
)
def test_percentiles_match_numpy_on_lognormal_data(seed, mu, sigma, n):
    x = np.random.default_rng(seed).lognormal(mu, sigma, n)
    t = mr.PerformanceTracker()
    for v in x:
        t.record("m", float(v))
    s = t.stats("m")
    for q, got in ((50, s.p50_ms), (95, s.p95_ms), (99, s.p99_ms)):
        assert_close_above(got, float(np.percentile(x, q, method="inverted_cdf")))
    assert s.count == n
    assert s.min_ms == pytest.approx(x.min()) and s.max_ms == pytest.approx(x.max())
    assert s.mean_ms == pytest.approx(x.mean())


def test_large_lognormal_sample_within_one_percent():
    x = np.random.default_rng(7).lognormal(np.log(300.0), 0.8, 200_000)
    t = mr.PerformanceTracker(recent_samples=0)
    for v in x.tolist():
        t.record("m", v)
    s = t.stats("m")
    for q, got in ((50, s.p50_ms), (95, s.p95_ms), (99, s.p99_ms)):
        exact = float(np.percentile(x, q))
        assert abs(got - exact) / exact <= REL


def test_sub_millisecond_latencies_keep_microsecond_resolution():
    x = np.random.default_rng(3).lognormal(np.log(0.2), 0.5, 2000)
    t = mr.PerformanceTracker()
    for v in x:
        t.record("m", float(v))
    s = t.stats("m")
    assert_close_above(s.p50_ms, float(np.percentile(x, 50, method="inverted_cdf")))
    t.record("z", 0.0)
    assert t.stats("z").p99_ms == 0.0


records = st.lists(
    st.tuples(st.floats(0.0, 1e5), st.booleans(), st.booleans(), st.sampled_from(["x", "y"])),
    max_size=200,
)


@given(records)
def test_merge_equals_recording_into_one(rows):
    a, b, one = mr.PerformanceTracker(), mr.PerformanceTracker(), mr.PerformanceTracker()
    for latency, ok, to_a, agent in rows:
        (a if to_a else b).record("m", latency, ok, agent_id=agent)
        one.record("m", latency, ok, agent_id=agent)
    a.merge(b)
    assert a.model_ids() == one.model_ids()
    assert a.agent_ids() == one.agent_ids()
    for key in one.model_ids():
        got, want = a.stats(key).to_dict(), one.stats(key).to_dict()
        for field in ("count", "successes", "failures", "p50_ms", "p95_ms", "p99_ms"):
            assert got[field] == want[field], field
        for field in ("min_ms", "max_ms", "mean_ms", "success_rate"):
            assert got[field] == pytest.approx(want[field]), field
    for agent in one.agent_ids():
        assert a.agent_stats(agent).count == one.agent_stats(agent).count


def test_merge_refuses_itself_and_mismatched_windows():
    t = mr.PerformanceTracker()
    with pytest.raises(ValueError):
        t.merge(t)
    with pytest.raises(ValueError, match="window_s"):
        t.merge(mr.PerformanceTracker(window_s=60.0))


def test_sliding_window_forgets_when_the_clock_moves():
    clock = mr.ManualClock()
    t = mr.PerformanceTracker(window_s=60.0, clock=clock)
    for _ in range(10):
        t.record("m", 2000.0, False)
    clock.advance(30.0)
    t.record("m", 50.0, True)
    assert t.stats("m").count == 11
    clock.advance(45.0)  # the first batch is 75 s old
    s = t.stats("m")
    assert (s.count, s.failures, s.p99_ms, s.max_ms) == (1, 0, 50.0, 50.0)
    clock.advance(60.0)
    s = t.stats("m")
    assert s.count == 0 and s.p50_ms is None and s.success_rate is None
    assert s.ewma_ms is not None  # the EWMA is not windowed
    assert t.window_s == 60.0


@given(
    rows=st.lists(
        st.tuples(st.sampled_from("abc"), st.floats(0.0, 5e4), st.booleans()), max_size=200
    )
)
def test_fleet_stats_pool_every_model(rows):
    t, one = mr.PerformanceTracker(), mr.PerformanceTracker()
    for model, latency, ok in rows:
        t.record(model, latency, ok)
        one.record("all", latency, ok)
    fleet = t.fleet_stats()
    assert fleet.count == len(rows)
    if not rows:
        assert fleet.p50_ms is None and fleet.success_rate is None and fleet.last_seen is None
        return
    single = one.stats("all")
    for key in ("successes", "failures", "p50_ms", "p95_ms", "p99_ms", "min_ms", "max_ms"):
        assert getattr(fleet, key) == getattr(single, key), key
    assert fleet.mean_ms == pytest.approx(single.mean_ms)


def test_fleet_stats_read_the_window():
    clock = mr.ManualClock()
    t = mr.PerformanceTracker(window_s=60.0, clock=clock)
    t.record("a", 900.0, False)
    clock.advance(100.0)
    t.record("b", 10.0, True)
    t.record("c", 30.0, True)
    fleet = t.fleet_stats()
    assert (fleet.count, fleet.failures, fleet.max_ms, fleet.last_seen) == (2, 0, 30.0, 100.0)


@given(values=st.lists(st.floats(0.0, 4e6), max_size=300))
def test_latency_histogram_counts_under_each_bound(values):
    bounds = [0.5, 5, 10, 25, 50, 100, 250, 1000, 60000, 3_600_000]
    t = mr.PerformanceTracker()
    t.record("m", 1.0)  # the model exists even when `values` is empty
    for v in values:
        t.record("m", v, v < 1000)
    h = t.latency_histogram("m", bounds)
    assert h.bounds_ms == bounds and len(h.counts) == len(bounds)
    assert h.counts == sorted(h.counts) and h.count == len(values) + 1
    assert (h.successes, h.failures) == (
        1 + sum(v < 1000 for v in values),
        sum(v >= 1000 for v in values),
    )
    assert h.sum_ms == pytest.approx(1.0 + sum(values))
    x = np.array([1.0, *values])
    for b, got in zip(bounds, h.counts):
        # Exact but for samples less than a histogram bucket (1/128, or 1 µs) above the bound.
        assert int((x <= b).sum()) <= got <= int((x <= b * (1 + 1 / 128) + ABS_MS).sum()), b
    assert h.to_dict()["counts"] == h.counts


def test_latency_histogram_is_cumulative_under_a_window():
    clock = mr.ManualClock()
    t = mr.PerformanceTracker(window_s=60.0, clock=clock)
    t.record("m", 20.0)
    clock.advance(600.0)
    t.record("m", 200.0, False)
    assert t.stats("m").count == 1
    h = t.latency_histogram("m", [100.0])
    assert (h.counts, h.count, h.failures, h.sum_ms) == ([1], 2, 1, 220.0)


@pytest.mark.parametrize(
    "bounds", [[5.0, 5.0], [10.0, 5.0], [float("nan")], [-1.0], [4e6], [float("inf")]]
)
def test_latency_histogram_refuses_bad_bounds(bounds):
    t = mr.PerformanceTracker()
    t.record("m", 1.0)
    with pytest.raises(mr.InvalidInputError, match="bounds_ms") as info:
        t.latency_histogram("m", bounds)
    assert info.value.field == "bounds_ms"
    with pytest.raises(mr.UnknownModelError):
        t.latency_histogram("nope", [1.0])
    with pytest.raises(TypeError, match="bounds_ms"):
        t.latency_histogram("m", "5,10")  # type: ignore[arg-type]


def test_memory_within_bounds_for_1000_models_and_100_agents():
    t = mr.PerformanceTracker()
    empty = t.memory_bytes()
    t.record("m0", 1.0)
    assert t.memory_bytes() - empty <= 32 * 1024
    for i in range(1000):
        t.record(f"model-{i}", 10.0 + i, agent_id=f"agent-{i % 100}")
    assert len(t.model_ids()) == 1001 and len(t.agent_ids()) == 100
    assert t.memory_bytes() <= 64 * 1024 * 1024


def test_concurrent_records_count_exactly():
    t = mr.PerformanceTracker()
    n, threads = 5000, 8

    def work(k: int) -> None:
        for i in range(n):
            t.record("shared", float(i % 97), i % 5 != 0, agent_id=f"a{k}")

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    s = t.stats("shared")
    assert s.count == n * threads
    assert s.failures == threads * len(range(0, n, 5))
    assert all(t.agent_stats(f"a{k}").count == n for k in range(threads))


def test_requests_ending_on_many_threads_are_all_recorded():
    """Ending a request records with the GIL released (the core Flight feeds the tracker), so
    these threads race in Rust, unlike record() calls, which hold the GIL for their ~200 ns."""
    router = mr.Router([mr.Model("m", {}, max_concurrent=1000)])
    n, threads = 2000, 8

    def work(k: int) -> None:
        for i in range(n):
            router.track("m", agent_id=f"a{k}").__enter__().release(success=i % 5 != 0)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    s = router.performance.stats("m")
    assert s.count == n * threads
    assert s.failures == threads * len(range(0, n, 5))
    assert all(router.performance.agent_stats(f"a{k}").count == n for k in range(threads))
    assert router.load("m").active_requests == 0


@pytest.mark.parametrize("bad", [float("nan"), -1.0, float("inf"), -float("inf")])
def test_bad_latency_raises_and_records_nothing(bad):
    t = mr.PerformanceTracker()
    with pytest.raises(ValueError, match="latency_ms") as info:
        t.record("m", bad)
    assert isinstance(info.value, mr.InvalidInputError) and info.value.field == "latency_ms"
    assert t.model_ids() == []


def test_bad_settings_and_unknown_ids():
    with pytest.raises(ValueError, match="window_s"):
        mr.PerformanceTracker(window_s=0.0)
    with pytest.raises(ValueError, match="recent_samples"):
        mr.PerformanceTracker(recent_samples=-1)
    t = mr.PerformanceTracker()
    with pytest.raises(KeyError):
        t.stats("nope")
    with pytest.raises(KeyError):
        t.agent_stats("nope")
    with pytest.raises(mr.UnknownModelError):
        t.recent_latencies("nope")


def test_exports_for_notebooks():
    t = mr.PerformanceTracker(recent_samples=4)
    values = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    for i, v in enumerate(values):
        t.record("<b>m</b>", v, i != 2, agent_id="coder")
    recent = t.recent_latencies("<b>m</b>")
    assert recent.dtype == np.float64
    np.testing.assert_array_equal(recent, values[-4:])
    times, lat, ok = t.recent("<b>m</b>")
    assert times.shape == lat.shape == ok.shape == (4,)
    assert ok.dtype == np.bool_ and ok.tolist() == [False, True, True, True]
    d = t.to_dict()
    assert set(d) == {"models", "agents"}
    assert d["models"]["<b>m</b>"]["failures"] == 1
    assert d["agents"]["coder"]["count"] == 6
    html = t._repr_html_()
    assert "&lt;b&gt;m&lt;/b&gt;" in html and "<b>m" not in html
    s = t.stats("<b>m</b>")
    assert s.to_dict()["success_rate"] == pytest.approx(5 / 6)
    assert "<table>" in s._repr_html_()
    with pytest.raises(AttributeError):
        s.count = 3  # type: ignore[misc]


def test_distinct_agent_ids_cannot_grow_memory_without_bound():
    """The reported repro: 100k distinct agent ids once took 2.9 GB and slowed record() 3x."""
    r = mr.Router([mr.Model("m", {})])
    perf = r.performance
    assert perf.max_agents == 10_000
    for i in range(100_000):
        r.record("m", 1.0, agent_id=f"a{i}")
    assert len(perf.agent_ids()) <= perf.max_agents
    assert perf.evicted_agents == 100_000 - len(perf.agent_ids())
    assert perf.memory_bytes() < 64 * 1024 * 1024
    assert perf.stats("m").count == 100_000  # the model saw everything
    assert perf.agent_stats("a99999").count == 1  # the newest are kept


def test_max_agents_and_recent_samples_are_bounded_inputs():
    for kwargs, field in [
        ({"recent_samples": 2**31}, "recent_samples"),
        ({"max_agents": 0}, "max_agents"),
        ({"max_agents": -1}, "max_agents"),
    ]:
        with pytest.raises(mr.InvalidInputError) as e:
            mr.PerformanceTracker(**kwargs)
        assert e.value.field == field
