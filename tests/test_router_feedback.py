"""The router feeds its PerformanceTracker and, with an AdaptiveScorer, learns from it."""

from __future__ import annotations

import pytest

import modelrouter as mr


def models():
    return [
        mr.Model("fast", {"code": 0.8}, max_concurrent=50, target_utilization=1.0),
        mr.Model("slow", {"code": 0.8}, max_concurrent=50, target_utilization=1.0),
    ]


AGENT = mr.Agent("coder", {"code": 0.5})


def test_track_request_and_record_feed_the_performance_tracker():
    clock = mr.ManualClock()
    router = mr.Router(models(), load=mr.LoadTracker(clock=clock))
    with router.track("fast"):
        clock.advance(0.1)
    with pytest.raises(RuntimeError):
        with router.track("fast", agent_id="coder"):
            clock.advance(0.3)
            raise RuntimeError("model error")
    with router.track("fast") as t:
        t.mark_failed()
    router.record("fast", latency_ms=50.0, success=True, agent_id="coder")
    stats = router.performance.stats("fast")
    assert stats.count == 4 and stats.failures == 2
    assert stats.max_ms == pytest.approx(300.0, rel=0.01)
    agent = router.performance.agent_stats("coder")
    assert agent.count == 2 and agent.successes == 1
    with router.request(AGENT) as r:
        clock.advance(0.2)
    assert router.performance.agent_stats("coder").count == 3
    assert router.performance.stats(r.model_id).count >= 1


def test_adaptive_router_moves_traffic_off_a_degraded_model_and_back():
    clock = mr.ManualClock()
    perf = mr.PerformanceTracker(clock=clock)
    scorer = mr.AdaptiveScorer((0.4, 0.6, 0.0), performance=perf, half_life_s=10.0, clock=clock)
    router = mr.Router(
        models(),
        policy="weighted",
        load_weight=0.0,
        adaptive=scorer,
        load=mr.LoadTracker(clock=clock),
    )
    assert router.performance is not None
    # Equal capability; "slow" fails one call in ten throughout, "fast" none: no tie to break.
    for i in range(20):
        router.record("fast", latency_ms=100.0)
        router.record("slow", latency_ms=100.0, success=i % 10 != 0)
    assert scorer.performance("fast") > scorer.performance("slow")
    assert {router.route(AGENT) for _ in range(5)} == {"fast"}
    for _ in range(5):
        router.record("fast", latency_ms=5000.0, success=False)
    assert router.route(AGENT) == "slow"
    # The fast model heals: good samples and time let it win again.
    for i in range(200):
        clock.advance(1.0)
        router.record("fast", latency_ms=100.0)
        router.record("slow", latency_ms=100.0, success=i % 10 != 0)
    assert scorer.performance("fast") > scorer.performance("slow")
    assert router.route(AGENT) == "fast"


def test_adaptive_scores_shape_batch_assignment():
    clock = mr.ManualClock()
    perf = mr.PerformanceTracker(clock=clock)
    scorer = mr.AdaptiveScorer((0.5, 0.5, 0.0), performance=perf, clock=clock)
    router = mr.Router(
        models(), strategy="greedy", adaptive=scorer, load=mr.LoadTracker(clock=clock)
    )
    for _ in range(10):
        router.record("fast", latency_ms=100.0)
        router.record("slow", latency_ms=100.0, success=False)
    result = router.assign([AGENT])
    assert [a.model_id for a in result.assignments] == ["fast"]
    cap = 1 - mr.cost_matrix([AGENT], models())[0, 0]
    assert result.assignments[0].score == pytest.approx(scorer.score("fast", cap))


def test_adaptive_scorer_must_learn_from_the_routers_tracker():
    scorer = mr.AdaptiveScorer(performance=mr.PerformanceTracker())
    with pytest.raises(ValueError) as info:
        mr.Router(models(), adaptive=scorer, performance=mr.PerformanceTracker())
    assert info.value.field == "adaptive"
