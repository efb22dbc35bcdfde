"""assign_capacitated against OR-Tools min-cost flow, scipy and brute force.

Oracle costs are integers so objectives compare exactly. OR-Tools gets both policies exactly:
MaxCardinality is SolveMaxFlowWithMinCost; MinCost (fewest cost, then most placed) is a plain
min-cost flow where every agent also has an "unassigned" arc, with placed costs scaled by
n + 1 and the unassigned arc costing 1, so the count only breaks ties of the cost.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ortools.graph.python import min_cost_flow
from scipy.optimize import linear_sum_assignment

import modelrouter as mr
from modelrouter.errors import InvalidInputError

INF = np.inf


def objective(cost: np.ndarray, model_of: np.ndarray) -> tuple[int, float]:
    """(placed, total cost) after checking the answer is a feasible placement."""
    placed = model_of >= 0
    assert model_of.dtype == np.int64
    assert model_of.shape == (cost.shape[0],)
    assert np.all(model_of >= -1) and np.all(model_of < max(cost.shape[1], 1))
    rows = np.flatnonzero(placed)
    picked = cost[rows, model_of[rows]]
    assert np.all(np.isfinite(picked)), "a forbidden pair was used"
    return int(placed.sum()), float(picked.sum())


def check_capacity(model_of: np.ndarray, capacities) -> None:
    caps = np.asarray(capacities, dtype=np.int64)
    load = np.bincount(model_of[model_of >= 0], minlength=len(caps))
    assert np.all(load <= caps), (load, caps)


def ortools(cost: np.ndarray, caps, allow_unassigned: bool) -> tuple[int, int]:
    """(placed, total cost) of the optimum for integer `cost` (+inf = no arc)."""
    n, m = cost.shape
    src, sink = n + m, n + m + 1
    flow = min_cost_flow.SimpleMinCostFlow()
    scale = n + 1 if allow_unassigned else 1
    for i in range(n):
        flow.add_arc_with_capacity_and_unit_cost(src, i, 1, 0)
        for j in range(m):
            if np.isfinite(cost[i, j]):
                flow.add_arc_with_capacity_and_unit_cost(i, n + j, 1, int(cost[i, j]) * scale)
    for j in range(m):
        flow.add_arc_with_capacity_and_unit_cost(n + j, sink, int(caps[j]), 0)
    parked = []
    if allow_unassigned:
        parked = [flow.add_arc_with_capacity_and_unit_cost(i, sink, 1, 1) for i in range(n)]
    flow.set_node_supply(src, n)
    flow.set_node_supply(sink, -n)
    if allow_unassigned:
        assert flow.solve() == flow.OPTIMAL
        unplaced = sum(flow.flow(a) for a in parked)
        return n - unplaced, (flow.optimal_cost() - unplaced) // scale
    assert flow.solve_max_flow_with_min_cost() == flow.OPTIMAL
    return flow.maximum_flow(), flow.optimal_cost()


def brute_force(cost: np.ndarray, caps, allow_unassigned: bool) -> tuple[int, float]:
    n, m = cost.shape
    best = None
    for choice in itertools.product(range(-1, m), repeat=n):
        pick = np.array(choice, dtype=np.int64)
        if np.any(np.bincount(pick[pick >= 0], minlength=m) > caps):
            continue
        rows = np.flatnonzero(pick >= 0)
        picked = cost[rows, pick[rows]]
        if not np.all(np.isfinite(picked)):
            continue
        key = (picked.sum(), -len(rows)) if allow_unassigned else (-len(rows), picked.sum())
        best = key if best is None or key < best else best
    assert best is not None
    if allow_unassigned:
        return -best[1], best[0]
    return -best[0], best[1]


@st.composite
def instances(draw, max_agents: int = 25, max_models: int = 6, max_cap: int = 6):
    n = draw(st.integers(0, max_agents))
    m = draw(st.integers(0, max_models))
    low = draw(st.sampled_from([-20, 0]))
    seed = draw(st.integers(0, 2**32 - 1))
    p_forbid = draw(st.sampled_from([0.0, 0.2, 0.6]))
    rng = np.random.default_rng(seed)
    cost = rng.integers(low, 20, size=(n, m)).astype(np.float64)
    cost[rng.random((n, m)) < p_forbid] = INF
    caps = rng.integers(0, max_cap + 1, size=m)
    return cost, caps


@settings(max_examples=300, deadline=None)
@given(instances())
def test_max_cardinality_matches_ortools(inst):
    cost, caps = inst
    got = mr.assign_capacitated(cost, caps)
    check_capacity(got, caps)
    assert objective(cost, got) == ortools(cost, caps, allow_unassigned=False)


@settings(max_examples=300, deadline=None)
@given(instances())
def test_min_cost_matches_ortools(inst):
    cost, caps = inst
    got = mr.assign_capacitated(cost, caps, allow_unassigned=True)
    check_capacity(got, caps)
    assert objective(cost, got) == ortools(cost, caps, allow_unassigned=True)


@settings(max_examples=200, deadline=None)
@given(instances(max_agents=5, max_models=3, max_cap=3))
def test_tiny_instances_match_brute_force(inst):
    cost, caps = inst
    for allow in (False, True):
        got = mr.assign_capacitated(cost, caps, allow_unassigned=allow)
        check_capacity(got, caps)
        assert objective(cost, got) == brute_force(cost, caps, allow)


@settings(max_examples=100, deadline=None)
@given(instances())
def test_maximize_is_minimize_of_negated(inst):
    cost, caps = inst
    score = np.where(np.isinf(cost), -INF, -cost)
    for allow in (False, True):
        got = mr.assign_capacitated(score, caps, maximize=True, allow_unassigned=allow)
        assert objective(cost, got) == ortools(cost, caps, allow_unassigned=allow)


@pytest.mark.parametrize("shape", [(1, 1), (7, 7), (30, 30), (40, 60)])
@pytest.mark.parametrize("maximize", [False, True])
def test_unit_capacities_match_scipy(shape, maximize):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    cost = rng.normal(size=shape)
    rows, cols = linear_sum_assignment(cost, maximize=maximize)
    got = mr.assign_capacitated(cost, np.ones(shape[1], dtype=int), maximize=maximize)
    check_capacity(got, np.ones(shape[1]))
    placed, total = objective(cost, got)
    assert placed == len(rows)
    assert total == pytest.approx(cost[rows, cols].sum(), abs=1e-9)


def test_medium_float_instance_matches_ortools():
    rng = np.random.default_rng(3)
    a, m = rng.random((600, 8)), rng.random((25, 8))
    cost = np.rint(-(a @ m.T) * 1000 + rng.integers(0, 50, size=(600, 25)))
    cost[rng.random(cost.shape) < 0.1] = INF
    caps = rng.integers(5, 30, size=25)
    for allow in (False, True):
        got = mr.assign_capacitated(cost, caps, allow_unassigned=allow)
        check_capacity(got, caps)
        assert objective(cost, got) == ortools(cost, caps, allow_unassigned=allow)


def test_many_models_matches_ortools():
    # More models than the pair cache covers (the solver then scans members directly), with
    # few slots so that agents compete for them.
    rng = np.random.default_rng(9)
    cost = rng.integers(-50, 50, size=(60, 1100)).astype(np.float64)
    cost[rng.random(cost.shape) < 0.3] = INF
    caps = (rng.random(1100) < 0.03) * rng.integers(1, 3, size=1100)
    for allow in (False, True):
        got = mr.assign_capacitated(cost, caps, allow_unassigned=allow)
        check_capacity(got, caps)
        assert objective(cost, got) == ortools(cost, caps, allow_unassigned=allow)


@settings(max_examples=60, deadline=None)
@given(instances(max_agents=160, max_models=5, max_cap=60))
def test_many_agents_per_model_match_ortools(inst):
    # Dozens of agents per model with correlated preferences: agents are moved over and over,
    # so the cached cheapest moves per pair of models run out and are refilled from the
    # model's members (the column-major refill path).
    cost, caps = inst
    n, m = cost.shape
    if n and m:
        cost = cost + np.arange(m) * 3.0  # every agent prefers the low models
    for allow in (False, True):
        got = mr.assign_capacitated(cost, caps, allow_unassigned=allow)
        check_capacity(got, caps)
        assert objective(cost, got) == ortools(cost, caps, allow_unassigned=allow)


@settings(max_examples=25, deadline=None)
@given(
    n_models=st.integers(128, 180),
    per_model=st.floats(1.0, 3.0),
    slack=st.floats(1.0, 1.6),
    spread=st.sampled_from([3, 30, 3000]),
    seed=st.integers(0, 2**32 - 1),
)
def test_shared_preferences_over_many_models_match_ortools(
    n_models, per_model, slack, spread, seed
):
    # Many models that every agent ranks alike (dot-product scores): most agents overflow
    # their favourite, which is where the solver starts from auction prices and repairs them
    # into the exact optimum. Integer costs with ties, so objectives compare exactly.
    rng = np.random.default_rng(seed)
    n = int(n_models * per_model)
    needs, skills = rng.random((n, 4)), rng.random((n_models, 4))
    cost = np.rint(-(needs @ skills.T) * spread + rng.integers(0, 3, size=(n, n_models)))
    caps = np.full(n_models, int(np.ceil(n * slack / n_models)))
    got = mr.assign_capacitated(cost, caps)
    check_capacity(got, caps)
    assert objective(cost, got) == ortools(cost, caps, allow_unassigned=False)


@settings(max_examples=40, deadline=None)
@given(
    n_models=st.integers(1, 6),
    per_model=st.integers(64, 120),
    slack=st.floats(0.7, 1.4),
    p_forbid=st.sampled_from([0.0, 0.1, 0.5]),
    low=st.sampled_from([-30, 0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_many_agents_per_model_priced_from_a_sample_match_ortools(
    n_models, per_model, slack, p_forbid, low, seed
):
    # Dozens of agents per model: the solver prices a sample of the agents first and repairs
    # the whole from those prices; both policies, forbidden pairs, too little or spare room.
    rng = np.random.default_rng(seed)
    n = n_models * per_model
    cost = rng.integers(low, 30, size=(n, n_models)).astype(np.float64)
    cost += np.arange(n_models) * 20.0  # shared preferences: low models are wanted most
    cost[rng.random(cost.shape) < p_forbid] = INF
    caps = rng.integers(0, int(2 * slack * per_model) + 1, size=n_models)
    for allow in (False, True):
        got = mr.assign_capacitated(cost, caps, allow_unassigned=allow)
        check_capacity(got, caps)
        assert objective(cost, got) == ortools(cost, caps, allow_unassigned=allow)


def test_seed_case_five_agents_three_models():
    # Everyone prefers model 1 (capacity 3): the three with the most to lose elsewhere keep it.
    cost = np.array(
        [
            [0.5, 0.1, 0.9],
            [0.6, 0.25, 0.7],
            [0.4, 0.3, 0.5],
            [INF, 0.1, 0.8],
            [0.9, 0.15, INF],
        ]
    )
    caps = [5, 3, 8]
    got = mr.assign_capacitated(cost, caps)
    assert got.tolist() == [1, 0, 0, 1, 1]
    assert objective(cost, got)[1] == pytest.approx(1.35)
    assert mr.assign_capacitated(-cost, caps, maximize=True).tolist() == [1, 0, 0, 1, 1]


def test_policies_differ():
    # Positive costs: MaxCardinality still places everyone; MinCost places only the zero-cost
    # agent (a tie between placing and not placing goes to placing).
    cost = np.array([[5.0], [0.0], [-1.0]])
    assert mr.assign_capacitated(cost, [3]).tolist() == [0, 0, 0]
    assert mr.assign_capacitated(cost, [3], allow_unassigned=True).tolist() == [-1, 0, 0]
    # Cardinality beats cost: agent 0 must leave its cheap model so agent 1 fits.
    cost = np.array([[0.0, 100.0], [1.0, INF]])
    assert mr.assign_capacitated(cost, [1, 1]).tolist() == [1, 0]
    assert mr.assign_capacitated(cost, [1, 1], allow_unassigned=True).tolist() == [0, -1]


def test_forbidden_everywhere_and_zero_capacity():
    cost = np.array([[INF, 1.0], [INF, INF], [2.0, 3.0]])
    got = mr.assign_capacitated(cost, [5, 0])
    assert got.tolist() == [-1, -1, 0]


@pytest.mark.parametrize(
    "shape, caps, expected",
    [((0, 3), [1, 1, 1], []), ((4, 0), [], [-1, -1, -1, -1]), ((0, 0), [], [])],
)
def test_empty_shapes(shape, caps, expected):
    got = mr.assign_capacitated(np.zeros(shape), caps)
    assert got.dtype == np.int64
    assert got.tolist() == expected


@pytest.mark.parametrize(
    "dtype", [np.float64, np.float32, np.int64, np.int32, np.uint8, np.int8, np.float16]
)
def test_cost_dtypes(dtype):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 50, size=(12, 4))
    caps = [3, 3, 3, 3]
    want = objective(base.astype(float), mr.assign_capacitated(base.astype(float), caps))
    got = mr.assign_capacitated(base.astype(dtype), caps)
    assert objective(base.astype(float), got) == want


def test_bool_and_list_inputs():
    got = mr.assign_capacitated([[True, False], [False, True]], (1, 1))
    assert got.tolist() == [1, 0]
    assert mr.assign_capacitated([[1, 2], [2, 1]], [1, 1]).tolist() == [0, 1]


def test_non_contiguous_and_fortran_input():
    rng = np.random.default_rng(1)
    big = rng.integers(-9, 9, size=(40, 12)).astype(np.float64)
    view = big[::2, ::3]
    caps = np.array([4, 5, 6, 7])
    want = mr.assign_capacitated(np.ascontiguousarray(view), caps)
    assert mr.assign_capacitated(view, caps).tolist() == want.tolist()
    assert mr.assign_capacitated(np.asfortranarray(view), caps).tolist() == want.tolist()
    assert mr.assign_capacitated(view, caps[::-1][::-1]).tolist() == want.tolist()


@pytest.mark.parametrize(
    "caps",
    [[2, 1], (2, 1), np.array([2, 1], np.uint64), np.array([2, 1], np.int8), [2.0, 1.0]],
)
def test_capacity_types(caps):
    cost = np.array([[0.0, 1.0], [0.0, 5.0], [0.0, 7.0]])
    assert mr.assign_capacitated(cost, caps).tolist() == [1, 0, 0]


@pytest.mark.parametrize(
    "cost, caps, kwargs, field",
    [
        ([[np.nan, 1.0]], [1, 1], {}, "cost"),
        ([[-INF, 1.0]], [1, 1], {}, "cost"),
        ([[INF, 1.0]], [1, 1], {"maximize": True}, "cost"),
        ([1.0, 2.0], [1, 1], {}, "cost"),
        (np.zeros((2, 2, 2)), [1, 1], {}, "cost"),
        (np.array([["a", "b"]]), [1, 1], {}, "cost"),
        (np.ones((1, 2), dtype=complex), [1, 1], {}, "cost"),
        ([[1.0], [2.0, 3.0]], [1, 1], {}, "cost"),
        ([[1.0, 2.0]], [1, -1], {}, "capacities"),
        ([[1.0, 2.0]], [1, 1.5], {}, "capacities"),
        ([[1.0, 2.0]], [1, np.nan], {}, "capacities"),
        ([[1.0, 2.0]], [1], {}, "capacities"),
        ([[1.0, 2.0]], [1, 1, 1], {}, "capacities"),
        ([[1.0, 2.0]], [[1, 1]], {}, "capacities"),
        ([[1.0, 2.0]], ["1", "1"], {}, "capacities"),
        ([[1.0, 2.0]], [True, True], {}, "capacities"),
    ],
)
def test_invalid_input(cost, caps, kwargs, field):
    with pytest.raises(InvalidInputError) as info:
        mr.assign_capacitated(cost, caps, **kwargs)
    assert info.value.field == field
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)


def test_maximize_accepts_minus_inf_as_forbidden():
    score = np.array([[-INF, 5.0], [3.0, 4.0]])
    assert mr.assign_capacitated(score, [1, 1], maximize=True).tolist() == [1, 0]


def test_threads_give_same_answer():
    rng = np.random.default_rng(5)
    cost = rng.random((800, 20))
    caps = np.full(20, 40)
    want = mr.assign_capacitated(cost, caps)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: mr.assign_capacitated(cost, caps), range(8)))
    for got in results:
        assert got.tolist() == want.tolist()
