"""Simulator throughput: 1,000,000 requests over the 16-model heterogeneous scenario, every
policy at once (in parallel) and each alone, timed end to end from Python (percentiles and the
numpy latency arrays included), and the outcome of every request per policy in that run."""

from __future__ import annotations

import json
import os
import statistics
import textwrap
import time
from importlib import resources

import modelrouter as mr

SCENARIO = "heterogeneous"
REQUESTS = 1_000_000
REPEAT = 3
POLICIES = ["capability_only", "least_loaded", "weighted", "power_of_two", "predictive"]


def timed(fn, repeat: int = REPEAT) -> tuple[float, float, mr.SimulationReport]:
    """(best s, median s, first report) over ``repeat`` calls; no warm-up."""
    times, reports = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        reports.append(fn())
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), reports[0]


def main() -> None:
    scenario = json.loads(
        resources.files("modelrouter").joinpath(f"scenarios/{SCENARIO}.json").read_text()
    )
    n_models = len(scenario["models"])
    hidden_limit = any(m.get("fail_above") is not None for m in scenario["models"])
    runs = [("all five policies (parallel)", POLICIES)] + [(p, [p]) for p in POLICIES]
    rows, reports = [], []
    for label, policies in runs:
        best, median, report = timed(lambda p=policies: mr.simulate(SCENARIO, p, requests=REQUESTS))
        reports.append(report)
        routed = REQUESTS * len(policies)
        rows.append(f"| {label} | {best:.3f} | {median:.3f} | {routed / best:,.0f} |")
    print(f"## Simulator ({REQUESTS:,} requests, {n_models} models, `{SCENARIO}` scenario)\n")
    timing = (
        f"{os.cpu_count()} cores; {REPEAT} runs of each row, no warm-up; best and median "
        "seconds from Python (report and latency arrays included); requests/s = every "
        "policy's requests over the best time."
    )
    print(textwrap.fill(timing, 100, break_on_hyphens=False), end="\n\n")
    print("| run | best s | median s | simulated requests/s |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))

    limit = (
        "or started above a model's hidden failure limit (`fail_above`, set in this scenario)"
        if hidden_limit
        else "(this scenario sets no hidden failure limit)"
    )
    outcomes = (
        "Outcome of every request in the all-policies run (the same request stream for each "
        "policy, seed from the scenario). An overload failure is a request sent to a model "
        f"with neither a free slot nor queue room {limit}. `capability_only` picks by "
        "capability alone, so it can send a request to a full model. The load-aware policies "
        "choose only among models with a free slot or queue room: they never send a request to "
        "a full model, so their zero slot-and-queue overload failures follow from the rule, "
        "not from the load. When every eligible model is full they answer no capacity, the "
        f"client retries (up to {scenario.get('max_retries', 'the scenario default')} times), "
        "and after its last retry the request counts as rejected. Compare them on completed, "
        "rejected and latency."
    )
    print()
    print(textwrap.fill(outcomes, 100, break_on_hyphens=False), end="\n\n")
    print("| policy | completed | overload failures | rejected | retries | P50 ms | P99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in reports[0].results.items():
        print(
            f"| {name} | {r.completed:,} | {r.overload_failures:,} | {r.rejected:,} | "
            f"{r.retries:,} | {r.p50_ms:,.0f} | {r.p99_ms:,.0f} |"
        )


if __name__ == "__main__":
    main()
