"""Times modelrouter.linear_sum_assignment against scipy and lap.lapjv on the same matrices.

Dense uniform float64 (fixed seed) and the classic JV worst case c[i][j] = i·j, the same
repetitions for every solver on a matrix, objectives compared and reported. Prints the
"## Linear assignment" markdown section that `make bench` puts into benches/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
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

CASES = [(1000, 1000), (2000, 2000), (4000, 4000), (1000, 5000), (5000, 1000)]
WORST_CASE_N = 1000  # Machol–Wien c[i][j] = i·j, square
SECTION = "## Linear assignment"

Solver = Callable[[np.ndarray], float]


def modelrouter_objective(cost: np.ndarray) -> float:
    return float(cost[mr.linear_sum_assignment(cost)].sum())


def scipy_objective(cost: np.ndarray) -> float:
    return float(cost[scipy_lsa(cost)].sum())


def lap_objective(cost: np.ndarray) -> float:
    # extend_cost pads a rectangular matrix to square; x[i] is -1 for an unmatched row.
    _, x, _ = lap.lapjv(cost, extend_cost=cost.shape[0] != cost.shape[1])
    rows = np.flatnonzero(x >= 0)
    return float(cost[rows, x[rows]].sum())


def best_ms(solve: Solver, cost: np.ndarray, runs: int) -> tuple[float, float]:
    """Fastest of `runs` wall-clock timings in ms, and the objective found."""
    best, value = float("inf"), float("nan")
    for _ in range(runs):
        start = time.perf_counter()
        value = solve(cost)
        best = min(best, (time.perf_counter() - start) * 1e3)
    return best, value


def runs_for(n: int, m: int) -> int:
    return 3 if n * m >= 4000 * 4000 or n > m else 5


def run() -> str:
    solvers: dict[str, Solver] = {"modelrouter": modelrouter_objective, "scipy": scipy_objective}
    if lap is not None:
        solvers["lap.lapjv"] = lap_objective
    names = list(solvers)
    head = ["matrix", "runs", *(f"{name} ms" for name in names)]
    head += [f"{name} / modelrouter" for name in names[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cases = [
        (f"{n}×{m}", runs_for(n, m), np.random.default_rng(n * 7919 + m).random((n, m)))
        for n, m in CASES
    ]
    w = np.arange(WORST_CASE_N, dtype=np.float64)
    cases.append(
        (
            f"{WORST_CASE_N}×{WORST_CASE_N} i·j (Machol–Wien)",
            runs_for(WORST_CASE_N, WORST_CASE_N),
            np.outer(w, w),
        )
    )
    worst_gap = 0.0
    for label, runs, cost in cases:
        times, values = {}, {}
        for name, solve in solvers.items():
            times[name], values[name] = best_ms(solve, cost, runs)
        ref = values["scipy"]
        worst_gap = max(worst_gap, *(abs(v - ref) / max(1.0, abs(ref)) for v in values.values()))
        cells = [label, str(runs), *(f"{times[name]:.1f}" for name in names)]
        cells += [f"{times[name] / times['modelrouter']:.2f}×" for name in names[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    peers = f"scipy {scipy.__version__}" + (f", lap {lap.__version__}" if lap else "")
    note = (
        "Uniform [0, 1) float64 matrices (fixed seed per size) and the classic JV worst case "
        "c[i][j] = i·j (Machol–Wien); every solver gets the same matrix and the same number of "
        "runs (column `runs`), no warm-up; best run, wall clock from Python including input "
        f"checks, {os.cpu_count()} cores. {peers}, numpy {np.__version__}, Python "
        f"{platform.python_version()}. Largest relative difference of an objective from "
        f"scipy's in this run: {worst_gap:.1e}. lap.lapjv pads rectangular matrices to square "
        "(`extend_cost=True`). Ratios above 1: modelrouter is faster."
    )
    return "\n".join([*lines, "", textwrap.fill(note, 100)])


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(f"{SECTION}\n\n{run()}")
