"""Simulator: queueing-theory oracles (M/M/1, Erlang C, M/D/1), numpy percentiles, outcome
conservation, the shipped scenarios, scenario errors and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelrouter as mr
from modelrouter.cli import main

POLICIES = ["capability_only", "least_loaded", "weighted", "power_of_two", "predictive"]
LOAD_AWARE = POLICIES[1:]


def one_model(service: dict, *, servers: int = 1, rate: float, requests: int) -> dict:
    """A single model with an unbounded queue serving one agent: a textbook queue."""
    return {
        "requests": requests,
        "arrival_rate_per_s": rate,
        "seed": 3,
        "agents": [{"id": "a", "required": {"code": 0.5}}],
        "models": [
            {
                "id": "m",
                "capabilities": {"code": 1.0},
                "max_concurrent": servers,
                "max_queue": 10**9,
                "target_utilization": 1.0,
                "service": service,
            }
        ],
    }


def erlang_c_wait_ms(rate_per_ms: float, mean_ms: float, c: int) -> float:
    a = rate_per_ms * mean_ms
    tail = a**c / math.factorial(c) / (1 - a / c)
    p_wait = tail / (sum(a**k / math.factorial(k) for k in range(c)) + tail)
    return p_wait * mean_ms / (c - a)


def test_mm1_mean_latency_matches_closed_form():
    # M/M/1 with rho = 0.7: W = 1 / (mu - lambda).
    mean_ms, rate = 50.0, 14.0
    sc = one_model({"distribution": "exponential", "mean_ms": mean_ms}, rate=rate, requests=300_000)
    r = mr.simulate(sc, ["capability_only"]).results["capability_only"]
    expected = 1.0 / (1.0 / mean_ms - rate / 1000.0)
    assert r.mean_ms == pytest.approx(expected, rel=0.04)
    assert r.per_model_utilization["m"] == pytest.approx(0.7, abs=0.01)


def mean_wait_over_seeds(sc: dict, policy: str, mean_service_ms: float, seeds: int = 8) -> float:
    """Mean queue wait averaged over independent runs: a single run near saturation is off by
    several percent, the average of eight by about one."""
    means = [mr.simulate(sc, [policy], seed=s).results[policy].mean_ms for s in range(seeds)]
    return float(np.mean(means)) - mean_service_ms


@pytest.mark.parametrize("policy", ["least_loaded", "predictive"])
def test_mmc_wait_matches_erlang_c(policy):
    mean_ms, rate, c = 200.0, 12.0, 3  # rho = 0.8
    service = {"distribution": "exponential", "mean_ms": mean_ms}
    sc = one_model(service, servers=c, rate=rate, requests=250_000)
    expected = erlang_c_wait_ms(rate / 1000.0, mean_ms, c)
    assert mean_wait_over_seeds(sc, policy, mean_ms) == pytest.approx(expected, rel=0.05)


def test_md1_wait_matches_pollaczek_khinchine():
    ms, rate = 100.0, 6.0  # rho = 0.6; Wq = rho * S / (2 (1 - rho))
    sc = one_model({"distribution": "deterministic", "ms": ms}, rate=rate, requests=200_000)
    r = mr.simulate(sc, ["weighted"]).results["weighted"]
    assert r.mean_ms - ms == pytest.approx(0.6 * ms / (2 * 0.4), rel=0.04)
    assert r.latencies_ms.min() == pytest.approx(ms)


def test_lognormal_service_has_the_given_median_and_sigma():
    # Many servers and light load: latency is the service time alone.
    sc = one_model(
        {"distribution": "lognormal", "median_ms": 800.0, "sigma": 0.5},
        servers=1000,
        rate=5.0,
        requests=50_000,
    )
    lat = mr.simulate(sc, ["least_loaded"]).results["least_loaded"].latencies_ms
    assert np.median(lat) == pytest.approx(800.0, rel=0.02)
    assert np.log(lat).std() == pytest.approx(0.5, rel=0.02)


CAPS = st.sampled_from(["code", "chat"])
SERVICES = st.one_of(
    st.builds(
        lambda m, s: {"distribution": "lognormal", "median_ms": m, "sigma": s},
        st.floats(10, 2000),
        st.floats(0, 1.5),
    ),
    st.builds(lambda m: {"distribution": "exponential", "mean_ms": m}, st.floats(10, 2000)),
    st.builds(lambda m: {"distribution": "deterministic", "ms": m}, st.floats(10, 2000)),
)


@st.composite
def scenarios(draw):
    models = [
        {
            "id": f"m{j}",
            "capabilities": draw(st.dictionaries(CAPS, st.floats(0.1, 1.0), min_size=1)),
            "max_concurrent": draw(st.integers(1, 5)),
            "max_queue": draw(st.integers(0, 3)),
            "target_utilization": draw(st.sampled_from([0.5, 0.8, 1.0])),
            "service": draw(SERVICES),
        }
        for j in range(draw(st.integers(1, 4)))
    ]
    agents = [
        {
            "id": f"a{i}",
            "required": draw(st.dictionaries(CAPS, st.floats(0.1, 1.0), max_size=2)),
            "weight": draw(st.floats(0.1, 5.0)),
        }
        for i in range(draw(st.integers(1, 3)))
    ]
    return {
        "requests": draw(st.integers(1, 400)),
        "arrival_rate_per_s": draw(st.floats(0.5, 300.0)),
        "seed": draw(st.integers(0, 2**64 - 1)),
        "max_retries": draw(st.integers(0, 4)),
        "models": models,
        "agents": agents,
    }


@given(scenarios())
def test_outcomes_add_up_and_load_aware_routing_never_overloads(sc):
    report = mr.simulate(sc)
    assert list(report.results) == POLICIES
    for name, r in report.results.items():
        assert r.completed + r.overload_failures + r.rejected == sc["requests"]
        assert len(r.latencies_ms) == r.completed
        util = r.per_model_utilization
        assert list(util) == [m["id"] for m in sc["models"]]
        assert all(0.0 <= u <= 1.0 + 1e-12 for u in util.values())
        assert r.max_queue_length <= max(m["max_queue"] for m in sc["models"])
        if name in LOAD_AWARE:
            assert r.overload_failures == 0
        if r.completed:
            lat = r.latencies_ms
            for q, value in [(50, r.p50_ms), (95, r.p95_ms), (99, r.p99_ms)]:
                assert value == np.percentile(lat, q)
            assert r.mean_ms == pytest.approx(lat.mean(), rel=1e-12)
        else:
            assert math.isnan(r.p99_ms)


def test_runs_are_deterministic_given_the_seed():
    a = mr.simulate("seed_assign_sim", requests=3000, seed=5)
    b = mr.simulate("seed_assign_sim", requests=3000, seed=5)
    c = mr.simulate("seed_assign_sim", requests=3000, seed=6)
    assert a.to_dict() == b.to_dict()
    for name in POLICIES:
        np.testing.assert_array_equal(a.results[name].latencies_ms, b.results[name].latencies_ms)
    assert (
        a.results["weighted"].latencies_ms.tolist() != c.results["weighted"].latencies_ms.tolist()
    )
    assert (a.seed, c.seed) == (5, 6)


def test_policy_selection_and_unknown_policy():
    report = mr.simulate("seed_overload", ["predictive", "weighted", "predictive"])
    assert list(report.results) == ["predictive", "weighted"]
    assert list(mr.simulate("seed_overload", "least_loaded").results) == ["least_loaded"]
    with pytest.raises(ValueError, match="least_loaded, weighted, power_of_two") as e:
        mr.simulate("seed_overload", ["random"])
    assert e.value.field == "policies"
    with pytest.raises(mr.InvalidInputError, match="at least one"):
        mr.simulate("seed_overload", [])


def test_the_seed_overload_case():
    report = mr.simulate("seed_overload")
    base = report.results["capability_only"]
    # All 100 requests are in flight together: 40 run on model-1, the other 60 break it.
    assert (base.completed, base.overload_failures) == (40, 60)
    assert base.per_model_utilization["model-2"] == 0.0
    for name in LOAD_AWARE:
        r = report.results[name]
        assert (r.completed, r.overload_failures, r.rejected) == (100, 0, 0), name


@pytest.mark.parametrize("name", ["seed_assign_sim", "seed_overload", "heterogeneous"])
def test_shipped_scenarios_load_aware_routing_has_no_overload_failures(name):
    report = mr.simulate(name)
    for policy in LOAD_AWARE:
        assert report.results[policy].overload_failures == 0, policy
    base = report.results["capability_only"]
    if name != "seed_assign_sim":
        assert base.overload_failures > 0
    if name == "heterogeneous":
        # Capability-only queues on the popular models: its tail is far longer.
        assert min(report.results[p].p99_ms for p in LOAD_AWARE) < 0.5 * base.p99_ms


def test_report_views():
    report = mr.simulate("seed_assign_sim", requests=2000)
    d = report.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d["results"]) == set(POLICIES)
    assert d["results"]["weighted"]["completed"] == report.results["weighted"].completed
    lines = report.table().splitlines()
    assert lines[0].split()[:4] == ["policy", "P50", "ms", "P95"]
    assert [line.split()[0] for line in lines[2:]] == POLICIES
    assert report._repr_html_().count("<tr>") == 1 + len(POLICIES)
    r = report.results["predictive"]
    with pytest.raises(ValueError):
        r.latencies_ms[0] = 0.0
    with pytest.raises(AttributeError):
        r.p99_ms = 0.0  # type: ignore[misc]
    assert "predictive" in repr(r)


def test_progress_is_reported_and_its_errors_propagate():
    seen: list[float] = []
    mr.simulate("seed_assign_sim", requests=5000, progress=seen.append)
    assert 10 <= len(seen) <= 101 and seen[-1] == 1.0 and seen == sorted(seen)

    class Stop(Exception):
        pass

    def stop(fraction: float) -> None:
        if fraction > 0.2:
            raise Stop

    with pytest.raises(Stop):
        mr.simulate("heterogeneous", progress=stop)
    with pytest.raises(mr.InvalidInputError, match="callable"):
        mr.simulate("seed_overload", progress=3)


def write(tmp_path, doc) -> str:
    path = tmp_path / "broken.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_scenario_errors_name_file_and_field(tmp_path):
    sc = json.loads(
        json.dumps(one_model({"distribution": "lognormal", "sigma": 1}, rate=1, requests=5))
    )
    path = write(tmp_path, sc)
    with pytest.raises(mr.InvalidInputError) as e:
        mr.simulate(path)
    assert e.value.field == "models[0].service.median_ms"
    assert str(e.value) == f"{path}: models[0].service.median_ms: missing field"
    sc["models"][0]["service"] = {"distribution": "exponential", "mean_ms": 5}
    sc["agents"][0]["weight"] = -1
    with pytest.raises(
        mr.InvalidInputError, match=r"broken\.json: agents\[0\]\.weight: must be > 0"
    ):
        mr.simulate(write(tmp_path, sc))
    sc["agents"][0]["weight"] = 1
    sc["models"][0]["max_concurent"] = 3
    with pytest.raises(mr.InvalidInputError, match="unknown field `max_concurent`") as e:
        mr.simulate(write(tmp_path, sc))
    assert e.value.field.startswith("models[0]")
    with pytest.raises(mr.InvalidInputError, match=r"broken\.json: .*line 1"):
        mr.simulate(write(tmp_path, '{"requests": 5,'))
    with pytest.raises(mr.InvalidInputError, match="unknown scenario 'no_such_scenario'") as e:
        mr.simulate("no_such_scenario")
    assert e.value.field == "scenario" and "heterogeneous, outage, seed_assign" in str(e.value)
    with pytest.raises(mr.InvalidInputError, match="no_such_scenario.json: path: cannot read"):
        mr.simulate("no_such_scenario.json")
    with pytest.raises(mr.InvalidInputError, match="^scenario: requests: missing field"):
        mr.simulate({"arrival_rate_per_s": 1.0})
    with pytest.raises(mr.InvalidInputError) as e:
        mr.simulate("seed_overload", requests=0)
    assert e.value.field == "requests"
    with pytest.raises(mr.InvalidInputError) as e:
        mr.simulate("seed_overload", seed=-1)
    assert e.value.field == "seed"


def test_cli_simulate_prints_table_and_p99_sentence(capsys):
    assert main(["simulate", "--no-plot", "--requests", "2000"]) == 0
    out = capsys.readouterr().out
    assert "2,000 requests, 16 models" in out
    for name in POLICIES:
        assert f"\n{name} " in out
    sentence = next(line for line in out.splitlines() if line.startswith("P99 latency:"))
    assert "ms →" in sentence and "overload failures:" in sentence


def test_cli_simulate_writes_the_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "plots" / "latency.png"
    args = ["simulate", "--scenario", "seed_overload", "--policies", "weighted,predictive"]
    assert main([*args, "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "overload failures: 60 with capability_only, 0 with" in out
    assert "least_loaded" not in out
    assert main(["simulate", "--scenario", "nope.json", "--no-plot"]) == 2
    assert "nope.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_retries": 4_000_000_000}, "max_retries"),  # once ran 79 s
        ({"arrival_rate_per_s": 5e-324}, "arrival_rate_per_s"),  # once gave NaN latencies
        ({"arrival_rate_per_s": 1e300}, "arrival_rate_per_s"),
        ({"service": {"distribution": "lognormal", "median_ms": 1e308, "sigma": 1}}, "median_ms"),
        ({"service": {"distribution": "lognormal", "median_ms": 10, "sigma": 50}}, "sigma"),
        ({"service": {"distribution": "exponential", "mean_ms": 1e300}}, "mean_ms"),
        ({"balancer": {"load_weight": 3.0}}, "balancer.load_weight"),
        ({"balancer": {"default_latency_ms": 1e300}}, "balancer.default_latency_ms"),
    ],
)
def test_out_of_range_scenarios_name_the_field_and_the_bound(change, field):
    sc = one_model({"distribution": "exponential", "mean_ms": 5}, rate=10, requests=100)
    if "service" in change:
        sc["models"][0]["service"] = change["service"]
    else:
        sc.update(change)
    with pytest.raises(mr.InvalidInputError, match="must be") as e:
        mr.simulate(sc, ["weighted"])
    assert e.value.field.endswith(field)


def test_the_bounds_themselves_run_to_finite_results():
    sc = one_model(
        {"distribution": "lognormal", "median_ms": 1e9, "sigma": 5}, rate=1e-6, requests=50
    )
    sc["max_retries"] = 100
    report = mr.simulate(sc, ["weighted"])
    r = report.results["weighted"]
    assert all(math.isfinite(x) for x in (r.p50_ms, r.p95_ms, r.p99_ms))


@pytest.mark.parametrize("rate", [1.0, 40.0, 160.0])
@pytest.mark.parametrize("policy", ["least_loaded", "predictive", "weighted", "power_of_two"])
def test_identical_deployments_share_the_traffic(policy, rate):
    """Four equal deployments, one caller: ties once all went to the first model (100 % at low
    rate, 37/34/30/0 % at 40 req/s) and predictive starved a model it had no estimate for.
    Each must now carry a fair share (utilization is proportional to its traffic)."""
    model = {
        "capabilities": {"code": 0.9},
        "max_concurrent": 16,
        "service": {"distribution": "lognormal", "median_ms": 200, "sigma": 0.5},
    }
    sc = {
        "requests": 20_000,
        "arrival_rate_per_s": rate,
        "seed": 11,
        "agents": [{"id": "caller", "required": {"code": 0.5}}],
        "models": [{"id": f"d{j}", **model} for j in range(4)],
    }
    r = mr.simulate(sc, [policy]).results[policy]
    shares = np.array(list(r.per_model_utilization.values()))
    shares = shares / shares.sum()
    # 25 % is fair. Predictive follows noisy latency estimates and probes a stale model only
    # after its estimate has faded (half-life 60 s), so its spread is looser by design.
    floor = 0.15 if policy == "predictive" else 0.18
    assert shares.min() > floor, dict(zip(r.per_model_utilization, shares.round(3)))


MODES = ["none", "eject", "eject_retry"]


def test_outage_scenario_meets_the_targets_and_is_deterministic():
    report = mr.simulate("outage", "predictive")
    runs = ["predictive", "predictive+eject", "predictive+eject_retry"]
    assert list(report.results) == runs
    none, eject, retry = (report.results[name] for name in runs)
    assert [r.handling for r in (none, eject, retry)] == MODES
    assert [r.name for r in (none, eject, retry)] == runs
    assert {r.policy for r in (none, eject, retry)} == {"predictive"}
    assert none.success_rate < 0.99 < eject.success_rate
    assert retry.success_rate >= 0.999
    assert none.failure_retries == eject.failure_retries == 0
    # Extra load from retries within the core budget: 20 % of requests + 10 per second.
    assert retry.failure_retries <= 0.2 * retry.requests + 10.0 * retry.duration_s
    assert retry.p99_ms <= none.p99_ms
    for r in (none, eject, retry):
        assert r.completed + r.failed + r.overload_failures + r.rejected == r.requests
        assert r.success_rate == r.completed / r.requests
        assert r.wasted_calls == r.failed + r.failure_retries + r.overload_failures
        d = r.to_dict()
        assert (d["handling"], d["success_rate"], d["wasted_calls"]) == (
            r.handling,
            r.success_rate,
            r.wasted_calls,
        )
    again = mr.simulate("outage", "predictive")
    assert again.to_dict() == report.to_dict()
    other = mr.simulate("outage", "predictive", seed=43)
    assert other.to_dict() != report.to_dict()
    assert "handling=" not in repr(none)
    assert "handling='eject_retry'" in repr(retry)


def test_failure_handling_modes_can_be_chosen_and_faults_outside_the_window_do_nothing():
    sc = one_model({"distribution": "deterministic", "ms": 10}, servers=4, rate=50, requests=500)
    sc["models"][0]["faults"] = [{"kind": "outage", "from_s": 1000, "to_s": 2000}]
    report = mr.simulate(sc, "weighted")
    assert list(report.results) == ["weighted", "weighted+eject", "weighted+eject_retry"]
    base = mr.simulate(
        {k: v for k, v in sc.items()}
        | {"models": [{k: v for k, v in sc["models"][0].items() if k != "faults"}]},
        "weighted",
    )
    assert list(base.results) == ["weighted"]
    for r in report.results.values():
        np.testing.assert_array_equal(r.latencies_ms, base.results["weighted"].latencies_ms)
        assert (r.success_rate, r.wasted_calls) == (1.0, 0)
    sc["failure_handling"] = ["eject_retry"]
    assert list(mr.simulate(sc, "weighted").results) == ["weighted+eject_retry"]


@pytest.mark.parametrize(
    ("fault", "field"),
    [
        ({"kind": "errors", "from_s": 0, "to_s": 1}, "models[0].faults[0].error_rate"),
        (
            {"kind": "errors", "from_s": 0, "to_s": 1, "error_rate": 2},
            "models[0].faults[0].error_rate",
        ),
        ({"kind": "outage", "from_s": 3, "to_s": 1}, "models[0].faults[0].to_s"),
        ({"kind": "slowdown", "from_s": 0, "to_s": 1, "factor": 0}, "models[0].faults[0].factor"),
        (
            {"kind": "outage", "from_s": 0, "to_s": 1, "retry_after_s": 1},
            "models[0].faults[0].retry_after_s",
        ),
        ({"kind": "bogus", "from_s": 0, "to_s": 1}, "models[0].faults[0].kind"),
    ],
)
def test_bad_fault_fields_name_the_json_path(fault, field):
    sc = one_model({"distribution": "deterministic", "ms": 10}, rate=5, requests=10)
    sc["models"][0]["faults"] = [fault]
    with pytest.raises(mr.InvalidInputError) as e:
        mr.simulate(sc)
    assert e.value.field == field
    assert f"scenario: {field}: " in str(e.value)


def test_cli_simulate_outage_prints_the_failure_handling(capsys):
    argv = ["simulate", "--scenario", "outage", "--policies", "predictive", "--no-plot"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for name in ["predictive", "predictive+eject", "predictive+eject_retry"]:
        assert f"\n{name} " in out
    line = next(x for x in out.splitlines() if x.startswith("predictive: success"))
    assert "with ejection + retries" in line and "retries (" in line
