"""Command line: ``modelrouter assign`` compares the strategies on a fleet file (the shipped
seed scenario by default)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence

from ._core import Router
from .errors import RouterError
from .types import load_fleet

STRATEGIES = ("greedy", "balanced", "optimal")


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
