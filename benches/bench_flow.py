"""Capacitated assignment: modelrouter vs OR-Tools min-cost flow vs scipy on replicated columns.

Instance: agents × models with a capacity per model, cost = −(A·Mᵀ) + penalty, where A holds
random capability needs, M random capabilities and penalty is a small positive random term
(fixed seed). OR-Tools gets the costs scaled to int64; its graph build time is reported apart
from its solve time, and the ratio is taken against the total. scipy's linear_sum_assignment
needs every model replicated once per capacity slot, which is far too slow at full size, so by
default it runs on a scaled-down instance (same models, fewer agents and slots) and the full
size is extrapolated with the measured growth between two scaled sizes; `--scipy-full` measures
it instead (minutes). Objectives are checked against OR-Tools exactly on the integer costs.

Usage: python benches/bench_flow.py [--agents 10000 --models 200 --capacity 50] [--scipy-full]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from ortools.graph.python import min_cost_flow
from scipy.optimize import linear_sum_assignment

import modelrouter as mr

SCALE = 1_000_000  # cost units per OR-Tools integer unit


def instance(n: int, m: int, dims: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    needs = rng.random((n, dims))
    capabilities = rng.random((m, dims))
    penalty = 0.1 * rng.random((n, m))
    return -(needs @ capabilities.T) + penalty


def best_of(repeat: int, fn):
    best, out = math.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def run_ortools(icost: np.ndarray, capacity: int) -> tuple[float, float, int, int]:
    """(build s, solve s, placed, optimal integer cost) of SolveMaxFlowWithMinCost."""
    n, m = icost.shape
    t0 = time.perf_counter()
    src, sink = n + m, n + m + 1
    tails = np.concatenate([np.full(n, src), np.repeat(np.arange(n), m), n + np.arange(m)])
    heads = np.concatenate([np.arange(n), np.tile(n + np.arange(m), n), np.full(m, sink)])
    caps = np.concatenate([np.ones(n * (m + 1), np.int64), np.full(m, capacity, np.int64)])
    costs = np.concatenate([np.zeros(n, np.int64), icost.ravel(), np.zeros(m, np.int64)])
    flow = min_cost_flow.SimpleMinCostFlow()
    flow.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
    flow.set_node_supply(src, n)
    flow.set_node_supply(sink, -n)
    t1 = time.perf_counter()
    status = flow.solve_max_flow_with_min_cost()
    t2 = time.perf_counter()
    assert status == flow.OPTIMAL, status
    return t1 - t0, t2 - t1, flow.maximum_flow(), flow.optimal_cost()


def objective(cost: np.ndarray, model_of: np.ndarray) -> tuple[int, float]:
    rows = np.flatnonzero(model_of >= 0)
    return len(rows), float(cost[rows, model_of[rows]].sum())


def run_scipy(cost: np.ndarray, capacity: int) -> tuple[float, float]:
    """(seconds, objective) of linear_sum_assignment with each column replicated."""
    wide = np.repeat(cost, capacity, axis=1)
    t = time.perf_counter()
    rows, cols = linear_sum_assignment(wide)
    elapsed = time.perf_counter() - t
    return elapsed, float(wide[rows, cols].sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--agents", type=int, default=10_000)
    p.add_argument("--models", type=int, default=200)
    p.add_argument("--capacity", type=int, default=50)
    p.add_argument("--dims", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--scipy-full", action="store_true", help="run scipy at full size (slow)")
    args = p.parse_args()
    n, m, cap = args.agents, args.models, args.capacity
    cost = instance(n, m, args.dims, args.seed)
    caps = np.full(m, cap)

    t_mr, got = best_of(args.repeat, lambda: mr.assign_capacitated(cost, caps))
    placed, total = objective(cost, got)
    assert np.all(np.bincount(got[got >= 0], minlength=m) <= caps)

    icost = np.rint(cost * SCALE).astype(np.int64)
    t_build, t_solve, or_placed, or_cost = run_ortools(icost, cap)
    t_or = t_build + t_solve
    # Exact agreement on the integer instance, and float agreement within rounding.
    int_got = mr.assign_capacitated(icost, caps)
    assert objective(icost.astype(np.float64), int_got) == (or_placed, float(or_cost))
    assert placed == or_placed
    assert abs(total - or_cost / SCALE) <= n * 0.5 / SCALE, (total, or_cost / SCALE)

    rows = [
        ("modelrouter `assign_capacitated`", f"{t_mr:.3f}", "1.0×"),
        (
            f"OR-Tools SimpleMinCostFlow (build {t_build:.3f} s + solve {t_solve:.3f} s)",
            f"{t_or:.3f}",
            f"{t_or / t_mr:.1f}×",
        ),
    ]
    if args.scipy_full:
        t_sp, sp_obj = run_scipy(cost, cap)
        assert abs(sp_obj - total) <= 1e-6 * max(1.0, abs(total)), (sp_obj, total)
        rows.append(("scipy `linear_sum_assignment`, replicated columns", f"{t_sp:.1f}", ""))
        rows[-1] = (*rows[-1][:2], f"{t_sp / t_mr:.0f}×")
    else:
        # Same models, agents and slots scaled by 1/10 and 1/5; growth exponent from the pair.
        timings = []
        for div in (10, 5):
            sn, scap = n // div, max(1, cap // div)
            small = instance(sn, m, args.dims, args.seed + div)
            t_sp, sp_obj = run_scipy(small, scap)
            mine = objective(small, mr.assign_capacitated(small, np.full(m, scap)))[1]
            assert abs(sp_obj - mine) <= 1e-6 * max(1.0, abs(mine)), (sp_obj, mine)
            timings.append((sn, scap, t_sp))
        (n1, _, t1), (n2, c2, t2) = timings
        k = math.log(t2 / t1) / math.log(n2 / n1)
        t_full = t2 * (n / n2) ** k
        for sn, scap, t_sp in timings:
            rows.append((f"scipy replicated, {sn}×{m}×{scap} (measured)", f"{t_sp:.2f}", ""))
        rows.append(
            (
                f"scipy replicated, full size (extrapolated, time ∝ n^{k:.1f})",
                f"≈{t_full:.0f}",
                f"≈{t_full / t_mr:.0f}×",
            )
        )

    print("## Capacitated assignment\n")
    print(
        f"{n} agents × {m} models, capacity {cap} each, seed {args.seed}; best of "
        f"{args.repeat} for modelrouter; placed {placed}, total cost {total:.6f} "
        "(equal to OR-Tools)\n"
    )
    print("| solver | time (s) | vs modelrouter |")
    print("| --- | ---: | ---: |")
    for name, secs, ratio in rows:
        print(f"| {name} | {secs} | {ratio} |")


if __name__ == "__main__":
    main()
