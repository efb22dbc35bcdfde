//! Oracles: Erlang C for M/M/c, hand-computed small cases, conservation and determinism.

use super::*;
use crate::balancer::Policy;
use crate::error::Error;

/// A scenario with one agent and the given models (JSON objects), `requests` at `rate` per s.
fn scenario(models: &str, requests: u64, rate: f64) -> Scenario {
    let text = format!(
        r#"{{"requests": {requests}, "arrival_rate_per_s": {rate}, "seed": 11,
            "agents": [{{"id": "a", "required": {{"code": 0.1}}}}], "models": [{models}]}}"#
    );
    Scenario::from_json(&text, "test.json").unwrap()
}

fn run(sc: &Scenario, policy: Policy) -> PolicyResult {
    let mut report = simulate(sc, &[policy]).unwrap();
    report.results.remove(0)
}

/// Erlang C mean wait in queue of M/M/c, in the unit of `mean_service`.
fn erlang_c_wait(lambda: f64, mean_service: f64, c: u32) -> f64 {
    let a = lambda * mean_service;
    let rho = a / c as f64;
    let mut term = 1.0; // a^k / k!
    let mut below = 0.0;
    for k in 0..c {
        below += term;
        term *= a / (k + 1) as f64;
    }
    let top = term / (1.0 - rho);
    let p_wait = top / (below + top);
    p_wait * mean_service / (c as f64 - a)
}

#[test]
fn mmc_mean_wait_matches_erlang_c() {
    let (c, mean_ms, rate) = (4, 100.0, 32.0); // rho = 0.8
    let model = format!(
        r#"{{"id": "m", "capabilities": {{"code": 1}}, "max_concurrent": {c}, "max_queue": 1000000000,
            "target_utilization": 1.0, "service": {{"distribution": "exponential", "mean_ms": {mean_ms}}}}}"#
    );
    let sc = scenario(&model, 400_000, rate);
    let expected = erlang_c_wait(rate / 1000.0, mean_ms, c);
    for policy in [
        Policy::CapabilityOnly,
        Policy::LeastLoaded,
        Policy::Predictive,
    ] {
        let r = run(&sc, policy);
        assert_eq!(r.completed, 400_000);
        let wait = r.mean_ms - mean_ms;
        assert!(
            (wait / expected - 1.0).abs() < 0.04,
            "{policy:?}: {wait} vs {expected}"
        );
        assert!(
            (r.avg_utilization - 0.8).abs() < 0.01,
            "{}",
            r.avg_utilization
        );
    }
}

#[test]
fn fail_above_fails_requests_started_above_the_limit() {
    let model = r#"{"id": "m", "capabilities": {"code": 1}, "max_concurrent": 10, "max_queue": 5,
        "fail_above": 4, "service": {"distribution": "deterministic", "ms": 1000}}"#;
    // Ten requests within a few milliseconds: four run, six break the model.
    let r = run(&scenario(model, 10, 10_000.0), Policy::CapabilityOnly);
    assert_eq!((r.completed, r.overload_failures, r.rejected), (4, 6, 0));
}

#[test]
fn retries_wait_for_the_hint_and_count_in_latency() {
    let model = r#"{"id": "m", "capabilities": {"code": 1}, "max_concurrent": 1,
        "service": {"distribution": "deterministic", "ms": 100}}"#;
    let sc = scenario(model, 2, 1_000_000.0);
    let r = run(&sc, Policy::LeastLoaded);
    // No latency observed yet: the hint is the 1000 ms default; the retry then finds a slot.
    assert_eq!(
        (r.completed, r.overload_failures, r.rejected, r.retries),
        (2, 0, 0, 1)
    );
    assert!(
        (r.latencies_ms[1] - 1100.0).abs() < 0.01,
        "{:?}",
        r.latencies_ms
    );
    let mut no_retry = sc.clone();
    no_retry.max_retries = 0;
    let r = run(&no_retry, Policy::LeastLoaded);
    assert_eq!((r.completed, r.rejected), (1, 1));
    // Capability-only sends it to the full model anyway: an overload failure.
    let r = run(&sc, Policy::CapabilityOnly);
    assert_eq!((r.completed, r.overload_failures), (1, 1));
}

#[test]
fn utilization_is_busy_time_over_slots() {
    let model = r#"{"id": "m", "capabilities": {"code": 1}, "max_concurrent": 2,
        "service": {"distribution": "deterministic", "ms": 1000}}"#;
    let r = run(&scenario(model, 1, 1.0), Policy::Weighted);
    let end_ms = r.duration_s * 1000.0;
    assert!((r.per_model_utilization[0] - 1000.0 / (2.0 * end_ms)).abs() < 1e-12);
    assert_eq!(r.p50_ms, 1000.0);
}

fn fleet(requests: u64, rate: f64) -> Scenario {
    let models = r#"
        {"id": "big", "capabilities": {"code": 0.95}, "max_concurrent": 8, "max_queue": 4,
         "service": {"distribution": "lognormal", "median_ms": 300, "sigma": 0.6}},
        {"id": "mid", "capabilities": {"code": 0.8}, "max_concurrent": 6, "max_queue": 4,
         "service": {"distribution": "exponential", "mean_ms": 200}},
        {"id": "small", "capabilities": {"code": 0.6}, "max_concurrent": 12, "max_queue": 8,
         "service": {"distribution": "lognormal", "median_ms": 150, "sigma": 0.4}}"#;
    scenario(models, requests, rate)
}

#[test]
fn outcomes_add_up_and_load_aware_never_overloads() {
    let sc = fleet(20_000, 60.0);
    let report = simulate(&sc, &Policy::ALL).unwrap();
    assert_eq!(report.results.len(), 5);
    for r in &report.results {
        assert_eq!(
            r.completed + r.overload_failures + r.rejected,
            20_000,
            "{:?}",
            r.policy
        );
        assert_eq!(r.latencies_ms.len() as u64, r.completed);
        assert!(r
            .per_model_utilization
            .iter()
            .all(|u| (0.0..=1.0).contains(u)));
        if r.policy.is_load_aware() {
            assert_eq!(r.overload_failures, 0, "{:?}", r.policy);
        } else {
            assert!(r.overload_failures > 0);
        }
    }
}

#[test]
fn runs_are_deterministic_given_the_seed() {
    let sc = fleet(5_000, 60.0);
    let a = simulate(&sc, &Policy::ALL).unwrap();
    assert_eq!(a, simulate(&sc, &Policy::ALL).unwrap());
    let mut other = sc.clone();
    other.seed += 1;
    assert_ne!(
        a.results[0].latencies_ms,
        simulate(&other, &Policy::ALL).unwrap().results[0].latencies_ms
    );
}

#[test]
fn progress_is_bounded_and_can_cancel() {
    let sc = fleet(10_000, 60.0);
    let calls = std::sync::Mutex::new(Vec::new());
    let (_, finished) = simulate_with_progress(&sc, &Policy::ALL, &|f| {
        calls.lock().unwrap().push(f);
        true
    })
    .unwrap();
    let calls = calls.into_inner().unwrap();
    assert!(finished && calls.len() <= 100 && calls.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(calls.last(), Some(&1.0));
    let (report, finished) =
        simulate_with_progress(&sc, &[Policy::Weighted], &|f| f < 0.1).unwrap();
    assert!(!finished && report.results[0].completed < 5_000);
}

#[test]
fn percentiles_interpolate_like_numpy() {
    let sorted = [1.0, 2.0, 4.0, 8.0];
    assert_eq!(percentile(&sorted, 50.0), 3.0);
    assert_eq!(percentile(&sorted, 100.0), 8.0);
    assert!((percentile(&sorted, 90.0) - 6.8).abs() < 1e-12);
    assert!(percentile(&[], 50.0).is_nan());
    assert_eq!(thousands(1234567.25, 1), "1,234,567.2");
    assert_eq!(thousands(-999.0, 0), "-999");
}

/// Selection gives bit for bit what a full sort gives, for any order of the quantiles, on
/// samples with ties, signed zeros, infinities and NaN.
#[test]
fn percentiles_by_selection_match_the_sorted_oracle() {
    use rand::{rngs::SmallRng, Rng, SeedableRng};
    let mut rng = SmallRng::seed_from_u64(7);
    let pool = [
        0.0,
        -0.0,
        1.0,
        1.0,
        2.5,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    for case in 0..3_000 {
        let n = rng.random_range(0..(if case % 10 == 0 { 2_000 } else { 40 }));
        let samples: Vec<f64> = (0..n)
            .map(|_| {
                if rng.random_bool(0.3) {
                    pool[rng.random_range(0..pool.len())]
                } else {
                    rng.random_range(-1e3..1e3)
                }
            })
            .collect();
        let mut sorted = samples.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        let qs: [f64; 5] = std::array::from_fn(|k| match (case + k) % 4 {
            0 => 0.0,
            1 => 100.0,
            _ => rng.random_range(0.0..=100.0),
        });
        let got = percentiles(&mut samples.clone(), qs);
        for (q, g) in qs.iter().zip(got) {
            let want = percentile(&sorted, *q);
            assert!(
                g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                "n={n} q={q}: {g} vs {want}"
            );
        }
    }
}

fn field_of(text: &str) -> (String, String) {
    match Scenario::from_json(text, "x.json") {
        Err(Error::InvalidInput { field, message }) => (field, message),
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn scenario_errors_name_file_and_field() {
    let base = |service: &str| {
        format!(
            r#"{{"requests": 10, "arrival_rate_per_s": 1, "agents": [{{"id": "a"}}],
                "models": [{{"id": "m", "service": {{"distribution": "exponential", "mean_ms": 5}}}},
                           {{"id": "n", "service": {service}}}]}}"#
        )
    };
    let (field, message) = field_of(&base(r#"{"distribution": "lognormal", "sigma": 1}"#));
    assert_eq!(field, "models[1].service.median_ms");
    assert_eq!(
        message,
        "x.json: models[1].service.median_ms: missing field"
    );
    let (field, _) = field_of(&base(r#"{"distribution": "exponential", "mean_ms": -1}"#));
    assert_eq!(field, "models[1].service.mean_ms");
    let (field, message) = field_of(&base(r#"{"distribution": "gamma"}"#));
    assert_eq!(field, "models[1].service.distribution", "{message}");
    let (field, _) = field_of(&base(
        r#"{"distribution": "deterministic", "ms": 1, "sigma": 2}"#,
    ));
    assert_eq!(field, "models[1].service.sigma");
    let (field, _) = field_of(r#"{"requests": 1, "agents": [], "models": []}"#);
    assert_eq!(field, "arrival_rate_per_s");
    let (field, message) = field_of(r#"{"requests": "many"}"#);
    assert_eq!(field, "requests", "{message}");
    let bad_level = base(r#"{"distribution": "deterministic", "ms": 1}"#)
        .replace(r#""id": "n""#, r#""id": "n", "capabilities": {"code": 2}"#);
    assert_eq!(field_of(&bad_level).0, r#"models[1].capabilities["code"]"#);
    let dup = base(r#"{"distribution": "deterministic", "ms": 1}"#)
        .replace(r#""id": "n""#, r#""id": "m""#);
    assert_eq!(field_of(&dup).0, "models[1].id");
    let never = base(r#"{"distribution": "deterministic", "ms": 1}"#)
        .replace(r#""id": "n""#, r#""id": "n", "fail_above": 0"#);
    assert_eq!(field_of(&never).0, "models[1].fail_above");
}

const TWO_MODELS: &str = r#"{"id": "m1", "capabilities": {"code": 1},
    "service": {"distribution": "deterministic", "ms": 10}},
    {"id": "m2", "capabilities": {"code": 1}, "service": {"distribution": "deterministic", "ms": 20}}"#;

#[test]
fn missing_model_fields_take_the_model_defaults() {
    let sc = scenario(TWO_MODELS, 10, 1.0);
    let d = crate::capability::MODEL_DEFAULTS;
    let p = &sc.models[0].profile;
    assert_eq!(
        (p.context_window, p.max_concurrent, p.max_queue),
        (d.context_window, d.max_concurrent, d.max_queue)
    );
    assert_eq!(
        (p.target_utilization, p.cost_per_1k_tokens),
        (d.target_utilization, d.cost_per_1k_tokens)
    );
}

#[test]
fn report_serializes_as_the_python_dict_without_latencies() {
    let sc = scenario(TWO_MODELS, 50, 5.0);
    let report = simulate(&sc, &[Policy::Weighted, Policy::LeastLoaded]).unwrap();
    let text = serde_json::to_string(&report).unwrap();
    assert!(
        text.starts_with(r#"{"description":"","requests":50,"seed":11,"model_ids":["m1","m2"],"results":{"weighted":{"policy":"weighted","handling":"none","p50_ms":"#),
        "{text}"
    );
    assert!(!text.contains("latencies"));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let weighted = &value["results"]["weighted"];
    let r = &report.results[0];
    assert_eq!(weighted["completed"], r.completed);
    assert_eq!(weighted["overload_failures"], r.overload_failures);
    assert_eq!(
        weighted["per_model_utilization"]["m2"],
        r.per_model_utilization[1]
    );
    assert_eq!(weighted.as_object().unwrap().len(), 27);
    let policies: Vec<&String> = value["results"].as_object().unwrap().keys().collect();
    assert_eq!(policies, ["least_loaded", "weighted"]); // serde_json's map is sorted
    let summary = r.summary(&report.model_ids);
    assert_eq!(summary.per_model_utilization[0].0, "m1");
    assert_eq!(
        summary.to_string(),
        "PolicyResult(policy='weighted', p99_ms=20.0, completed=50, overload_failures=0, \
         rejected=0)"
    );
    assert_eq!(
        report.to_string(),
        "SimulationReport(requests=50, seed=11, policies=['weighted', 'least_loaded'])"
    );
}

#[test]
fn html_table_escapes_the_description_and_has_a_row_per_policy() {
    let mut sc = scenario(TWO_MODELS, 20, 5.0);
    sc.description = "a <b> & c".into();
    let report = simulate(&sc, &[Policy::Weighted, Policy::Predictive]).unwrap();
    let html = report.html();
    assert!(html.starts_with("<p>a &lt;b&gt; &amp; c — 20 requests, seed 11</p><table>"));
    assert_eq!(html.matches("<tr>").count(), 3);
    assert_eq!(
        html.matches("<th ").count(),
        SimulationReport::HEADERS.len()
    );
    assert!(html.contains(r#"<td style="text-align:left">predictive</td>"#));
    assert_eq!(escape_html("<&>"), "&lt;&amp;&gt;");
}

#[test]
fn policy_names_parse_with_errors_naming_the_argument() {
    assert_eq!(
        parse_policies("policies", None).unwrap(),
        Policy::ALL.to_vec()
    );
    let names = ["weighted".to_string(), "least_loaded".to_string()];
    assert_eq!(
        parse_policies("policies", Some(&names)).unwrap(),
        vec![Policy::Weighted, Policy::LeastLoaded]
    );
    let err = parse_policies("strategies", Some(&["random".to_string()])).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, message }
            if field == "strategies" && message.contains("unknown policy \"random\"; valid: capability_only")),
        "{err:?}"
    );
    let err = parse_policies("policies", Some(&[])).unwrap_err();
    assert_eq!(
        err,
        Error::invalid("policies", "must name at least one policy")
    );
}

#[test]
fn request_overrides_are_bounded() {
    let mut sc = scenario(TWO_MODELS, 10, 1.0);
    sc.set_requests(7).unwrap();
    assert_eq!(sc.requests, 7);
    for bad in [0, MAX_REQUESTS + 1] {
        let err = sc.set_requests(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "requests"));
    }
    assert_eq!(sc.requests, 7);
}

#[test]
fn progress_reaches_the_calling_thread_and_its_error_cancels_the_runs() {
    let sc = scenario(TWO_MODELS, 20_000, 50.0);
    let caller = std::thread::current().id();
    let mut seen = Vec::new();
    let report = simulate_reporting(&sc, &[Policy::Weighted], |f| {
        assert_eq!(std::thread::current().id(), caller);
        seen.push(f);
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(report.results[0].completed, 20_000);
    assert!(!seen.is_empty() && seen.len() <= 101, "{}", seen.len());
    assert!(seen.windows(2).all(|w| w[0] < w[1]) && *seen.last().unwrap() == 1.0);
    let mut calls = 0;
    let stopped = simulate_reporting(&sc, &Policy::ALL, |_| {
        calls += 1;
        Err("stop")
    });
    assert!(matches!(stopped, Err(Stopped::Caller("stop"))));
    assert_eq!(calls, 1);
}

fn shipped_outage() -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python/modelrouter/scenarios/outage.json");
    Scenario::from_file(&path).unwrap()
}

fn by_mode(report: &SimulationReport, handling: Handling) -> &PolicyResult {
    report
        .results
        .iter()
        .find(|r| r.handling == handling)
        .unwrap()
}

const FAULTY_MODELS: &str = r#"
    {"id": "bad", "capabilities": {"code": 0.9}, "max_concurrent": 8, "max_queue": 8,
     "service": {"distribution": "deterministic", "ms": 100}, "faults": [FAULTS]},
    {"id": "good", "capabilities": {"code": 0.8}, "max_concurrent": 8, "max_queue": 8,
     "service": {"distribution": "deterministic", "ms": 100}}"#;

fn faulty(faults: &str, requests: u64) -> Scenario {
    scenario(&FAULTY_MODELS.replace("FAULTS", faults), requests, 20.0)
}

#[test]
fn faults_outside_their_window_change_nothing() {
    let clean = run(&fleet(3000, 40.0), Policy::Predictive);
    let mut sc = fleet(3000, 40.0);
    sc.models[0].faults = Scenario::from_json(
        &format!(
            r#"{{"requests": 1, "arrival_rate_per_s": 1, "agents": [{{"id": "a"}}], "models": [{}]}}"#,
            FAULTY_MODELS.replace(
                "FAULTS",
                r#"{"kind": "outage", "from_s": 100000, "to_s": 200000},
                   {"kind": "slowdown", "from_s": 100000, "to_s": 200000, "factor": 5}"#
            )
        ),
        "t",
    )
    .unwrap()
    .models[0]
        .faults
        .clone();
    sc.failure_handling = Handling::ALL.to_vec();
    let report = simulate(&sc, &[Policy::Predictive]).unwrap();
    assert_eq!(report.results.len(), 3);
    for r in &report.results {
        assert_eq!(r.latencies_ms, clean.latencies_ms, "{}", r.name());
        assert_eq!((r.failed, r.failure_retries, r.wasted_calls), (0, 0, 0));
        assert_eq!(r.success_rate, 1.0);
    }
}

#[test]
fn an_outage_fails_calls_until_ejected_and_retries_recover_them() {
    // "bad" is the better model and is down from 10 s to 40 s of a 100 s stream.
    let sc = faulty(
        r#"{"kind": "outage", "from_s": 10, "to_s": 40, "fail_after_ms": 50}"#,
        2000,
    );
    assert_eq!(sc.failure_handling, Handling::ALL.to_vec());
    let report = simulate(&sc, &[Policy::Weighted]).unwrap();
    let none = by_mode(&report, Handling::None);
    let eject = by_mode(&report, Handling::Eject);
    let retry = by_mode(&report, Handling::EjectRetry);
    // Without handling every request sent to "bad" in the window fails.
    assert!(none.failed > 100, "{}", none.failed);
    assert_eq!(none.wasted_calls, none.failed);
    // Ejection after 5 consecutive errors, then one probe per ejection end (30 s, then 60 s).
    assert!(eject.failed <= 10, "{}", eject.failed);
    assert_eq!(retry.failed, 0);
    assert_eq!(retry.completed, 2000);
    assert_eq!(retry.failure_retries, retry.wasted_calls);
    for r in [none, eject, retry] {
        assert_eq!(
            r.completed + r.failed + r.overload_failures + r.rejected,
            2000,
            "{}",
            r.name()
        );
    }
    // A retried request's latency includes its failed call.
    assert!(retry.latencies_ms.iter().any(|&l| (l - 150.0).abs() < 1e-9));
}

#[test]
fn error_rates_rate_limits_and_slowdowns_act_inside_their_window() {
    let sc = faulty(
        r#"{"kind": "errors", "from_s": 0, "to_s": 1000, "error_rate": 0.25, "fail_after_ms": 10}"#,
        1000,
    );
    let mut only_none = sc.clone();
    only_none.failure_handling = vec![Handling::None];
    let r = run(&only_none, Policy::CapabilityOnly);
    // Capability-only sends everything to "bad": about a quarter fails.
    assert!(
        (r.failed as f64 / 1000.0 - 0.25).abs() < 0.05,
        "{}",
        r.failed
    );
    let sc = faulty(
        r#"{"kind": "rate_limit", "from_s": 0, "to_s": 1000, "retry_after_s": 5}"#,
        1000,
    );
    let report = simulate(&sc, &[Policy::CapabilityOnly]).unwrap();
    // Without handling every call to "bad" is a 429; with it, each 429 cools "bad" down for
    // 5 s, so only one probe per 5 s is wasted (50 s of traffic: about 10).
    assert_eq!(by_mode(&report, Handling::None).failed, 1000);
    let eject = by_mode(&report, Handling::Eject);
    assert!(eject.failed <= 12, "{}", eject.failed);
    assert_eq!(by_mode(&report, Handling::EjectRetry).completed, 1000);
    let mut sc = faulty(
        r#"{"kind": "slowdown", "from_s": 0, "to_s": 1000, "factor": 3}"#,
        100,
    );
    sc.failure_handling = vec![Handling::None];
    let r = run(&sc, Policy::CapabilityOnly);
    assert_eq!(r.p50_ms, 300.0);
}

#[test]
fn shipped_outage_scenario_meets_the_targets() {
    let sc = shipped_outage();
    assert_eq!(sc.models.len(), 16);
    let report = simulate(&sc, &[Policy::Predictive]).unwrap();
    let none = by_mode(&report, Handling::None);
    let retry = by_mode(&report, Handling::EjectRetry);
    assert!(none.success_rate < 0.99, "{}", none.success_rate);
    assert!(retry.success_rate >= 0.999, "{}", retry.success_rate);
    // The budget: 20 % of the requests plus 10 per second over the run.
    let budget = 0.2 * retry.requests as f64 + 10.0 * retry.duration_s;
    assert!((retry.failure_retries as f64) <= budget);
    assert!(
        retry.p99_ms <= none.p99_ms,
        "{} vs {}",
        retry.p99_ms,
        none.p99_ms
    );
    let again = simulate(&sc, &[Policy::Predictive]).unwrap();
    assert_eq!(report, again);
}

#[test]
fn bad_fault_fields_name_their_path() {
    let cases = [
        (
            r#"{"kind": "errors", "from_s": 0, "to_s": 1}"#,
            "faults[0].error_rate",
            "missing field",
        ),
        (
            r#"{"kind": "errors", "from_s": 0, "to_s": 1, "error_rate": 1.5}"#,
            "faults[0].error_rate",
            "between 0 and 1",
        ),
        (
            r#"{"kind": "outage", "from_s": 5, "to_s": 1}"#,
            "faults[0].to_s",
            "after from_s",
        ),
        (
            r#"{"kind": "outage", "from_s": -1, "to_s": 1}"#,
            "faults[0].from_s",
            "between",
        ),
        (
            r#"{"kind": "outage", "from_s": 0, "to_s": 1, "factor": 2}"#,
            "faults[0].factor",
            "not a parameter",
        ),
        (
            r#"{"kind": "slowdown", "from_s": 0, "to_s": 1}"#,
            "faults[0].factor",
            "missing field",
        ),
        (
            r#"{"kind": "slowdown", "from_s": 0, "to_s": 1, "factor": 0.5}"#,
            "faults[0].factor",
            "between 1 and 1000",
        ),
        (
            r#"{"kind": "rate_limit", "from_s": 0, "to_s": 1, "retry_after_s": 7200}"#,
            "faults[0].retry_after_s",
            "between 0 and 3600",
        ),
        (
            r#"{"kind": "meltdown", "from_s": 0, "to_s": 1}"#,
            "faults[0].kind",
            "unknown variant",
        ),
        (
            r#"{"kind": "outage", "from_s": 0}"#,
            "faults[0].to_s",
            "missing field",
        ),
    ];
    for (fault, field, reason) in cases {
        let text = format!(
            r#"{{"requests": 1, "arrival_rate_per_s": 1, "agents": [{{"id": "a"}}], "models": [{}]}}"#,
            FAULTY_MODELS.replace("FAULTS", fault)
        );
        match Scenario::from_json(&text, "x.json") {
            Err(Error::InvalidInput { field: f, message }) => {
                assert_eq!(f, format!("models[0].{field}"), "{message}");
                assert!(
                    message.starts_with(&format!("x.json: models[0].{field}: ")),
                    "{message}"
                );
                assert!(message.contains(reason), "{message}");
            }
            other => panic!("{fault}: {other:?}"),
        }
    }
    let text = r#"{"requests": 1, "arrival_rate_per_s": 1, "agents": [{"id": "a"}],
        "models": [{"id": "m", "service": {"distribution": "deterministic", "ms": 1}}],
        "failure_handling": ["eject", "panic"]}"#;
    match Scenario::from_json(text, "x.json") {
        Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "failure_handling[1]"),
        other => panic!("{other:?}"),
    }
}

#[test]
#[ignore = "prints the shipped outage scenario's table"]
fn print_outage() {
    let path = std::env::var("OUTAGE_JSON").map_or_else(
        |_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("python/modelrouter/scenarios/outage.json")
        },
        std::path::PathBuf::from,
    );
    let sc = Scenario::from_file(&path).unwrap();
    let report = simulate(&sc, &Policy::ALL).unwrap();
    println!("{}", report.table());
}

/// Two hosted deployments with TPM quotas (and RPM = 6 per 1000 TPM, Azure's rule) and one
/// agent with heavy-tailed prompts, under token-aware or request-count admission.
fn quota_scenario(admission: &str) -> Scenario {
    let model = |id: &str| {
        format!(
            r#"{{"id": "{id}", "capabilities": {{"code": 0.9}}, "max_concurrent": 50,
                "tpm": 60000, "rpm": 360, "ms_per_output_token": 10,
                "service": {{"distribution": "lognormal", "median_ms": 300, "sigma": 0.3}}}}"#
        )
    };
    let text = format!(
        r#"{{"requests": 3000, "arrival_rate_per_s": 8, "seed": 5, "max_retries": 20,
            "admission": "{admission}",
            "agents": [{{"id": "a", "required": {{"code": 0.1}},
                         "prompt_tokens": {{"median": 600, "sigma": 1.0}},
                         "output_tokens": {{"median": 100, "sigma": 0.7}}}}],
            "models": [{}, {}]}}"#,
        model("m1"),
        model("m2")
    );
    Scenario::from_json(&text, "quota.json").unwrap()
}

#[test]
fn token_aware_admission_keeps_every_provider_within_its_quota() {
    let tokens = run(&quota_scenario("tokens"), Policy::LeastLoaded);
    let requests = run(&quota_scenario("requests"), Policy::LeastLoaded);
    let none = run(&quota_scenario("none"), Policy::LeastLoaded);
    assert_eq!(tokens.quota_rejections, 0);
    assert!(
        requests.quota_rejections > 0,
        "{}",
        requests.quota_rejections
    );
    assert!(none.quota_rejections > 0);
    // Demand (~8 req/s × ~1,000 tokens) is above the fleet's 2,000 tokens/s: token-aware
    // admission serves close to the quota, and what it turns away it refuses, not the provider.
    assert!(tokens.tokens_per_s > 1500.0 && tokens.tokens_per_s <= 2000.0 * 1.05);
    assert!(tokens.ttft_p50_ms.is_finite() && tokens.ttft_p99_ms >= tokens.ttft_p50_ms);
    assert!(tokens.p99_ms >= tokens.ttft_p99_ms);
}

#[test]
fn scenarios_without_tokens_run_as_before() {
    // No token law, no quota: the token stream is never drawn from and nothing is refused.
    let sc = scenario(
        r#"{"id": "m", "max_concurrent": 2, "capabilities": {"code": 0.9},
            "service": {"distribution": "deterministic", "ms": 100}}"#,
        200,
        5.0,
    );
    let r = run(&sc, Policy::LeastLoaded);
    assert_eq!((r.quota_rejections, r.tokens_per_s), (0, 0.0));
    assert!((r.ttft_p50_ms - r.p50_ms).abs() < 1e-9);
    assert!(r.completed > 190);
}
