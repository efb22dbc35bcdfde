"""The feedback loop from Python: PerformanceTracker.record() cost per call, memory for 1000
models × 100 agents (1100 tracked keys, 100k records) by memory_bytes() and by RSS delta,
percentile error against exact numpy percentiles, and AdaptiveScorer / AlertManager calls."""

from __future__ import annotations

import gc
import os
import statistics
import time

import numpy as np

import modelrouter as mr

RECORD_BATCHES = (200, 1000)  # (batches, calls per batch)
READ_BATCHES = (50, 200)
EVALUATE_BATCHES = (50, 100)


def median_ns(fn, batches: int = 200, per_batch: int = 1000) -> float:
    samples = []
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(per_batch):
            fn()
        samples.append((time.perf_counter_ns() - start) / per_batch)
    return statistics.median(samples)


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def memory_rows() -> tuple[int, int | None]:
    gc.collect()
    before = rss_bytes()
    t = mr.PerformanceTracker()
    for k in range(100_000):
        t.record(f"model-{k % 1000}", 5.0 + (k % 997), k % 50 != 0, agent_id=f"agent-{k % 100}")
    assert len(t.model_ids()) == 1000 and len(t.agent_ids()) == 100
    after = rss_bytes()
    return t.memory_bytes(), (after - before) if before is not None and after else None


def accuracy(n: int = 100_000) -> float:
    x = np.random.default_rng(1).lognormal(np.log(250.0), 0.9, n)
    t = mr.PerformanceTracker(recent_samples=0)
    for v in x.tolist():
        t.record("m", v)
    s = t.stats("m")
    worst = 0.0
    for q, got in ((50, s.p50_ms), (95, s.p95_ms), (99, s.p99_ms)):
        exact = float(np.percentile(x, q, method="inverted_cdf"))
        worst = max(worst, abs(got - exact) / exact)
    return worst


def main() -> None:
    t = mr.PerformanceTracker()
    t.record("llama", 1.0, agent_id="coder")
    rec = median_ns(lambda: t.record("llama", 42.0, True), *RECORD_BATCHES)
    rec_agent = median_ns(lambda: t.record("llama", 42.0, True, "coder"), *RECORD_BATCHES)
    stats = median_ns(lambda: t.stats("llama"), *READ_BATCHES)
    models = [f"deploy-{j}" for j in range(16)]
    scorer = mr.AdaptiveScorer(performance=t)
    for j, m in enumerate(models):
        for _ in range(50):
            t.record(m, 50.0 + 10 * j, j != 3)
    caps = np.full(len(models), 0.7)
    scores = median_ns(lambda: scorer.scores(models, caps), *READ_BATCHES)
    rules = [mr.AlertRule("high_latency", 150.0), mr.AlertRule("low_success_rate", 0.9)]
    am = mr.AlertManager(rules, performance=t)
    evaluate = median_ns(am.evaluate, *EVALUATE_BATCHES)
    mem, rss = memory_rows()
    err = accuracy()

    print("## Feedback loop\n")
    batches = {b: f"{b[0]} batches of {b[1]:,}" for b in (RECORD_BATCHES, READ_BATCHES)}
    print(
        "Median over batches of calls (`time.perf_counter_ns`, no warm-up): record "
        f"{batches[RECORD_BATCHES]}, stats and scores {batches[READ_BATCHES]}, evaluate "
        f"{EVALUATE_BATCHES[0]} batches of {EVALUATE_BATCHES[1]}.\n"
    )
    print("| operation (from Python, one thread) | median per call |")
    print("|---|---:|")
    print(f"| PerformanceTracker.record(model, latency, success) | {rec:.0f} ns |")
    print(f"| PerformanceTracker.record(..., agent_id) | {rec_agent:.0f} ns |")
    print(f"| PerformanceTracker.stats(model) | {stats:.0f} ns |")
    print(f"| AdaptiveScorer.scores(16 models) | {scores / 1000:.1f} µs |")
    n_models = len(models) + 1
    print(f"| AlertManager.evaluate(2 rules × {n_models} models) | {evaluate / 1000:.1f} µs |")
    print()
    print("| 1000 models × 100 agents (1100 keys, 100k records) | bytes | per key |")
    print("|---|---:|---:|")
    print(f"| memory_bytes() | {mem / 2**20:.1f} MiB | {mem / 1100 / 1024:.1f} KiB |")
    if rss is not None:
        print(f"| RSS delta | {rss / 2**20:.1f} MiB | {rss / 1100 / 1024:.1f} KiB |")
    print(
        f"\nWorst relative error of P50/P95/P99 against exact numpy percentiles "
        f"(100k lognormal samples): {err * 100:.2f} %"
    )


if __name__ == "__main__":
    main()
