"""Command line: ``modelrouter assign`` compares the strategies on a fleet file (the shipped
seed scenario by default); ``modelrouter simulate`` runs a request stream through every routing
policy and compares latency, failures and utilization; ``modelrouter serve`` runs the REST
service and dashboard (``pip install 'modelrouter[server]'``)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _core
from ._core import Router, SimulationReport, simulate
from .errors import RouterError
from .types import load_fleet

# The core's name registry: one list for the CLI, the REST schema, the simulator and the stubs.
STRATEGIES = tuple(_core.STRATEGIES)
POLICIES = tuple(_core.POLICIES)
BASELINE = "capability_only"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_assign(args: argparse.Namespace) -> int:
    agents, models = load_fleet(args.scenario)
    strategies = args.strategy or list(STRATEGIES)
    results = {
        s: Router(models, strategy=s, load_balancing=not args.no_load_balancing).assign(agents)
        for s in strategies
    }
    if args.json:
        json.dump({s: r.to_dict() for s, r in results.items()}, sys.stdout, indent=2)
        print()
        return 0
    print(f"{len(agents)} agents, {len(models)} models ({args.scenario})\n")
    rows = []
    for s, r in results.items():
        used = Counter(a.model_id for a in r.assignments)
        load = " ".join(f"{m.id}={used[m.id]}/{m.max_concurrent}" for m in models)
        rows.append([s, len(r.assignments), len(r.unassigned), f"{r.total_score:.4f}", load])
    print(_table(["strategy", "assigned", "unassigned", "total score", "slots used"], rows))
    best = results[strategies[-1]]
    print(f"\n{strategies[-1]} placements:")
    print(
        _table(
            ["agent", "model", "score"],
            [[a.agent_id, a.model_id, f"{a.score:.4f}"] for a in best.assignments]
            + [[agent, "-", "unassigned"] for agent in best.unassigned],
        )
    )
    return 0


class _ProgressBar:
    """A one-line text bar on stderr, redrawn when the shown percent changes; when stderr is
    not a terminal (logs, CI) only the finished bar is written."""

    def __init__(self, width: int = 30) -> None:
        self.width, self.shown = width, -1
        self.live = sys.stderr.isatty()

    def __call__(self, fraction: float) -> None:
        percent = int(100 * fraction)
        if percent == self.shown or (not self.live and percent < 100):
            return
        self.shown = percent
        filled = round(self.width * fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        end = "\n" if percent >= 100 else ""
        print(f"\rsimulating [{bar}] {percent:3d}%", end=end, file=sys.stderr, flush=True)


def _policies(requested: Sequence[str] | None) -> list[str]:
    """Requested policies (comma lists allowed), capability-only first as the baseline."""
    names = [n for item in requested or POLICIES for n in item.split(",") if n]
    return [BASELINE] + [n for n in dict.fromkeys(names) if n != BASELINE]


def p99_sentence(report: SimulationReport) -> str:
    """The P99 change of the best load-aware policy against capability-only routing."""
    results = {name: r for name, r in report.results.items() if r.handling == "none"}
    base = results[BASELINE]
    aware = [r for name, r in results.items() if name != BASELINE and r.completed > 0]
    if not aware:
        return "no load-aware policy was run, so there is nothing to compare."
    best = min(aware, key=lambda r: (r.p99_ms, r.overload_failures))
    change = 100.0 * (best.p99_ms - base.p99_ms) / base.p99_ms
    sign = "−" if change < 0 else "+"
    return (
        f"P99 latency: {base.p99_ms:,.0f} ms → {best.p99_ms:,.0f} ms ({sign}{abs(change):.1f}%) "
        f"with {best.policy}; overload failures: {base.overload_failures:,} with {BASELINE}, "
        f"{best.overload_failures:,} with {best.policy} (load-aware policies never send a request "
        "to a full model, so theirs count only a scenario's hidden fail_above limits)"
    )


def failure_sentences(report: SimulationReport) -> list[str]:
    """Per policy with failure handling: success rate without handling, with ejection and with
    ejection + retries; the retries' extra load; the P99 of successful requests."""
    lines = []
    by_policy: dict[str, dict[str, Any]] = {}
    for r in report.results.values():
        by_policy.setdefault(r.policy, {})[r.handling] = r
    for policy, modes in by_policy.items():
        if set(modes) == {"none"}:
            continue
        labels = {"none": "no handling", "eject": "ejection", "eject_retry": "ejection + retries"}
        parts = [f"{modes[h].success_rate:.3%} with {labels[h]}" for h in labels if h in modes]
        line = f"{policy}: success {', '.join(parts)}"
        if "eject_retry" in modes:
            r = modes["eject_retry"]
            extra = r.failure_retries / max(r.requests, 1)
            line += f"; {r.failure_retries:,} retries ({extra:.2%} extra calls)"
        p99 = ", ".join(f"{modes[h].p99_ms:,.0f}" for h in labels if h in modes)
        lines.append(f"{line}; P99 of successful requests {p99} ms")
    return lines


def plot_latency(report: SimulationReport, path: Path) -> bool:
    """CDF and tail of the end-to-end latency per policy (log x). False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return False
    fig, (cdf, tail) = plt.subplots(1, 2, figsize=(13, 5.2))
    levels = np.linspace(0.0, 1.0, 2001)
    for name, r in report.results.items():
        if r.completed == 0:
            continue
        x = np.quantile(r.latencies_ms, levels)
        label = f"{name}  (P99 {r.p99_ms:,.0f} ms, overload {r.overload_failures:,})"
        style: dict[str, Any] = {"lw": 2.4 if name == BASELINE else 1.6}
        if name == BASELINE:
            style.update(color="black", ls="--")
        cdf.plot(x, levels, label=label, **style)
        tail.plot(x[:-1], 1.0 - levels[:-1], **style)
    cdf.set(xscale="log", xlabel="latency (ms, log scale)", ylabel="fraction of requests <= x")
    cdf.set_title("Latency CDF")
    tail.set(xscale="log", yscale="log", xlabel="latency (ms, log scale)")
    tail.set(ylabel="fraction of requests > x", ylim=(5e-4, 1.0))
    tail.set_title("Tail (P99 at the dotted line)")
    for ax in (cdf, tail):
        ax.grid(True, which="both", alpha=0.3)
    tail.axhline(0.01, color="grey", ls=":", lw=1)
    cdf.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{report.description}\n{report.requests:,} requests, seed {report.seed}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def cmd_simulate(args: argparse.Namespace) -> int:
    requested = args.policies
    if args.strategies is not None:
        message = "--strategies is deprecated; use --policies"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        print(f"modelrouter: warning: {message}", file=sys.stderr)
        requested = [*(requested or []), *args.strategies]
    report = simulate(
        args.scenario,
        _policies(requested),
        seed=args.seed,
        requests=args.requests,
        progress=_ProgressBar(),
        admission=args.admission,
        trace=args.trace,
        trace_rate_scale=args.rate_scale,
    )
    n_models = len(report.model_ids)
    print(
        f"{report.description}\n{report.requests:,} requests, {n_models} models, "
        f"seed {report.seed} ({args.scenario})\n"
    )
    print(report.table())
    print()
    print(p99_sentence(report))
    failures = failure_sentences(report)
    if failures:
        print("\nFailed calls (retries drawn from a budget of 20 % of requests + 10 per s):")
        print("\n".join(failures))
    if not args.no_plot:
        if plot_latency(report, Path(args.plot)):
            print(f"latency plot written to {args.plot}")
        else:
            print(
                "matplotlib is not installed, so no plot was drawn "
                "(pip install 'modelrouter[plot]')"
            )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:  # the server extra is optional; everything else in the CLI works without it
        import uvicorn

        from .server import create_app
    except ImportError as e:
        print(
            f"modelrouter: error: `serve` needs the server extra ({e.name} is missing): "
            "pip install 'modelrouter[server]'",
            file=sys.stderr,
        )
        return 2
    from .server import body_limit_from_env, check_body_limit

    models = load_fleet(args.fleet)[1]
    store_url = None if args.no_store else args.store
    if args.max_body_bytes is None:
        limit = body_limit_from_env()
    else:
        limit = check_body_limit(args.max_body_bytes, "--max-body-bytes")
    app = create_app(
        models,
        strategy=args.strategy,
        policy=args.policy,
        store_url=store_url,
        load_backend=args.load_backend,
        max_body_bytes=limit,
        upstreams=args.upstreams,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelrouter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    assign = sub.add_parser("assign", help="assign agents to models with each strategy")
    assign.add_argument(
        "--scenario", default="seed_assign", help="JSON file or shipped scenario name"
    )
    assign.add_argument("--strategy", action="append", choices=STRATEGIES)
    assign.add_argument("--no-load-balancing", action="store_true")
    assign.add_argument("--json", action="store_true", help="print the REST response bodies")
    assign.set_defaults(func=cmd_assign)
    sim = sub.add_parser("simulate", help="simulate a request stream under each routing policy")
    sim.add_argument(
        "--scenario", default="heterogeneous", help="JSON file or shipped scenario name"
    )
    sim.add_argument(
        "--policies",
        nargs="+",
        metavar="POLICY",
        help=f"policies to run (space or comma separated; {BASELINE} is always run as the "
        f"baseline); default: all of {', '.join(POLICIES)}",
    )
    # Deprecated spelling of --policies (they are policies, not batch strategies); one release.
    sim.add_argument("--strategies", nargs="+", metavar="POLICY", help=argparse.SUPPRESS)
    sim.add_argument("--seed", type=int, help="override the scenario's seed")
    sim.add_argument("--requests", type=int, help="override the scenario's request count")
    sim.add_argument(
        "--trace",
        metavar="FILE",
        help="replay a CSV with the columns TIMESTAMP, ContextTokens, GeneratedTokens",
    )
    sim.add_argument(
        "--rate-scale", type=float, default=1.0, help="replay the trace this many times as fast"
    )
    sim.add_argument(
        "--admission",
        choices=["tokens", "requests", "none"],
        help="what the router enforces of the models' rpm/tpm quotas",
    )
    sim.add_argument("--plot", default="out/latency.png", help="PNG path of the latency plot")
    sim.add_argument("--no-plot", action="store_true", help="skip the plot")
    sim.set_defaults(func=cmd_simulate)
    serve = sub.add_parser("serve", help="run the REST service and dashboard (needs [server])")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--fleet", default="seed_assign", help="JSON file or shipped scenario name of the fleet"
    )
    serve.add_argument(
        "--store",
        default="sqlite:///modelrouter.db",
        help="decision store URL (sqlite:///file.db, sqlite://:memory:, postgresql://...)",
    )
    serve.add_argument("--no-store", action="store_true", help="keep nothing on disk")
    serve.add_argument(
        "--load-backend",
        metavar="URL",
        help="redis://host:port/db or redis+cluster://host:port,host:port: share live load "
        "(and limits) with other replicas",
    )
    serve.add_argument(
        "--max-body-bytes",
        metavar="BYTES",
        help="largest request body accepted; bigger ones are answered 413 (default: "
        "$MODELROUTER_MAX_BODY_BYTES, else 16777216 = 16 MiB, room for a 10,000-agent batch)",
    )
    serve.add_argument(
        "--upstreams",
        metavar="FILE",
        help="JSON file of upstream deployments: adds the OpenAI-compatible gateway (/v1/...)",
    )
    serve.add_argument("--strategy", choices=STRATEGIES, default="optimal")
    serve.add_argument("--policy", choices=POLICIES, default="weighted")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RouterError as e:
        print(f"modelrouter: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
