"""linear_sum_assignment on the classic instance families, against scipy and lap.lapjv.

Every solver gets the same matrix (fixed seed per family) and the same number of runs; best
run, wall clock from Python. Objectives are compared with scipy's. Prints the
"## Linear assignment by family" markdown section.

Usage: python benches/bench_lap_families.py [--n 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import textwrap
import time
from collections.abc import Callable

import numpy as np
import scipy
from scipy.optimize import linear_sum_assignment as scipy_lsa

import modelrouter as mr

try:
    import lap
except ImportError:  # optional peer
    lap = None

SECTION = "## Linear assignment by family"


def families(n: int) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(n)
    points_a, points_b = rng.random((n, 2)), rng.random((n, 2))
    geometric = np.sqrt(((points_a[:, None, :] - points_b[None, :, :]) ** 2).sum(-1))
    low_rank = rng.random((n, 3)) @ rng.random((3, n)) + 0.01 * rng.random((n, n))
    w = np.arange(n, dtype=np.float64)
    return [
        (f"uniform [0, 1) {n}×{n}", rng.random((n, n))),
        (f"integer 0..100 {2 * n}×{2 * n}", rng.integers(0, 101, (2 * n, 2 * n)).astype(float)),
        (f"integer 0..10⁶ {n}×{n}", rng.integers(0, 10**6 + 1, (n, n)).astype(float)),
        (f"geometric (Euclidean) {n}×{n}", geometric),
        (f"Machol–Wien i·j {n}×{n}", np.outer(w, w)),
        (f"low rank 3 + noise {n}×{n}", low_rank),
        (f"wide uniform {n}×{5 * n}", rng.random((n, 5 * n))),
        (f"tall uniform {5 * n}×{n}", rng.random((5 * n, n))),
    ]


def objective_mr(cost: np.ndarray) -> float:
    return float(cost[mr.linear_sum_assignment(cost)].sum())


def objective_scipy(cost: np.ndarray) -> float:
    return float(cost[scipy_lsa(cost)].sum())


def objective_lap(cost: np.ndarray) -> float:
    _, x, _ = lap.lapjv(cost, extend_cost=cost.shape[0] != cost.shape[1])
    rows = np.flatnonzero(x >= 0)
    return float(cost[rows, x[rows]].sum())


def best_ms(solve: Callable[[np.ndarray], float], cost: np.ndarray, runs: int):
    best, value = float("inf"), float("nan")
    for _ in range(runs):
        start = time.perf_counter()
        value = solve(cost)
        best = min(best, (time.perf_counter() - start) * 1e3)
    return best, value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    solvers = {"modelrouter": objective_mr, "scipy": objective_scipy}
    if lap is not None:
        solvers["lap.lapjv"] = objective_lap
    names = list(solvers)
    head = ["family", *(f"{x} ms" for x in names), *(f"{x} / modelrouter" for x in names[1:])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    worst_gap = 0.0
    for label, cost in families(args.n):
        times, values = {}, {}
        for name, solve in solvers.items():
            times[name], values[name] = best_ms(solve, cost, args.runs)
        ref = values["scipy"]
        worst_gap = max(worst_gap, *(abs(v - ref) / max(1.0, abs(ref)) for v in values.values()))
        cells = [label, *(f"{times[x]:.1f}" for x in names)]
        cells += [f"{times[x] / times['modelrouter']:.2f}×" for x in names[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    peers = f"scipy {scipy.__version__}" + (f", lap {lap.__version__}" if lap else "")
    note = (
        f"Same matrix and {args.runs} runs per solver, best run, no warm-up, wall clock from "
        f"Python. {peers}. Largest relative difference of an objective from scipy's: "
        f"{worst_gap:.1e}. lap.lapjv pads rectangular matrices (`extend_cost=True`). Ratios "
        "above 1: modelrouter is faster."
    )
    print(f"{SECTION}\n\n" + "\n".join(lines) + "\n\n" + textwrap.fill(note, 100))


if __name__ == "__main__":
    main()
