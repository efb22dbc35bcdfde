"""Shared load through a local redis-server (started here on a free loopback port): the
acquire+release round trip of `track()` and `Router.request()`, the overhead over in-process
counters, and throughput when many requests are in flight at once (one process × 8 threads,
4 processes × 8 threads: the server interleaves the connections' scripts)."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import modelrouter as mr

PAIRS = 5000


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        print("## Shared load (Redis)\n\nSkipped: redis-server is not installed.")
        raise SystemExit(0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    cmd += ["no", "--dir", tempfile.mkdtemp(prefix="mr-bench-redis-")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


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
    router = mr.Router(fleet(), tracker=tracker)
    agent = mr.Agent("a", {"code": 0.5})

    def track() -> None:
        with tracker.track("m"):
            pass

    def request() -> None:
        with router.request(agent):
            pass

    return {"track": per_pair_us(track), "request": per_pair_us(request)}


def _threads(url: str, threads: int, pairs: int) -> None:
    tracker = mr.LoadTracker(backend=url)
    tracker.set_capacity("m", max_concurrent=10_000)

    def work() -> None:
        for _ in range(pairs):
            with tracker.track("m"):
                pass

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def throughput(url: str, processes: int, threads: int, pairs: int) -> float:
    start = time.perf_counter()
    if processes == 1:
        _threads(url, threads, pairs)
    else:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_threads, args=(url, threads, pairs)) for _ in range(processes)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        # Process start-up is not part of the work: time the same spawn with no pairs.
        empty = time.perf_counter()
        procs = [ctx.Process(target=_threads, args=(url, 0, 0)) for _ in range(processes)]
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


def main() -> None:
    proc, url = start_server()
    try:
        local, shared = single(None), single(url)
        one = throughput(url, 1, 8, 2500)
        four = throughput(url, 4, 8, 2500)
        rust = batched(url)
    finally:
        proc.terminate()
        proc.wait()
    print("## Shared load (Redis)\n")
    print("Local redis-server on loopback, 2-core VM, from Python; one acquire+release pair.\n")
    print("| operation | in-process median | Redis median | Redis P99 | overhead |")
    print("|---|---:|---:|---:|---:|")
    for name, label in (
        ("track", "`with tracker.track(m)`"),
        ("request", "`with router.request(a)`"),
    ):
        (lm, _), (sm, sp) = local[name], shared[name]
        print(f"| {label} | {lm:.2f} µs | {sm:.1f} µs | {sp:.1f} µs | +{sm - lm:.1f} µs |")
    print("\n| concurrent `track()` pairs (many in flight, one connection per thread) | pairs/s |")
    print("|---|---:|")
    print(f"| 1 process × 8 threads | {one:,.0f} |")
    print(f"| 4 processes × 8 threads | {four:,.0f} |")
    print("\nBatched (pipelined) leases from Rust: one round trip admits a whole batch")
    print("(`RedisBackend::acquire_many`), one releases it (`release_many`); `benches/redis.rs`.\n")
    print(rust)
    print("\n`router.request` also reads the shared counts for its routing decision (cached 5 ms).")


if __name__ == "__main__":
    sys.exit(main())
