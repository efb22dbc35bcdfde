"""Agent types: ``assign_capacitated(cost, capacities, counts=...)`` and the automatic collapse of
repeated rows, against OR-Tools (a transportation network with supplies), OR-Tools on the
expanded per-agent instance, and brute force. Integer costs keep every objective exact."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ortools.graph.python import min_cost_flow
from test_flow import INF, brute_force, check_capacity, objective, ortools

import modelrouter as mr
from modelrouter.errors import InvalidInputError


def ortools_types(rows: np.ndarray, counts, caps, allow_unassigned: bool) -> tuple[int, int]:
    """(placed, cost) of the optimum on the type network: supply counts[t] at type t, type →
    model arcs of unlimited capacity, model → sink capacities (and type → sink parking arcs
    of cost 1 when placing is optional, placed costs scaled so cost decides first)."""
    t_count, m = rows.shape
    n = int(np.sum(counts))
    src, sink = t_count + m, t_count + m + 1
    flow = min_cost_flow.SimpleMinCostFlow()
    scale = n + 1 if allow_unassigned else 1
    for t in range(t_count):
        flow.add_arc_with_capacity_and_unit_cost(src, t, int(counts[t]), 0)
        for j in range(m):
            if np.isfinite(rows[t, j]):
                flow.add_arc_with_capacity_and_unit_cost(t, t_count + j, n, int(rows[t, j]) * scale)
    for j in range(m):
        flow.add_arc_with_capacity_and_unit_cost(t_count + j, sink, int(caps[j]), 0)
    parked = []
    if allow_unassigned:
        parked = [flow.add_arc_with_capacity_and_unit_cost(t, sink, n, 1) for t in range(t_count)]
    flow.set_node_supply(src, n)
    flow.set_node_supply(sink, -n)
    if allow_unassigned:
        assert flow.solve() == flow.OPTIMAL
        unplaced = sum(flow.flow(a) for a in parked)
        return n - unplaced, (flow.optimal_cost() - unplaced) // scale
    assert flow.solve_max_flow_with_min_cost() == flow.OPTIMAL
    return flow.maximum_flow(), flow.optimal_cost()


@st.composite
def typed(draw, max_types: int = 6, max_models: int = 6, max_count: int = 40, max_cap: int = 60):
    t_count = draw(st.integers(0, max_types))
    m = draw(st.integers(0, max_models))
    seed = draw(st.integers(0, 2**32 - 1))
    low = draw(st.sampled_from([-20, 0]))
    p_forbid = draw(st.sampled_from([0.0, 0.2, 0.6]))
    rng = np.random.default_rng(seed)
    rows = rng.integers(low, 20, size=(t_count, m)).astype(np.float64)
    rows[rng.random((t_count, m)) < p_forbid] = INF
    counts = rng.integers(0, max_count + 1, size=t_count)
    caps = rng.integers(0, max_cap + 1, size=m)
    return rows, counts, caps


def expanded(rows: np.ndarray, counts) -> np.ndarray:
    return np.repeat(rows, np.asarray(counts, dtype=np.int64), axis=0)


@settings(max_examples=300, deadline=None)
@given(typed())
def test_counts_match_ortools_on_the_type_network(inst):
    rows, counts, caps = inst
    full = expanded(rows, counts)
    for allow in (False, True):
        got = mr.assign_capacitated(rows, caps, counts=counts, allow_unassigned=allow)
        check_capacity(got, caps)
        assert objective(full, got) == ortools_types(rows, counts, caps, allow)


@settings(max_examples=100, deadline=None)
@given(typed(max_count=6, max_cap=10))
def test_counts_match_ortools_on_the_expanded_instance(inst):
    rows, counts, caps = inst
    full = expanded(rows, counts)
    for allow in (False, True):
        got = mr.assign_capacitated(rows, caps, counts=counts, allow_unassigned=allow)
        assert objective(full, got) == ortools(full, caps, allow)


@settings(max_examples=150, deadline=None)
@given(typed(max_types=3, max_models=3, max_count=2, max_cap=3))
def test_counts_match_brute_force(inst):
    rows, counts, caps = inst
    full = expanded(rows, counts)
    for allow in (False, True):
        got = mr.assign_capacitated(rows, caps, counts=counts, allow_unassigned=allow)
        assert objective(full, got) == brute_force(full, caps, allow)


@settings(max_examples=150, deadline=None)
@given(typed(max_count=12, max_cap=20), st.integers(0, 2**32 - 1))
def test_repeated_rows_in_any_order_are_solved_exactly(inst, seed):
    # The automatic collapse of identical rows (shuffled, so types interleave).
    rows, counts, caps = inst
    full = expanded(rows, counts)
    full = full[np.random.default_rng(seed).permutation(len(full))]
    for allow in (False, True):
        got = mr.assign_capacitated(full, caps, allow_unassigned=allow)
        check_capacity(got, caps)
        assert objective(full, got) == ortools(full, caps, allow)


def test_expansion_is_type_by_type_models_ascending_then_unplaced():
    rows = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    got = mr.assign_capacitated(rows, [2, 1, 2], counts=[4, 2])
    # Whatever the optimum, each type's agents list their models ascending, unplaced last.
    assert got.shape == (6,)
    check_capacity(got, [2, 1, 2])
    assert objective(expanded(rows, [4, 2]), got) == ortools_types(rows, [4, 2], [2, 1, 2], False)
    for run in (got[:4], got[4:]):
        key = np.where(run < 0, 10**9, run)
        assert np.all(np.diff(key) >= 0), run
    again = mr.assign_capacitated(rows, [2, 1, 2], counts=[4, 2])
    assert again.tolist() == got.tolist()


def test_repeated_profiles_expand_in_agent_order():
    # Agents 0, 2, ..., 18 share a row, 1, 3, ..., 19 another: few kinds for many agents, so
    # they are solved as two kinds; kind a's agents take its models ascending, in agent order.
    row_a, row_b = [0.0, 1.0], [5.0, 0.0]
    cost = np.array([row_a, row_b] * 10)
    got = mr.assign_capacitated(cost, [6, 20])
    assert got[0::2].tolist() == [0] * 6 + [1] * 4
    assert got[1::2].tolist() == [1] * 10


def test_large_counts():
    rows = np.array([[0.0, 1.0, INF], [2.0, 0.0, 5.0]])
    got = mr.assign_capacitated(rows, [300_000, 100_000, 50_000], counts=[400_000, 100_000])
    assert got.shape == (500_000,)
    check_capacity(got, [300_000, 100_000, 50_000])
    assert objective(expanded(rows, [400_000, 100_000]), got) == (
        450_000,
        ortools_types(rows, [400_000, 100_000], [300_000, 100_000, 50_000], False)[1],
    )


@pytest.mark.parametrize(
    "counts",
    [[1, -1], [1, 1.5], [1, np.nan], [1], [1, 1, 1], [[1, 1]], ["1", "1"], [True, True]],
)
def test_invalid_counts(counts):
    with pytest.raises(InvalidInputError) as info:
        mr.assign_capacitated([[1.0, 2.0], [3.0, 4.0]], [1, 1], counts=counts)
    assert info.value.field == "counts"
    assert "counts" in str(info.value)


def test_too_many_agents_in_all():
    with pytest.raises(InvalidInputError) as info:
        mr.assign_capacitated([[1.0]], [1], counts=np.array([2**40], dtype=np.int64))
    assert info.value.field == "counts"


def test_counts_none_is_per_agent_and_maximize_works():
    rows = np.array([[3.0, 1.0], [2.0, 2.0]])
    assert (
        mr.assign_capacitated(rows, [1, 1], counts=None).tolist()
        == mr.assign_capacitated(rows, [1, 1]).tolist()
    )
    got = mr.assign_capacitated(-rows, [2, 2], counts=[2, 1], maximize=True)
    assert objective(expanded(rows, [2, 1]), got) == ortools_types(rows, [2, 1], [2, 2], False)


def test_readme_assignment_example_runs_as_its_comments_say():
    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    block = next(b for b in blocks if "counts=[600_000, 300_000, 100_000]" in b)
    namespace: dict = {}
    exec(block, namespace)
    cost, placed = namespace["cost"], namespace["placed"]
    assert mr.assign_capacitated(cost, [1, 1]).tolist() == [-1, 1, 0]
    assert mr.assign_capacitated(cost - 2.5, [1, 1], allow_unassigned=True).tolist() == [-1, -1, 0]
    assert placed.shape == (1_000_000,)
    assert np.bincount(placed[placed >= 0]).tolist() == [400_000, 500_000]
    kinds = namespace["kinds"]
    assert objective(expanded(kinds, [600_000, 300_000, 100_000]), placed) == (900_000, 150_000.0)
