"""AdaptiveScorer: degrading models lose traffic within a bounded number of decisions and win
it back after healing; cold models are neither perfect nor zero; vectorised scores."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelrouter as mr

Serve = Callable[[str], "tuple[float, bool]"]


def make(half_life_s: float = 10.0, **kw):
    clock = mr.ManualClock()
    tracker = mr.PerformanceTracker(clock=clock)
    scorer = mr.AdaptiveScorer(performance=tracker, half_life_s=half_life_s, **kw)
    return scorer, tracker, clock


def route(scorer, tracker, clock, models, caps, n: int, serve: Serve) -> list[str]:
    """n decisions, one simulated second apart; each pick is served and recorded."""
    picks = []
    for _ in range(n):
        scores = scorer.scores(models, np.asarray(caps))
        pick = models[int(np.argmax(scores))]
        latency, ok = serve(pick)
        tracker.record(pick, latency, ok)
        picks.append(pick)
        clock.advance(1.0)
    return picks


def healthy(_: str) -> tuple[float, bool]:
    return 100.0, True


def test_cold_model_is_neither_perfect_nor_zero():
    scorer, tracker, _ = make()
    assert 0.0 < scorer.performance("new") < 1.0
    for m in ("a", "b", "c"):
        for _ in range(30):
            tracker.record(m, 100.0, True)
    cold = scorer.performance("new")
    assert 0.0 < cold < 1.0
    info = scorer.explain("new", 0.5)
    assert info["cold"] is True and info["performance"] == pytest.approx(cold)
    # Typical of the fleet: between the healthy models and zero, not an outlier.
    assert cold == pytest.approx(scorer.performance("a"), abs=0.05)


def test_latency_spike_loses_traffic_at_once_and_healing_wins_it_back():
    scorer, tracker, clock = make(half_life_s=10.0)
    models, caps = ["a", "b", "c"], [0.9, 0.8, 0.8]
    assert set(route(scorer, tracker, clock, models, caps, 30, healthy)) == {"a"}
    for m in ("b", "c"):  # the others are known too
        tracker.record(m, 100.0, True)

    def sick(m: str) -> tuple[float, bool]:
        return (3000.0, True) if m == "a" else (100.0, True)

    picks = route(scorer, tracker, clock, models, caps, 30, sick)
    assert picks.count("a") <= 1, picks
    assert scorer.performance("a") < 0.5 * scorer.performance("b")
    clock.advance(60.0)  # six half-lives: the spike has faded
    picks = route(scorer, tracker, clock, models, caps, 30, healthy)
    assert picks[0] == "a" and picks.count("a") >= 29


def test_failing_model_is_dropped_within_a_few_decisions_and_recovers():
    scorer, tracker, clock = make(half_life_s=10.0)
    models, caps = ["a", "b"], [0.85, 0.8]

    def failing(m: str) -> tuple[float, bool]:
        return 100.0, m != "a"

    picks = route(scorer, tracker, clock, models, caps, 40, failing)
    first_b = picks.index("b")
    assert first_b <= 3 and picks[first_b:].count("a") <= 2, picks
    clock.advance(100.0)
    assert route(scorer, tracker, clock, models, caps, 10, healthy).count("a") >= 9


PRIOR_REQUESTS = 2.0  # the documented pseudo-requests of fleet behaviour (src/adaptive)


@given(
    st.lists(
        st.tuples(st.floats(0.0, 1.0), st.integers(0, 30), st.integers(0, 30)),
        min_size=1,
        max_size=8,
    ),
    st.tuples(st.floats(0.1, 5.0), st.floats(0.1, 5.0), st.floats(0.0, 5.0)),
)
def test_scores_follow_the_documented_formula(rows, weights):
    """Oracle written from the formula in the module docs, not from the scorer: with every
    sample at one instant and one latency, the latency factor is 1 and nothing decays, so
    performance = (ok + A·p) / (ok + bad + A) with the fleet rate p = (Σok + 1) / (Σn + 2), and
    score = (w_c·capability + w_p·performance + w_l·1) / Σw without a LoadTracker."""
    clock = mr.ManualClock()
    tracker = mr.PerformanceTracker(clock=clock)
    scorer = mr.AdaptiveScorer(weights=weights, performance=tracker, clock=clock)
    models = [f"m{i}" for i in range(len(rows))]
    for m, (_, ok, bad) in zip(models, rows):
        for k in range(ok + bad):
            tracker.record(m, 100.0, k < ok)
    total_ok = sum(ok for _, ok, _ in rows)
    total = sum(ok + bad for _, ok, bad in rows)
    fleet = (total_ok + 1) / (total + 2)
    w_c, w_p, w_l = (w / sum(weights) for w in weights)
    caps = [c for c, _, _ in rows]
    got = scorer.scores(models, caps)
    for m, (cap, ok, bad), s in zip(models, rows, got):
        perf = (ok + PRIOR_REQUESTS * fleet) / (ok + bad + PRIOR_REQUESTS)
        assert scorer.performance(m) == pytest.approx(perf, rel=1e-9)
        assert s == pytest.approx(w_c * cap + w_p * perf + w_l, rel=1e-9)
        assert 0.0 <= s <= 1.0


def test_weights_are_normalised_and_load_counts():
    clock = mr.ManualClock()
    load = mr.LoadTracker(clock=clock)
    load.set_capacity("busy", max_concurrent=10)
    load.set_capacity("idle", max_concurrent=10)
    load.update_load("busy", 8)
    scorer = mr.AdaptiveScorer(weights=(0, 0, 5), load=load, clock=clock)
    assert scorer.weights == (0.0, 0.0, 1.0)
    assert scorer.score("busy", 1.0) == pytest.approx(0.2)
    assert scorer.score("idle", 0.0) == pytest.approx(1.0)
    assert scorer.score("unknown", 0.0) == pytest.approx(0.6)  # mean of the known
    assert scorer.load is not None


def test_owns_a_tracker_when_none_is_given():
    clock = mr.ManualClock()
    scorer = mr.AdaptiveScorer(clock=clock, half_life_s=5.0)
    scorer.record("m", 80.0, False)
    assert scorer.tracker.stats("m").failures == 1
    assert scorer.performance("m") < scorer.performance("other")


def test_infeasible_stays_infeasible():
    scorer, _, _ = make()
    out = scorer.scores(["a", "b"], [-np.inf, 0.5])
    assert out[0] == -np.inf and np.isfinite(out[1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weights": (1.0, 2.0)},
        {"weights": (1.0, -1.0, 0.0)},
        {"weights": (0.0, 0.0, 0.0)},
        {"weights": (float("nan"), 1.0, 1.0)},
        {"half_life_s": 0.0},
        {"performance": mr.PerformanceTracker(recent_samples=0)},
    ],
)
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        mr.AdaptiveScorer(**kwargs)


def test_bad_capabilities():
    scorer, _, _ = make()
    with pytest.raises(ValueError, match="capability"):
        scorer.score("a", float("nan"))
    with pytest.raises(ValueError, match="capabilities"):
        scorer.scores(["a", "b"], [0.5])
    with pytest.raises(ValueError, match=r"capabilities\[1\]"):
        scorer.scores(["a", "b"], [0.5, float("nan")])
