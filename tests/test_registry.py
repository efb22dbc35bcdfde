"""One registry of names and defaults in the core: the CLI, the REST schema and the stubs read
it; and the deprecated spellings kept for one release."""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import pytest

import modelrouter as mr
from modelrouter import _core
from modelrouter.cli import build_parser, main

STUB = Path(mr.__file__).with_name("_core.pyi")


def _stub() -> ast.Module:
    return ast.parse(STUB.read_text())


def _stub_literal(alias: str) -> list[str]:
    for node in _stub().body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == alias:
            sub = node.value
            assert isinstance(sub, ast.Subscript)
            elts = sub.slice.elts if isinstance(sub.slice, ast.Tuple) else [sub.slice]
            return [ast.literal_eval(e) for e in elts]
    raise AssertionError(f"{alias} not in the stub")


def _choices(command: str, option: str) -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    action = next(a for a in sub.choices[command]._actions if option in a.option_strings)
    return list(action.choices)


def test_the_registry_lists_the_core_names():
    assert _core.STRATEGIES == ["greedy", "balanced", "optimal"]
    assert _core.POLICIES[0] == "capability_only" and "predictive" in _core.POLICIES


def test_cli_choices_schema_enums_and_stub_aliases_equal_the_registry():
    assert _choices("assign", "--strategy") == _core.STRATEGIES
    assert _choices("serve", "--strategy") == _core.STRATEGIES
    assert _choices("serve", "--policy") == _core.POLICIES
    assert _stub_literal("_StrategyName") == _core.STRATEGIES
    assert _stub_literal("_PolicyName") == _core.POLICIES
    schemas = pytest.importorskip("modelrouter.server_schemas")
    assert list(typing.get_args(schemas.Strategy)) == _core.STRATEGIES
    assert list(typing.get_args(schemas.Policy)) == _core.POLICIES
    request = schemas.AutoAssignRequest.model_json_schema()["properties"]["strategy"]
    assert request["enum"] == _core.STRATEGIES
    stats = schemas.StatsResponse.model_json_schema()["properties"]["policy"]
    assert stats["enum"] == _core.POLICIES


def test_model_defaults_are_read_from_the_core():
    d = _core.MODEL_DEFAULTS
    assert d == {
        "context_window": 8192,
        "max_concurrent": 10,
        "max_queue": 0,
        "target_utilization": 0.8,
        "cost_per_1k_tokens": 0.0,
        "rpm": None,
        "tpm": None,
        "max_tokens_in_flight": None,
    }
    m = mr.Model("m")
    assert {k: getattr(m, k) for k in d} == d
    shown = inspect.signature(mr.Model).parameters
    assert {k: shown[k].default for k in d} == d
    # The simulator fills a scenario's missing model fields with the same values.
    sc = {
        "requests": 1,
        "arrival_rate_per_s": 1.0,
        "models": [{"id": "m", "service": {"distribution": "deterministic", "ms": 1}}],
        "agents": [{"id": "a"}],
    }
    assert mr.simulate(sc, "least_loaded").results["least_loaded"].completed == 1
    schemas = pytest.importorskip("modelrouter.server_schemas")
    body = schemas.ModelBody(id="m")
    assert {k: getattr(body, k) for k in d} == d
    new = next(
        f
        for node in _stub().body
        if isinstance(node, ast.ClassDef) and node.name == "Model"
        for f in node.body
        if isinstance(f, ast.FunctionDef) and f.name == "__new__"
    )
    stub_defaults = {
        a.arg: ast.literal_eval(v) for a, v in zip(new.args.kwonlyargs, new.args.kw_defaults)
    }
    assert stub_defaults == d


def test_simulate_strategies_is_a_deprecated_alias_of_policies():
    new = mr.simulate("seed_overload", policies=["weighted"], seed=3)
    with pytest.warns(DeprecationWarning, match=r"use policies="):
        old = mr.simulate("seed_overload", strategies=["weighted"], seed=3)
    assert old.to_dict() == new.to_dict()
    assert list(old.results) == ["weighted"]
    with pytest.warns(DeprecationWarning), pytest.raises(mr.InvalidInputError) as e:
        mr.simulate("seed_overload", strategies=["nope"])
    assert e.value.field == "strategies"
    with pytest.raises(mr.InvalidInputError, match="give only policies") as e:
        mr.simulate("seed_overload", ["weighted"], strategies=["weighted"])
    assert e.value.field == "strategies"


def test_adaptive_scorer_tracker_is_a_deprecated_alias_of_performance():
    perf = mr.PerformanceTracker(clock=mr.ManualClock())
    perf.record("m", 10.0, False)
    new = mr.AdaptiveScorer(performance=perf)
    assert new.tracker.stats("m").failures == 1
    with pytest.warns(DeprecationWarning, match=r"use performance="):
        old = mr.AdaptiveScorer(tracker=perf)
    assert old.tracker.stats("m").failures == 1
    assert old.explain("m") == new.explain("m")
    with pytest.raises(mr.InvalidInputError, match="give only performance") as e:
        mr.AdaptiveScorer(performance=perf, tracker=perf)
    assert e.value.field == "tracker"


def test_cli_strategies_is_a_deprecated_alias_of_policies(capsys):
    base = ["simulate", "--scenario", "seed_overload", "--no-plot"]
    assert main([*base, "--policies", "weighted"]) == 0
    new = capsys.readouterr()
    assert "--strategies" not in new.err and "\nweighted " in new.out
    with pytest.warns(DeprecationWarning, match="use --policies"):
        assert main([*base, "--strategies", "weighted"]) == 0
    old = capsys.readouterr()
    assert "--strategies is deprecated; use --policies" in old.err
    assert old.out == new.out
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert "--strategies" not in sub.choices["simulate"].format_help()
