"""Per-request routing from Python over 16 models, the track() guard, and LiteLLM Router's
least-busy selection on the same 16 deployments (when litellm is importable)."""

from __future__ import annotations

import os
import statistics
import time

import modelrouter as mr

N_MODELS = 16


def fleet() -> list[mr.Model]:
    return [
        mr.Model(
            f"deploy-{j}",
            {"code": 0.5 + 0.03 * j, "chat": 0.9 - 0.02 * j},
            max_concurrent=64,
            max_queue=16,
        )
        for j in range(N_MODELS)
    ]


def decisions_per_s(fn, seconds: float = 1.0) -> float:
    best = 0.0
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(1000):
                fn()
            n += 1000
        best = max(best, n / elapsed)
    return best


def track_pair_ns(router: mr.Router, batches: int = 200, per_batch: int = 1000) -> float:
    samples = []
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(per_batch):
            with router.track("deploy-3"):
                pass
        samples.append((time.perf_counter_ns() - start) / per_batch)
    return statistics.median(samples)


def litellm_least_busy_per_s() -> float | None:
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
    router = LiteRouter(model_list=model_list, routing_strategy="least-busy")
    return decisions_per_s(lambda: router.get_available_deployment(model="gpt"), 0.5)


def main() -> None:
    router = mr.Router(fleet(), policy="weighted")
    agent = mr.Agent("coder", {"code": 0.4}, {"chat": 1.0})
    rows = []
    for policy in ("weighted", "least_loaded", "power_of_two", "predictive"):
        r = mr.Router(fleet(), policy=policy)
        rows.append(
            (f"modelrouter route() [{policy}]", decisions_per_s(lambda r=r: r.route(agent)))
        )
    lite = litellm_least_busy_per_s()
    print(f"## Per-request routing ({N_MODELS} models, one Python thread)\n")
    print("| router | decisions/s | vs LiteLLM least-busy |")
    print("|---|---:|---:|")
    for name, rate in rows:
        ratio = f"{rate / lite:.0f}x" if lite else "n/a (litellm not installed)"
        print(f"| {name} | {rate:,.0f} | {ratio} |")
    if lite:
        print(f"| LiteLLM Router get_available_deployment [least-busy] | {lite:,.0f} | 1x |")
    print(f"\ntrack() enter+exit pair from Python: median {track_pair_ns(router):.0f} ns")


if __name__ == "__main__":
    main()
