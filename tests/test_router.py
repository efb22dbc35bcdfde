"""Router strategies: capacity, brute-force optimality, and the greedy/balanced rules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelrouter as mr
from modelrouter.types import load_fleet

CAPS = st.sampled_from(["code", "reasoning", "chat"])


@st.composite
def fleets(draw, max_agents=5, max_models=3):
    models = [
        mr.Model(
            f"m{j}",
            draw(st.dictionaries(CAPS, st.floats(0.0, 1.0), max_size=3)),
            max_concurrent=draw(st.integers(1, 3)),
            context_window=draw(st.sampled_from([4096, 32768])),
        )
        for j in range(draw(st.integers(1, max_models)))
    ]
    agents = [
        mr.Agent(
            f"a{i}",
            draw(st.dictionaries(CAPS, st.floats(0.05, 1.0), max_size=2)),
            draw(st.dictionaries(CAPS, st.floats(0.0, 1.0), max_size=2)),
            min_context=draw(st.sampled_from([0, 8192])),
        )
        for i in range(draw(st.integers(0, max_agents)))
    ]
    return agents, models


def scores_of(agents, models):
    return 1.0 - mr.cost_matrix(agents, models)


def placement(result, agents, models):
    index = {m.id: j for j, m in enumerate(models)}
    by_agent = {a.agent_id: index[a.model_id] for a in result.assignments}
    return [by_agent.get(a.id, -1) for a in agents]


def brute_force_best(scores, capacity):
    n, m = scores.shape
    best = 0.0
    for choice in itertools.product(range(-1, m), repeat=n):
        counts = np.bincount([c for c in choice if c >= 0], minlength=m)
        if (counts > capacity).any():
            continue
        total = sum(scores[i, c] for i, c in enumerate(choice) if c >= 0)
        best = max(best, total)
    return best


def check_valid(result, agents, models, scores):
    chosen = placement(result, agents, models)
    capacity = np.array([m.max_concurrent for m in models])
    counts = np.bincount([c for c in chosen if c >= 0], minlength=len(models))
    assert (counts <= capacity).all()
    assert all(np.isfinite(scores[i, c]) for i, c in enumerate(chosen) if c >= 0)
    assert sorted(result.unassigned) == sorted(a.id for a, c in zip(agents, chosen) if c < 0)
    total = sum(scores[i, c] for i, c in enumerate(chosen) if c >= 0)
    assert result.total_score == pytest.approx(total, abs=1e-9)
    agent_ids, model_ids = [a.id for a in agents], [m.id for m in models]
    for a in result.assignments:
        i, j = agent_ids.index(a.agent_id), model_ids.index(a.model_id)
        assert a.score == pytest.approx(scores[i, j])
    return chosen


@given(fleets())
def test_optimal_is_the_brute_force_optimum_and_beats_the_heuristics(fleet):
    agents, models = fleet
    raw = scores_of(agents, models)
    scores = np.where(np.isfinite(raw), raw, -np.inf)
    capacity = np.array([m.max_concurrent for m in models])
    totals = {}
    for strategy in ("greedy", "balanced", "optimal"):
        result = mr.Router(models, strategy=strategy).assign(agents)
        assert result.strategy_used == strategy
        check_valid(result, agents, models, scores)
        totals[strategy] = result.total_score
    assert totals["optimal"] == pytest.approx(brute_force_best(scores, capacity), abs=1e-9)
    assert totals["optimal"] >= totals["greedy"] - 1e-9
    assert totals["optimal"] >= totals["balanced"] - 1e-9


def greedy_oracle(scores, capacity, key):
    used = np.zeros(len(capacity), dtype=int)
    out = []
    for row in scores:
        open_ = [j for j in range(len(row)) if np.isfinite(row[j]) and used[j] < capacity[j]]
        if not open_:
            out.append(-1)
            continue
        j = max(open_, key=lambda j: (key(used[j], capacity[j], row[j]), -j))
        used[j] += 1
        out.append(j)
    return out


@given(fleets(max_agents=8))
def test_greedy_and_balanced_follow_their_rules(fleet):
    agents, models = fleet
    raw = scores_of(agents, models)
    scores = np.where(np.isfinite(raw), raw, -np.inf)
    capacity = [m.max_concurrent for m in models]
    rules = {
        "greedy": lambda used, cap, s: (s,),
        "balanced": lambda used, cap, s: (-used / cap, s),
    }
    for strategy, key in rules.items():
        result = mr.Router(models, strategy=strategy).assign(agents)
        assert placement(result, agents, models) == greedy_oracle(scores, capacity, key)


def test_seed_case_respects_capacity_and_optimal_wins():
    agents, models = load_fleet("seed_assign")
    assert [m.max_concurrent for m in models] == [5, 3, 8] and len(agents) == 5
    scores = scores_of(agents, models)
    results = {
        s: mr.Router(models, strategy=s).assign(agents) for s in ("greedy", "balanced", "optimal")
    }
    for r in results.values():
        check_valid(r, agents, models, scores)
        assert not r.unassigned
    assert results["optimal"].total_score >= results["greedy"].total_score - 1e-12
    assert results["optimal"].total_score >= results["balanced"].total_score - 1e-12


def test_many_agents_overflow_capacity_and_are_reported():
    models = [mr.Model("small", {"code": 0.9}, max_concurrent=2)]
    agents = [mr.Agent(f"a{i}", {"code": 0.5}) for i in range(5)]
    for s in ("greedy", "balanced", "optimal"):
        r = mr.Router(models, strategy=s).assign(agents)
        assert len(r.assignments) == 2 and len(r.unassigned) == 3


def test_result_to_dict_is_the_rest_body():
    agents, models = load_fleet("seed_assign")
    body = mr.Router(models, strategy="optimal", load_balancing=True).assign(agents).to_dict()
    assert set(body) == {
        "assignments",
        "total_score",
        "strategy_used",
        "load_balancing_enabled",
        "models_filtered",
        "avg_utilization",
        "unassigned",
    }
    assert body["strategy_used"] == "optimal" and body["load_balancing_enabled"] is True
    assert set(body["assignments"][0]) == {"agent_id", "model_id", "score"}
    assert body["total_score"] == pytest.approx(sum(a["score"] for a in body["assignments"]))


def test_result_is_frozen():
    r = mr.Router([mr.Model("m")]).assign([mr.Agent("a")])
    r.assignments.clear()
    assert len(r.assignments) == 1 and len(r) == 1
    with pytest.raises(AttributeError):
        r.total_score = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(models=[]), "models"),
        (dict(models=[mr.Model("a"), mr.Model("a")]), "models"),
        (dict(models="abc"), "models"),
        (dict(models=[mr.Model("a")], strategy="fastest"), "strategy"),
        (dict(models=[mr.Model("a")], load_weight=1.5), "load_weight"),
        (dict(models=[mr.Model("a")], load_weight=float("nan")), "load_weight"),
    ],
)
def test_bad_router_arguments(kwargs, field):
    with pytest.raises(ValueError) as info:
        mr.Router(**kwargs)
    assert info.value.field == field


def test_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(ValueError, match="greedy, balanced, optimal"):
        mr.Router([mr.Model("a")], strategy="fastest")


def test_assign_rejects_non_agents():
    with pytest.raises(ValueError) as info:
        mr.Router([mr.Model("a")]).assign([mr.Model("b")])
    assert info.value.field == "agents"
