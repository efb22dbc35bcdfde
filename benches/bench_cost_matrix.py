"""cost_matrix 10000 agents × 200 models × 32 capabilities (shortfall check, required coverage,
preferences, context, price) against the equivalent vectorised numpy code, each with one thread
and with every core.

Each thread setting runs in its own subprocess (this script with ``--child``), with the thread
counts fixed in its environment before numpy or modelrouter load: one thread is
``RAYON_NUM_THREADS=1`` (modelrouter's rayon pool) and ``OPENBLAS_NUM_THREADS=1``,
``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1`` (numpy's BLAS); all threads leaves them unset
(rayon and the BLAS use every core). Only numpy's two matrix products go through the BLAS; its
element-wise operations use one thread in both settings.

Usage: python benches/bench_cost_matrix.py [--agents 10000 --models 200 --caps 32 --repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time

import numpy as np

import modelrouter as mr
from modelrouter.testing.reference import numpy_cost_matrix

WEIGHTS = (0.6, 0.3, 0.1, 0.2)
THREAD_VARS = ("RAYON_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """One untimed warm-up, then ``repeat`` calls: (best ms, median ms, last result)."""
    out = fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times), statistics.median(times), out


def workload(n: int, m: int, k: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return dict(
        required=np.where(rng.random((n, k)) < 4 / k, rng.random((n, k)) * 0.5, 0.0),
        capabilities=rng.random((m, k)),
        preferred=np.where(rng.random((n, k)) < 0.25, rng.random((n, k)), 0.0),
        min_context=rng.integers(0, 64_000, n).astype(float),
        context_window=rng.choice([8192.0, 32768.0, 128000.0], m),
        cost_per_1k=rng.random(m) * 2,
    )


def blas_name() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - older numpy: name unknown
        return "unknown BLAS"


def child(n: int, m: int, k: int, repeat: int) -> dict[str, object]:
    """Both implementations in this process, alternating warm-up and timing the same way."""
    w = workload(n, m, k)
    ours_best, ours_median, ours = timed(
        lambda: mr.cost_matrix(
            w["required"],
            w["capabilities"],
            preferred=w["preferred"],
            min_context=w["min_context"],
            context_window=w["context_window"],
            cost_per_1k_tokens=w["cost_per_1k"],
            weights=mr.ScoreWeights(*WEIGHTS),
        ),
        repeat,
    )
    np_best, np_median, ref = timed(lambda: numpy_cost_matrix(**w, weights=WEIGHTS), repeat)
    ours, ref = np.asarray(ours), np.asarray(ref)
    same_inf = bool(np.array_equal(np.isinf(ours), np.isinf(ref)))
    finite = np.isfinite(ref)
    max_diff = float(np.max(np.abs(ours[finite] - ref[finite]), initial=0.0))
    return {
        "modelrouter": [ours_best, ours_median],
        "numpy": [np_best, np_median],
        "same_infeasible": same_inf,
        "max_abs_diff": max_diff,
        "blas": blas_name(),
        "env": {v: os.environ.get(v) for v in THREAD_VARS},
    }


def run_child(args: argparse.Namespace, one_thread: bool) -> dict[str, object]:
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARS}
    if one_thread:
        env.update(dict.fromkeys(THREAD_VARS, "1"))
    cmd = [sys.executable, __file__, "--child"]
    cmd += ["--agents", str(args.agents), "--models", str(args.models), "--caps", str(args.caps)]
    cmd += ["--repeat", str(args.repeat)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--agents", type=int, default=10_000)
    p.add_argument("--models", type=int, default=200)
    p.add_argument("--caps", type=int, default=32)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    n, m, k = args.agents, args.models, args.caps
    if args.child:
        print(json.dumps(child(n, m, k, args.repeat)))
        return
    cores = os.cpu_count() or 1
    runs = [("1", run_child(args, True)), (f"all ({cores})", run_child(args, False))]
    print(f"## Cost matrix ({n} agents x {m} models x {k} capabilities)\n")
    intro = (
        f"Same inputs (seed 0) and weights for both; in each thread setting one process times "
        f"both implementations with one untimed warm-up and {args.repeat} timed calls "
        "(`time.perf_counter`); best and median of those calls. 1 thread: `RAYON_NUM_THREADS=1` "
        "for modelrouter's parallel rows, `OPENBLAS_NUM_THREADS`, `OMP_NUM_THREADS` and "
        f"`MKL_NUM_THREADS` = 1 for numpy's BLAS ({runs[0][1]['blas']}); all: those variables "
        "unset, so rayon and the BLAS use every core. numpy's element-wise steps are "
        "single-threaded in both settings; only its two matrix products use the BLAS threads. "
        "The speed-up divides numpy's best by modelrouter's best in the same setting."
    )
    print(textwrap.fill(intro, 100, break_on_hyphens=False), end="\n\n")
    print("| threads | implementation | best ms | median ms | speed-up |")
    print("|---|---|---:|---:|---:|")
    for threads, r in runs:
        (np_best, np_median), (mr_best, mr_median) = r["numpy"], r["modelrouter"]
        name = "numpy (vectorised, same formula)"
        print(f"| {threads} | {name} | {np_best:.1f} | {np_median:.1f} | 1.0x |")
        print(
            f"| {threads} | modelrouter.cost_matrix (dense) | {mr_best:.1f} | {mr_median:.1f} | "
            f"{np_best / mr_best:.1f}x |"
        )
    agree = [
        f"{'one thread' if threads == '1' else 'all threads'}: +inf in the same cells: "
        f"{'yes' if r['same_infeasible'] else 'NO'}, "
        f"largest difference elsewhere {r['max_abs_diff']:.1e}"
        for threads, r in runs
    ]
    agreement = f"Agreement with numpy in this run: {'; '.join(agree)}."
    print()
    print(textwrap.fill(agreement, 100, break_on_hyphens=False))


if __name__ == "__main__":
    main()
