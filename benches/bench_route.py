"""Per-request routing from Python over 16 models, the per-request lifecycle (``request`` and
``track`` guards), and LiteLLM Router's least-busy selection on the same 16 deployments (when
litellm is importable).

Routing rates: every row is measured the same way: an untimed warm-up of ``--warmup`` seconds
that also sizes the batches (about 10 ms each), then ``--windows`` windows of ``--seconds``
each; a window ends after the first batch that reaches its length. Calls cycle through a list
of inputs in every row (``itertools.cycle``), so the loop overhead is the same:

- same agent: one agent every call, so the router's score cache always hits;
- distinct agents: ``--agents`` different agents (ids and requirements), more than the
  router's score cache holds (4,096 entries, cleared when full), so every call computes the
  agent's scores over the 16 models;
- LiteLLM ``get_available_deployment(model="gpt")`` takes a model group, not an agent: it has
  no cache of agent scores to hit or miss.

Lifecycle: median ns per enter+exit pair over batches of 1,000 pairs, the same inputs.

Usage: python benches/bench_route.py [--seconds 1 --windows 3 --agents 5000 --batches 200]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import textwrap
import time
from typing import Any, Callable

import modelrouter as mr

N_MODELS = 16
SCORE_CACHE_ENTRIES = 4096  # SCORE_CACHE_LIMIT in src/router/mod.rs
HIT_AGENT = mr.Agent("coder", {"code": 0.4}, {"chat": 1.0})


# Token limits high enough never to refuse during a run (the windows fill at ~1 M admissions
# per second), so every decision runs the whole token-aware path.
TOKEN_LIMITS = {"rpm": 10**12, "tpm": 10**15, "max_tokens_in_flight": 10**12}


def fleet(limits: dict[str, int] | None = None) -> list[mr.Model]:
    return [
        mr.Model(
            f"deploy-{j}",
            {"code": 0.5 + 0.03 * j, "chat": 0.9 - 0.02 * j},
            max_concurrent=64,
            max_queue=16,
            **(limits or {}),
        )
        for j in range(N_MODELS)
    ]


def distinct_agents(n: int) -> list[mr.Agent]:
    """``n`` agents with their own ids and requirements, every one servable by every model."""
    return [
        mr.Agent(f"agent-{i}", {"code": 0.2 + 0.3 * (i % 101) / 100}, {"chat": 1.0 - (i % 7) / 10})
        for i in range(n)
    ]


def router(policy: str = "weighted", limits: dict[str, int] | None = None) -> mr.Router:
    return mr.Router(fleet(limits), policy=policy, load=mr.LoadTracker())


def token_rows(args: argparse.Namespace) -> None:
    """Token-aware routing and admission: the same calls with and without RPM/TPM/tokens-in-
    flight limits on all 16 models, in the same run (ratios, not absolute rates)."""
    same = [HIT_AGENT]
    print(f"## Token-aware limits ({N_MODELS} models, one Python thread)\n")
    intro = (
        "Every model has rpm, tpm and max_tokens_in_flight set (high enough never to refuse, so "
        "every call runs the whole token-aware path: windows read or checked and recorded under "
        "the model's lock) or none, measured in the same run as the rows above. "
        "`route(agent, tokens=1500)` decides and reserves nothing; `request(agent, tokens=1000, "
        "max_output_tokens=500)` admits (slot, RPM and TPM windows, tokens in flight) and gives "
        "back on exit; `set_usage` adds the reconciliation."
    )
    print(textwrap.fill(intro, 100, break_on_hyphens=False), end="\n\n")
    print("| call | limits | decisions/s (best) | median window |")
    print("|---|---|---:|---:|")
    best, median = rates(router("weighted").route, same, args)
    print(f"| `route(agent)` [weighted] (reference) | none | {best:,.0f} | {median:,.0f} |")
    for policy in ("weighted", "least_loaded"):
        for label, limits in (("none", None), ("rpm + tpm + tokens in flight", TOKEN_LIMITS)):
            r = router(policy, limits)
            best, median = rates(lambda a, r=r: r.route(a, tokens=1500), same, args)
            name = f"`route(agent, tokens=1500)` [{policy}]"
            print(f"| {name} | {label} | {best:,.0f} | {median:,.0f} |")

    def admit(r: mr.Router) -> Callable[[mr.Agent], None]:
        return lambda a: r.request(a, tokens=1000, max_output_tokens=500).release()

    def admit_usage(r: mr.Router) -> Callable[[mr.Agent], None]:
        def go(a: mr.Agent) -> None:
            with r.request(a, tokens=1000, max_output_tokens=500) as f:
                f.set_usage(1000, 120)

        return go

    usage_row = "`with request(...) as f: f.set_usage(1000, 120)`"
    for label, limits in (("none", None), ("rpm + tpm + tokens in flight", TOKEN_LIMITS)):
        r = router("weighted", limits)
        best, median = rates(admit(r), same, args)
        name = "`request(agent, tokens=1000, max_output_tokens=500).release()`"
        print(f"| {name} | {label} | {best:,.0f} | {median:,.0f} |")
        best, median = rates(admit_usage(r), same, args)
        print(f"| {usage_row} | {label} | {best:,.0f} | {median:,.0f} |")


def rates(
    call: Callable[[Any], object], items: list[Any], args: argparse.Namespace
) -> tuple[float, float]:
    """(best, median) calls/s over the windows; the same procedure for every row."""
    it = itertools.cycle(items)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.warmup:
        for x in itertools.islice(it, 100):
            call(x)
        n += 100
    batch = max(1, int(n / args.warmup * 0.01))
    out = []
    for _ in range(args.windows):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < args.seconds:
            for x in itertools.islice(it, batch):
                call(x)
            n += batch
        out.append(n / elapsed)
    return max(out), statistics.median(out)


def pair_ns(enter: Callable[[Any], Any], items: list[Any], batches: int) -> float:
    """Median over ``batches`` batches of 1,000 ``with enter(x): pass`` pairs, ns per pair."""
    it = itertools.cycle(items)
    for x in itertools.islice(it, 1000):  # warm-up
        with enter(x):
            pass
    samples = []
    for _ in range(batches):
        start = time.perf_counter_ns()
        for x in itertools.islice(it, 1000):
            with enter(x):
                pass
        samples.append((time.perf_counter_ns() - start) / 1000)
    return statistics.median(samples)


def litellm_router() -> Any | None:
    # Use the cost map bundled in the wheel instead of fetching it from the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm  # noqa: F401
        from litellm import Router as LiteRouter
    except ImportError:
        return None
    model_list = [
        {
            "model_name": "gpt",
            "litellm_params": {
                "model": "openai/gpt-4o-mini",
                "api_key": "sk-bench",
                "api_base": f"http://127.0.0.1:9/deploy-{j}",
            },
            "model_info": {"id": f"deploy-{j}"},
        }
        for j in range(N_MODELS)
    ]
    return LiteRouter(model_list=model_list, routing_strategy="least-busy")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=1.0, help="length of one timed window")
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--warmup", type=float, default=0.2, help="untimed seconds before a row")
    p.add_argument("--agents", type=int, default=5000, help="distinct agents (> 4,096)")
    p.add_argument("--batches", type=int, default=200, help="lifecycle: batches of 1,000 pairs")
    p.add_argument("--tokens-only", action="store_true", help="only the token-aware rows")
    args = p.parse_args()
    if args.tokens_only:
        token_rows(args)
        return
    if args.agents <= SCORE_CACHE_ENTRIES:
        p.error(f"--agents must exceed the score cache ({SCORE_CACHE_ENTRIES:,} entries)")
    same, many = [HIT_AGENT], distinct_agents(args.agents)

    rows = []
    for policy in ("weighted", "least_loaded", "power_of_two", "predictive"):
        for label, items in (("same agent", same), (f"{args.agents:,} distinct agents", many)):
            r = router(policy)
            rows.append(
                (f"modelrouter `route()` [{policy}], {label}", *rates(r.route, items, args))
            )
    for policy in ("weighted", "predictive"):  # health: the best model for the agent is ejected
        r = mr.Router(fleet(), policy=policy, health={"consecutive_errors": 5})
        top = r.route(HIT_AGENT)
        for _ in range(5):
            r.record(top, 1000.0, False, outcome="server_error")
        assert r.health_of(top)["state"] == "ejected" and r.route(HIT_AGENT) != top
        rows.append(
            (
                f"modelrouter `route()` [{policy}], same agent, its best model ejected",
                *rates(r.route, same, args),
            )
        )
    lite = litellm_router()
    lite_rate = None
    if lite is not None:
        best, median = rates(lambda _: lite.get_available_deployment(model="gpt"), [None], args)
        lite_rate = best
        rows.append(("LiteLLM `get_available_deployment` [least-busy]", best, median))

    def request(r: mr.Router) -> Callable[[mr.Agent], Any]:
        return r.request

    def track(r: mr.Router) -> Callable[[str], Any]:
        return r.track

    def track_agent(r: mr.Router) -> Callable[[mr.Agent], Any]:
        return lambda a: r.track("deploy-3", agent_id=a.id)

    distinct = f"{args.agents:,} distinct agents"
    lifecycle: list[tuple[str, str, Callable[[mr.Router], Any], list[Any]]] = [
        ("`with router.request(agent): pass`", "same agent", request, same),
        ("`with router.request(agent): pass`", distinct, request, many),
        ("`with router.track(model_id): pass`", "one model, no agent id", track, ["deploy-3"]),
        ("`with router.track(model_id, agent_id=a.id): pass`", "same agent", track_agent, same),
        ("`with router.track(model_id, agent_id=a.id): pass`", distinct, track_agent, many),
    ]
    life_rows = []
    for what, label, enter, items in lifecycle:
        life_rows.append((what, label, pair_ns(enter(router()), items, args.batches)))

    print(f"## Per-request routing ({N_MODELS} models, one Python thread)\n")
    intro = (
        f"Every row: {args.warmup:g} s untimed warm-up, then {args.windows} windows of "
        f"{args.seconds:g} s (`time.perf_counter`), batches of about 10 ms; best and median "
        "window. Same agent: the router's score cache hits on every call after the first. "
        f"{args.agents:,} distinct agents (ids and requirements), cycled: more than the "
        f"{SCORE_CACHE_ENTRIES:,}-entry score cache, so every call scores its agent on all "
        f"{N_MODELS} models. `route()` decides on live load and reserves nothing; LiteLLM's "
        "least-busy `get_available_deployment` picks among the 16 deployments of one model "
        "group by its in-flight counts and takes no agent, so it has one row. Ratios divide "
        "best by LiteLLM's best."
    )
    print(textwrap.fill(intro, 100, break_on_hyphens=False), end="\n\n")
    print("| router | decisions/s (best) | median window | vs LiteLLM least-busy |")
    print("|---|---:|---:|---:|")
    for name, best, median in rows:
        ratio = f"{best / lite_rate:.0f}x" if lite_rate else "n/a (litellm not installed)"
        print(f"| {name} | {best:,.0f} | {median:,.0f} | {ratio} |")
    lifecycle_intro = (
        f"Per-request lifecycle from Python (router with a `LoadTracker`, weighted policy): "
        f"median over {args.batches} batches of 1,000 enter+exit pairs. `request(agent)` "
        "routes, admits (takes a slot) and on exit gives the slot back and records the latency "
        "(latency EWMA, PerformanceTracker series of the model and of the agent); "
        "`track(model_id)` takes a slot on a given model without routing and records the same "
        "way, per agent only when given `agent_id`."
    )
    print()
    print(textwrap.fill(lifecycle_intro, 100, break_on_hyphens=False), end="\n\n")
    print("| guard | input | median ns per pair |")
    print("|---|---|---:|")
    for what, label, ns in life_rows:
        print(f"| {what} | {label} | {ns:,.0f} |")
    print()
    token_rows(args)


if __name__ == "__main__":
    main()
