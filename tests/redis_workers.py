"""Workers that the shared-load tests run in spawned processes, against one Redis server or a
Cluster alike: each takes the models it spreads its requests over."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import modelrouter as mr


def _run_threads(threads: int, work: Callable[[int], None]) -> None:
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def hammer(
    url: str,
    models: list[str],
    limit: int,
    threads: int,
    rounds: int,
    live: Any,
    peak: Any,
    errors: Any,
    refused: Any = None,
) -> None:
    """Routes `rounds` requests per thread, each held 2 ms; `live`/`peak` (shared arrays, one
    cell per model) count what is in flight across every process; `refused` (a shared int)
    counts NoCapacityError answers."""
    catalog = [mr.Model(m, {"code": 0.9}, max_concurrent=limit) for m in models]
    tracker = mr.LoadTracker(backend=url, fail_mode="closed")
    router = mr.Router(catalog, policy="least_loaded", load=tracker)
    agent = mr.Agent("a", {"code": 0.5})
    index = {m: i for i, m in enumerate(models)}

    def work(_: int) -> None:
        done = 0
        while done < rounds:
            try:
                with router.request(agent) as handle:
                    i = index[handle.model_id]
                    with live.get_lock():
                        live[i] += 1
                        peak[i] = max(peak[i], live[i])
                    time.sleep(0.002)
                    with live.get_lock():
                        live[i] -= 1
                done += 1
            except mr.NoCapacityError:
                if refused is not None:
                    with refused.get_lock():
                        refused.value += 1
                time.sleep(0.001)
            except Exception:
                with errors.get_lock():
                    errors.value += 1
                return

    _run_threads(threads, work)


def pairs(url: str, models: list[str], threads: int, n_pairs: int, errors: Any) -> None:
    """`n_pairs` track() enter/exit pairs per thread, round-robin over `models`."""
    tracker = mr.LoadTracker(backend=url, fail_mode="closed")
    for m in models:
        tracker.set_capacity(m, max_concurrent=1000)

    def work(k: int) -> None:
        try:
            for n in range(n_pairs):
                with tracker.track(models[(n + k) % len(models)]):
                    pass
        except Exception:
            with errors.get_lock():
                errors.value += 1

    _run_threads(threads, work)


def hold(url: str, models: list[str], n: int, ttl: float, ready: Any) -> None:
    """Holds `n` requests of each model, then waits to be killed."""
    tracker = mr.LoadTracker(backend=url, lease_ttl_s=ttl, fail_mode="closed")
    guards = []
    for m in models:
        tracker.set_capacity(m, max_concurrent=100)
        guards += [tracker.track(m) for _ in range(n)]
    for g in guards:
        g.__enter__()
    ready.set()
    time.sleep(600)


def token_hammer(
    url: str, model: str, limits: dict[str, int], threads: int, attempts: int, totals: Any
) -> None:
    """`attempts` token-sized requests per thread against one model with shared RPM/TPM
    limits; `totals` (a shared array) sums [admitted requests, admitted tokens, errors]."""
    catalog = [mr.Model(model, {"code": 0.9}, max_concurrent=1000, **limits)]
    tracker = mr.LoadTracker(backend=url, fail_mode="closed")
    router = mr.Router(catalog, load=tracker)
    agent = mr.Agent("a", {"code": 0.5})

    def work(k: int) -> None:
        for i in range(attempts):
            n = 1 + (k * 7919 + i * 104_729) % 900 if "tpm" in limits else 0
            try:
                with router.request(agent, tokens=n):
                    with totals.get_lock():
                        totals[0] += 1
                        totals[1] += n
            except mr.NoCapacityError:
                pass
            except Exception:
                with totals.get_lock():
                    totals[2] += 1
                return

    _run_threads(threads, work)
