"""A sick deployment among four, modelrouter's `Router.acall` against LiteLLM's Router.

Four OpenAI-compatible fake upstreams on loopback (modelrouter.testing.fake_upstream, one
process, 50 ± 10 ms per answer); 64 asyncio callers, each calling in a loop for DURATION_S
through the real `openai` AsyncOpenAI client (SDK retries off), the cases taking turns in four
slices. Three cases, each router the same way: all healthy; one deployment always answering
500; one answering 429 with `Retry-After: 2`. modelrouter runs with its defaults (outlier
ejection after 5 consecutive errors, half-open single probe, 429 → cooldown until Retry-After,
2 retries from the retry budget); LiteLLM with `allowed_fails=3, cooldown_time=5,
num_retries=2` (simple-shuffle).

Per run: success rate, successful calls per second and the loss against the same router's
healthy run, P50/P99 of the caller's latency (retries included), the requests the sick
deployment was sent, and its largest burst: the most requests it got within any 100 ms after
the first 2 s of its case (a half-open probe is 1; a cooldown ending for every caller at once is
many).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch beyond loopback

import openai  # noqa: E402

import modelrouter as mr  # noqa: E402
from modelrouter.testing.fake_upstream import FakeUpstreams  # noqa: E402

DURATION_S = float(os.environ.get("BENCH_FAILOVER_S", "20"))
CALLERS = 64
ROUNDS = 4  # the cases take turns, DURATION_S / ROUNDS each time
NAMES = ["u0", "u1", "u2", "u3"]
SICK = "u3"
CASES = {
    "healthy": {},
    "one always 500": {"mode": "error"},
    "one 429, Retry-After 2": {"mode": "rate_limit", "retry_after_s": 2},
}
MESSAGES = [{"role": "user", "content": "hello"}]


async def drive(
    call: Callable[[], Awaitable[object]], seconds: float
) -> tuple[int, int, list[float]]:
    ok = failed = 0
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def caller() -> None:
        nonlocal ok, failed
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                await call()
            except Exception:
                failed += 1
            else:
                ok += 1
                latencies.append((time.perf_counter() - t) * 1e3)

    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    return ok, failed, latencies


Call = Callable[[], Awaitable[object]]
Close = Callable[[], Awaitable[object]]


async def _nothing() -> None:
    return None


def modelrouter_call(up: FakeUpstreams) -> tuple[Call, Close]:
    models = [mr.Model(n, {"chat": 0.9}, max_concurrent=CALLERS, max_queue=0) for n in NAMES]
    router = mr.Router(models)
    agent = mr.Agent("caller", {"chat": 0.5})
    clients = {
        n: openai.AsyncOpenAI(base_url=up.base_url(n), api_key="x", max_retries=0, timeout=10)
        for n in NAMES
    }

    async def fn(model_id: str) -> object:
        return await clients[model_id].chat.completions.create(
            model="fake", messages=MESSAGES, max_tokens=10
        )

    async def close() -> None:
        await asyncio.gather(*(c.close() for c in clients.values()))

    return (lambda: router.acall(agent, fn, retries=2)), close


def litellm_call(up: FakeUpstreams) -> tuple[Call, Close]:
    import litellm

    litellm.suppress_debug_info = True
    logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)
    logging.getLogger("LiteLLM Router").setLevel(logging.CRITICAL)
    deployments = [
        {
            "model_name": "fake",
            "litellm_params": {
                "model": "openai/fake",
                "api_base": up.base_url(n),
                "api_key": "x",
                "max_retries": 0,
            },
            "model_info": {"id": n},
        }
        for n in NAMES
    ]
    router = litellm.Router(model_list=deployments, allowed_fails=3, cooldown_time=5, num_retries=2)
    call = lambda: router.acompletion(model="fake", messages=MESSAGES, max_tokens=10)  # noqa: E731
    return call, _nothing


def largest_burst(times: list[float], after: float, window_s: float = 0.1) -> int:
    times = sorted(t for t in times if t >= after)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def smallest_gap(times: list[float], after: float) -> float:
    times = sorted(t for t in times if t >= after)
    return min((b - a for a, b in zip(times, times[1:])), default=float("nan"))


async def run(make: Callable[[FakeUpstreams], tuple[Call, Close]]) -> list[dict]:
    """Every case for one router, in one event loop (its HTTP clients live in it). Each case
    has its own upstreams and router for the whole run; the cases take turns in ROUNDS
    slices, so a drift in the machine's other load falls on every case alike."""
    with contextlib.ExitStack() as stack:
        ups = {c: stack.enter_context(FakeUpstreams({n: {} for n in NAMES})) for c in CASES}
        for case, sick in CASES.items():
            if sick:
                ups[case].set(SICK, **sick)
        calls = {case: make(ups[case]) for case in CASES}
        ok = dict.fromkeys(CASES, 0)
        failed = dict.fromkeys(CASES, 0)
        lat: dict[str, list[float]] = {case: [] for case in CASES}
        first: dict[str, float] = {}  # when each case's first slice began
        for _ in range(ROUNDS):
            for case in CASES:
                first.setdefault(case, time.time())
                o, f, latencies = await drive(calls[case][0], DURATION_S / ROUNDS)
                ok[case] += o
                failed[case] += f
                lat[case] += latencies
        rows = []
        for case in CASES:
            await calls[case][1]()
            arrivals = ups[case].arrivals(SICK)
            q = statistics.quantiles(lat[case], n=100) if len(lat[case]) > 1 else [math.nan] * 99
            rows.append(
                {
                    "case": case,
                    "success": ok[case] / max(1, ok[case] + failed[case]),
                    "rate": ok[case] / DURATION_S,
                    "p50": q[49],
                    "p99": q[98],
                    "sick": len(arrivals),
                    "burst": largest_burst(arrivals, first[case] + 2.0),
                    "gap": smallest_gap(arrivals, first[case] + 2.0),
                }
            )
    base = rows[0]["rate"]
    for r in rows:
        r["change"] = r["rate"] / base - 1 if base else math.nan
    return rows


def main() -> int:
    results = {"modelrouter": asyncio.run(run(modelrouter_call))}
    try:
        import litellm  # noqa: F401
    except ImportError:
        print("litellm is not installed: the LiteLLM rows are left out", file=sys.stderr)
    else:
        results["LiteLLM Router"] = asyncio.run(run(litellm_call))
    lines = [
        "## Failover: a sick deployment among four (modelrouter vs LiteLLM)",
        "",
        f"4 fake OpenAI-compatible upstreams on loopback (50 ± 10 ms), {CALLERS} asyncio callers "
        f"for {DURATION_S:g} s per row ({ROUNDS} slices, the rows of a router taking turns) "
        "through the real `openai` AsyncOpenAI client. modelrouter: "
        "`Router.acall(..., retries=2)` with default health settings; LiteLLM: `Router("
        "allowed_fails=3, cooldown_time=5, num_retries=2)`. *Sent to sick*: requests the sick "
        "deployment got; *burst*: the most it got within any 100 ms after the first 2 s of "
        "its case (1 = one probe at a time); *gap*: the shortest time between two of its "
        "requests after those 2 s (≥ 2 s when Retry-After: 2 is honoured). *Change*: successful "
        "calls/s against the same router's healthy row. The callers are CPU-bound in the "
        "openai client on this machine, so calls/s measures client-side cost as much as the "
        "upstreams.",
        "",
        "| router | case | success | calls/s | change | P50 ms | P99 ms | sent to sick | burst "
        "| gap s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in results.items():
        for r in rows:
            sick = "–" if r["case"] == "healthy" else f"{r['sick']:,}"
            burst = "–" if r["case"] == "healthy" else str(r["burst"])
            gap = "–" if r["case"] == "healthy" or r["gap"] != r["gap"] else f"{r['gap']:.2f}"
            loss = "–" if r["case"] == "healthy" else f"{r['change']:+.1%}"
            lines.append(
                f"| {name} | {r['case']} | {r['success']:.2%} | {r['rate']:,.0f} | {loss} "
                f"| {r['p50']:.1f} | {r['p99']:.1f} | {sick} | {burst} | {gap} |"
            )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
