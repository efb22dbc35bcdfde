"""Simulator throughput: 1,000,000 requests over the 16-model heterogeneous scenario, every
policy at once (in parallel) and each alone, timed end to end from Python (percentiles and the
numpy latency arrays included)."""

from __future__ import annotations

import os
import time

import modelrouter as mr

REQUESTS = 1_000_000
POLICIES = ["capability_only", "least_loaded", "weighted", "power_of_two", "predictive"]


def best_of(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    runs = [("all five policies (parallel)", POLICIES)] + [(p, [p]) for p in POLICIES]
    rows = []
    for label, policies in runs:
        seconds = best_of(lambda p=policies: mr.simulate("heterogeneous", p, requests=REQUESTS))
        routed = REQUESTS * len(policies)
        rows.append(f"| {label} | {seconds:.3f} | {routed / seconds:,.0f} |")
    print(f"## Simulator ({REQUESTS:,} requests, 16 models, `heterogeneous` scenario)\n")
    print(f"{os.cpu_count()} cores; best of 3 runs; requests/s counts every policy's requests.\n")
    print("| run | seconds | simulated requests/s |")
    print("|---|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
