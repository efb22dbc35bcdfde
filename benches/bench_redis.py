"""Shared load through a local redis-server (started here on a free loopback port): the
acquire+release round trip of `track()` and `Router.request()`, the overhead over in-process
counters, and throughput when many requests are in flight at once (one process × 8 threads,
4 processes × 8 threads: the server interleaves the connections' scripts). The same through a
3-node Redis Cluster (`redis+cluster://`), where each model's keys live on one node."""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import modelrouter as mr
from modelrouter.testing.redis_server import CLI, REDIS, Cluster, RedisServer, running

PAIRS = 5000


def per_pair_us(fn: Any, n: int = PAIRS) -> tuple[float, float]:
    """Median and P99 of one acquire+release pair, in µs."""
    for _ in range(200):
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * len(samples))]


def fleet() -> list[mr.Model]:
    return [mr.Model("m", {"code": 0.9}, max_concurrent=10_000, max_queue=0)]


def single(url: str | None) -> dict[str, tuple[float, float]]:
    tracker = mr.LoadTracker(backend=url) if url else mr.LoadTracker()
    router = mr.Router(fleet(), load=tracker)
    agent = mr.Agent("a", {"code": 0.5})

    def track() -> None:
        with tracker.track("m"):
            pass

    def request() -> None:
        with router.request(agent):
            pass

    return {"track": per_pair_us(track), "request": per_pair_us(request)}


def _threads(url: str, threads: int, pairs: int, models: list[str]) -> None:
    tracker = mr.LoadTracker(backend=url)
    for m in models:
        tracker.set_capacity(m, max_concurrent=10_000)

    def work(k: int) -> None:
        for n in range(pairs):
            with tracker.track(models[(n + k) % len(models)]):
                pass

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def throughput(
    url: str, processes: int, threads: int, pairs: int, models: list[str] | None = None
) -> float:
    models = models or ["m"]
    start = time.perf_counter()
    if processes == 1:
        _threads(url, threads, pairs, models)
    else:
        ctx = mp.get_context("spawn")
        procs = [
            ctx.Process(target=_threads, args=(url, threads, pairs, models))
            for _ in range(processes)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        # Process start-up is not part of the work: time the same spawn with no pairs.
        empty = time.perf_counter()
        procs = [ctx.Process(target=_threads, args=(url, 0, 0, models)) for _ in range(processes)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        start += time.perf_counter() - empty
    return processes * threads * pairs / (time.perf_counter() - start)


def batched(url: str) -> str:
    """The Rust batched-lease table (`benches/redis.rs`), or why it is missing."""
    cmd = ["cargo", "bench", "--quiet", "--features", "redis-backend", "--bench", "redis"]
    env = {**os.environ, "MODELROUTER_TEST_REDIS_URL": url}
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"Batched leases (Rust): not measured ({e})."
    rows = [line for line in out.stdout.splitlines() if line.startswith("|")]
    if out.returncode != 0 or not rows:
        return f"Batched leases (Rust): not measured (cargo bench exit {out.returncode})."
    return "\n".join(rows)


def python_batches(url: str) -> list[tuple[int, float]]:
    """Per lease (µs) of `acquire_many(m, k)` + `release_many(...)` from Python."""
    tracker = mr.LoadTracker(backend=url)
    tracker.set_capacity("batch", max_concurrent=100_000)
    out = []
    for k in (1, 16, 64, 256):
        rounds = max(20, 4000 // k)
        for _ in range(3):
            tracker.release_many(tracker.acquire_many("batch", k))
        samples = []
        for _ in range(rounds):
            start = time.perf_counter_ns()
            handles = tracker.acquire_many("batch", k)
            tracker.release_many(handles)
            samples.append((time.perf_counter_ns() - start) / 1000 / len(handles))
        out.append((k, statistics.median(samples)))
    return out


def measure_cluster() -> tuple[dict[str, tuple[float, float]], float, float] | None:
    """Pair latency, and 1×8 / 4×8 throughput over three models on three nodes."""
    if CLI is None:
        return None
    with running(Cluster) as cluster:
        models = cluster.spread_models("bench")
        return (
            single(cluster.url),
            throughput(cluster.url, 1, 8, 2500, models),
            throughput(cluster.url, 4, 8, 2500, models),
        )


def main() -> None:
    if REDIS is None:
        print("## Shared load (Redis)\n\nSkipped: redis-server is not installed.")
        return
    with running(RedisServer) as server:
        url = server.url
        local, shared = single(None), single(url)
        three = [f"m{i}" for i in range(3)]
        one, four = throughput(url, 1, 8, 2500, three), throughput(url, 4, 8, 2500, three)
        python_batched = python_batches(url)
        rust = batched(url)
    cluster = measure_cluster()
    print("## Shared load (Redis)\n")
    print(
        f"Local redis-server on loopback, {os.cpu_count()} cores, from Python; one "
        "acquire+release pair."
    )
    print(
        "Cluster: 3 masters on the same machine (`redis+cluster://`), client-side slot routing.\n"
    )
    print(
        "| operation | in-process median | Redis median | Redis P99 | overhead | Cluster median |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, label in (
        ("track", "`with tracker.track(m)`"),
        ("request", "`with router.request(a)`"),
    ):
        (lm, _), (sm, sp) = local[name], shared[name]
        cm = f"{cluster[0][name][0]:.1f} µs" if cluster else "not measured (no redis-cli)"
        row = f"| {label} | {lm:.2f} µs | {sm:.1f} µs | {sp:.1f} µs | +{sm - lm:.1f} µs | {cm} |"
        print(row)
    print("\nConcurrent `track()` pairs over three models (one connection per thread; on the")
    print("Cluster each model's keys live on a different node):\n")
    print("| load | one server, pairs/s | 3-node Cluster, pairs/s |")
    print("|---|---:|---:|")
    for label, mine, theirs in (
        ("1 process × 8 threads", one, cluster[1] if cluster else None),
        ("4 processes × 8 threads", four, cluster[2] if cluster else None),
    ):
        shown = f"{theirs:,.0f}" if theirs is not None else "not measured"
        print(f"| {label} | {mine:,.0f} | {shown} |")
    print("\nBatched leases: one script call admits a whole batch, one `ZREM` gives it back.")
    print("From Python, `tracker.acquire_many(m, k)` then `tracker.release_many(handles)`:\n")
    print("| Python, one thread | per lease (acquire + release) | leases/s |")
    print("|---|---:|---:|")
    for k, us in python_batched:
        label = "one lease per round trip" if k == 1 else f"batches of {k}"
        print(f"| {label} | {us:.2f} µs | {1e6 / us:,.0f} |")
    print("\nFrom Rust (`RedisBackend::lease_many` / `release_many`, `benches/redis.rs`):\n")
    print(rust)
    print("\n`router.request` also reads the shared counts for its routing decision (cached 5 ms).")


if __name__ == "__main__":
    sys.exit(main())
