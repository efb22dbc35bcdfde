"""Before/after: the same Python-level operations timed under two builds of modelrouter, in one
run, alternating so that machine noise hits both alike.

Usage: python benches/compare_builds.py --baseline /path/to/other/venv/bin/python [--rounds 5]

The baseline is another checkout's virtualenv (e.g. `git worktree add ../base <commit>` and
`make build` there). Only API common to both builds is used. Prints a markdown table: the median
over rounds of each operation's best-of-batches time, and after / before.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

# Runs in the interpreter under test; prints {operation: ns per operation}.
CHILD = r"""
import json, time
import modelrouter as mr

def best_ns(fn, n, batches=7):
    fn()
    best = float("inf")
    for _ in range(batches):
        t = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t) / n)
    return best

models = [mr.Model(f"m{j}", {"code": 0.5 + 0.03 * j, "chat": 0.9 - 0.02 * j},
                   context_window=32768, max_concurrent=64, max_queue=16) for j in range(16)]
agent = mr.Agent("a", {"code": 0.4})
out = {}
for policy in ("weighted", "power_of_two", "predictive"):
    r = mr.Router(models, policy=policy)
    out[f"route() 16 models, {policy} (same agent)"] = best_ns(lambda: r.route(agent), 20000)
r = mr.Router(models)
agents = [mr.Agent(f"x{i}", {"code": 0.4}) for i in range(5000)]
it = iter(range(10**9))
out["route() 16 models, weighted (5,000 distinct agents)"] = best_ns(
    lambda: r.route(agents[next(it) % 5000]), 5000)

def request():
    with r.request(agent):
        pass
out["with request(agent): admit + end"] = best_ns(request, 20000)

def track():
    with r.track("m0"):
        pass
out["with track(model): pair"] = best_ns(track, 20000)
out["Router.record(model, latency)"] = best_ns(lambda: r.record("m0", 12.5), 50000)
out["Router.record(..., agent_id)"] = best_ns(lambda: r.record("m0", 12.5, agent_id="a"), 50000)
perf = mr.PerformanceTracker()
out["PerformanceTracker.record(model, latency)"] = best_ns(lambda: perf.record("m", 12.5), 50000)
t = mr.LoadTracker()
t.set_capacity("m", 10)
out["LoadTracker.update_load pair"] = best_ns(
    lambda: (t.update_load("m", 1), t.update_load("m", -1)), 50000)
out["simulate('seed_overload', 20k requests, weighted)"] = best_ns(
    lambda: mr.simulate("seed_overload", ["weighted"], requests=20000), 1, batches=3)
print(json.dumps(out))
"""


def measure(python: str) -> dict[str, float]:
    proc = subprocess.run(
        [python, "-c", CHILD], capture_output=True, text=True, timeout=600, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", required=True, help="python of the build to compare against")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    before: dict[str, list[float]] = {}
    after: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for python, into in ((args.baseline, before), (sys.executable, after)):
            for k, v in measure(python).items():
                into.setdefault(k, []).append(v)
    print("| operation (from Python, one thread) | before | after | after / before |")
    print("|---|---:|---:|---:|")
    for k in before:
        b, a = statistics.median(before[k]), statistics.median(after[k])
        print(f"| {k} | {fmt(b)} | {fmt(a)} | {a / b:.2f} |")
    print(
        f"\nMedian over {args.rounds} alternating rounds of each build's best-of-7-batches time "
        "per operation (lower is better; a ratio above 1.05 is a regression beyond noise only "
        "if it repeats)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
