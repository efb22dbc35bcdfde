use super::*;
use rand::{rngs::SmallRng, SeedableRng};

fn cand(score: f64, active: u64, max_concurrent: u64) -> Candidate {
    Candidate {
        score,
        active,
        queued: 0,
        max_concurrent,
        max_queue: 0,
        target_utilization: 1.0,
        latency_ms: f64::NAN,
        latency_age_ms: 0.0,
        accepting: true,
        limits: Limits::NONE,
        tokens: TokenLoad::default(),
        limit_wait_s: 0.0,
        service_ms: f64::NAN,
        util: 0.0,
    }
    .refreshed()
}

/// How many of `draws` requests each model starts (every draw must start one).
fn counts(policy: Policy, cands: &[Candidate], draws: usize, seed: u64) -> Vec<usize> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut counts = vec![0; cands.len()];
    for _ in 0..draws {
        match choose(policy, cands, &BalancerConfig::default(), &mut rng) {
            Decision::Run(j) => counts[j] += 1,
            other => panic!("{other:?}"),
        }
    }
    counts
}

fn run(policy: Policy, cands: &[Candidate]) -> Decision {
    let mut rng = SmallRng::seed_from_u64(7);
    choose(policy, cands, &BalancerConfig::default(), &mut rng)
}

#[test]
fn capability_only_ignores_load() {
    let cands = [cand(0.9, 10, 10), cand(0.5, 0, 10)];
    assert_eq!(run(Policy::CapabilityOnly, &cands), Decision::Queue(0));
    assert_eq!(run(Policy::LeastLoaded, &cands), Decision::Run(1));
}

#[test]
fn least_loaded_and_weighted_follow_their_formulas() {
    let cands = [cand(0.9, 6, 10), cand(0.6, 2, 10), cand(0.8, 2, 10)];
    assert_eq!(run(Policy::LeastLoaded, &cands), Decision::Run(2));
    // weighted: 0.9·(1−0.5·0.6)=0.63, 0.6·0.9=0.54, 0.8·0.9=0.72
    assert_eq!(run(Policy::Weighted, &cands), Decision::Run(2));
}

#[test]
fn models_below_target_are_preferred() {
    let mut busy = cand(0.9, 9, 10);
    busy.target_utilization = 0.8;
    let mut calm = cand(0.2, 1, 10);
    calm.target_utilization = 0.8;
    assert_eq!(run(Policy::Weighted, &[busy, calm]), Decision::Run(1));
    // Over target but with a free slot still beats queueing.
    assert_eq!(run(Policy::Weighted, &[busy]), Decision::Run(0));
}

#[test]
fn full_fleet_queues_then_refuses_with_a_hint() {
    let mut a = cand(0.9, 4, 4);
    a.max_queue = 2;
    a.latency_ms = 200.0;
    assert_eq!(run(Policy::Predictive, &[a]), Decision::Queue(0));
    a.queued = 2;
    match run(Policy::Predictive, &[a]) {
        Decision::NoCapacity { retry_after_s } => {
            // 3 requests ahead of a free slot over 4 slots of 200 ms each.
            assert!((retry_after_s - 0.15).abs() < 1e-12, "{retry_after_s}");
        }
        other => panic!("expected NoCapacity, got {other:?}"),
    }
}

#[test]
fn infeasible_and_refusing_models_are_never_chosen() {
    let mut refusing = cand(0.9, 0, 4);
    refusing.accepting = false;
    let cands = [cand(f64::NEG_INFINITY, 0, 4), refusing, cand(0.1, 3, 4)];
    for policy in Policy::ALL.into_iter().filter(|p| p.is_load_aware()) {
        assert_eq!(run(policy, &cands), Decision::Run(2), "{policy:?}");
    }
    assert_eq!(
        run(Policy::Weighted, &cands[..1]),
        Decision::NoEligibleModel
    );
}

#[test]
fn power_of_two_prefers_the_less_busy_of_two_and_never_a_full_one() {
    let cands = [cand(0.8, 0, 10), cand(0.8, 5, 10), cand(0.8, 10, 10)];
    // Only the pair {0, 1} is ever drawn among open models, and 0 always wins it.
    assert_eq!(counts(Policy::PowerOfTwo, &cands, 1000, 1), [1000, 0, 0]);
}

/// P2C draws two distinct open models uniformly and keeps the better. With distinct weights the
/// k-th best (0-based) of n wins exactly the pairs it forms with the n−1−k worse ones:
/// P(k) = (n − 1 − k) / C(n, 2), and the worst is never chosen.
#[test]
fn power_of_two_samples_pairs_uniformly() {
    let cands = [
        cand(0.9, 0, 10),
        cand(0.7, 0, 10),
        cand(0.5, 0, 10),
        cand(0.3, 0, 10),
    ];
    let draws = 120_000;
    let counts = counts(Policy::PowerOfTwo, &cands, draws, 11);
    let pairs = 6.0;
    for (k, &c) in counts.iter().enumerate() {
        let expected = (3 - k) as f64 / pairs;
        let seen = c as f64 / draws as f64;
        // 5 standard errors of a binomial proportion at this sample size.
        let tolerance = 5.0 * (expected * (1.0 - expected) / draws as f64).sqrt();
        assert!(
            (seen - expected).abs() <= tolerance,
            "model {k}: {seen} vs {expected}"
        );
    }
    assert_eq!(counts[3], 0);
}

#[test]
fn predictive_picks_the_soonest_finish_among_several_open_models() {
    let mut a = cand(0.9, 1, 4);
    a.latency_ms = 300.0;
    let mut b = cand(0.5, 2, 4);
    b.latency_ms = 100.0;
    let mut c = cand(0.7, 0, 4);
    c.latency_ms = 200.0;
    // All have a free slot: the prediction is each one's own latency.
    assert_eq!(run(Policy::Predictive, &[a, b, c]), Decision::Run(1));
    // A model with no latency yet is assumed a little better than the fleet's best (0.9 × 300
    // ms): a cold model is tried at once.
    let unknown = cand(0.95, 0, 4);
    let mut slow = c;
    slow.latency_ms = 400.0;
    assert_eq!(
        run(Policy::Predictive, &[a, unknown, slow]),
        Decision::Run(1)
    );
    b.latency_ms = 250.0;
    assert_eq!(run(Policy::Predictive, &[a, b, c]), Decision::Run(2));
}

#[test]
fn a_stale_latency_estimate_fades_toward_the_fleets_best() {
    let config = BalancerConfig::default();
    let h = config.stale_latency_half_life_ms;
    let mut fresh = cand(0.5, 0, 4);
    fresh.latency_ms = 100.0;
    let mut stale = cand(0.5, 0, 4);
    stale.latency_ms = 900.0;
    let fleet = fleet_latency(&[fresh, stale]);
    assert_eq!(config.estimate(&stale, &fleet), 900.0);
    let prior = OPTIMISTIC_PRIOR * 100.0;
    stale.latency_age_ms = h;
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(close(
        config.estimate(&stale, &fleet),
        prior + (900.0 - prior) / 2.0
    ));
    stale.latency_age_ms = 2.0 * h;
    assert!(close(
        config.estimate(&stale, &fleet),
        prior + (900.0 - prior) / 4.0
    ));
    assert!(close(config.estimate(&cand(0.5, 0, 4), &fleet), prior)); // cold
                                                                      // Fresh evidence keeps its weight: the slow model loses until its estimate is old.
    stale.latency_age_ms = 0.0;
    assert_eq!(run(Policy::Predictive, &[fresh, stale]), Decision::Run(0));
    // Long unused, the slow model is probed again: its fresh sample will decide.
    stale.latency_age_ms = 7.0 * h; // 9× slower: it crosses the best after ~6.3 half-lives
    assert_eq!(run(Policy::Predictive, &[fresh, stale]), Decision::Run(1));
}

/// Equal models share traffic: ties are broken uniformly, not always to the first.
#[test]
fn ties_are_broken_uniformly() {
    let cands = [cand(0.8, 0, 10); 4];
    let draws = 40_000;
    for policy in [
        Policy::LeastLoaded,
        Policy::Weighted,
        Policy::Predictive,
        Policy::CapabilityOnly,
    ] {
        let counts = counts(policy, &cands, draws, 5);
        let tolerance = 5.0 * (0.25 * 0.75 / draws as f64).sqrt();
        for &c in &counts {
            let share = c as f64 / draws as f64;
            assert!((share - 0.25).abs() < tolerance, "{policy:?}: {counts:?}");
        }
    }
}

#[test]
fn policy_names_round_trip() {
    for p in Policy::ALL {
        assert_eq!(p.name().parse::<Policy>().unwrap(), p);
    }
    let err = "random".parse::<Policy>().unwrap_err().to_string();
    assert!(err.contains("least_loaded"), "{err}");
}

// -- LoadBalancer over a live tracker ---------------------------------------------------------

fn balancer_over(limits: &[(&str, u64)]) -> LoadBalancer {
    let clock = Arc::new(crate::load::ManualClock::new(0.0));
    let tracker = Arc::new(LoadTracker::new(60.0, clock).unwrap());
    for (id, cap) in limits {
        tracker.set_capacity(id, Capacity::new(*cap, 1, 0.8).unwrap());
    }
    LoadBalancer::new(
        tracker,
        Policy::Weighted,
        BalancerConfig::new(0.5, 1.0).unwrap(),
    )
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn load_balancer_weights_filters_and_chooses_on_live_load() {
    let lb = balancer_over(&[("a", 4), ("b", 4)]);
    lb.tracker().update_load("a", 2).unwrap();
    let w = lb.weighted_scores(&ids(&["a", "b"]), &[0.8, 0.6]).unwrap();
    assert_eq!(w, vec![0.8 * (1.0 - 0.5 * 0.5), 0.6]);
    // 0.7 × (1 − 0.5 × 0.5) = 0.525 < 0.6: the busier model loses although it scores higher.
    assert_eq!(lb.choose(&ids(&["a", "b"]), &[0.7, 0.6]).unwrap(), 1);
    assert_eq!(lb.choose(&ids(&["a", "b"]), &[0.9, 0.6]).unwrap(), 0);
    lb.tracker().update_load("a", 3).unwrap(); // 5 > 4: overloaded
    assert_eq!(lb.filter(&ids(&["a", "b"])).unwrap(), vec![false, true]);
    assert_eq!(
        lb.available(ids(&["b", "a", "b"])).unwrap(),
        ids(&["b", "b"])
    );
    assert!(matches!(
        lb.available(ids(&["a", "zz"])),
        Err(Error::UnknownModel(_))
    ));
    let w = lb.weighted_scores(&ids(&["a", "b"]), &[0.8, 0.6]).unwrap();
    assert_eq!(w[0], f64::NEG_INFINITY);
}

#[test]
fn load_balancer_rejects_bad_input_naming_the_field() {
    let lb = balancer_over(&[("a", 1)]);
    let field = |e: Error| match e {
        Error::InvalidInput { field, .. } => field,
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    assert_eq!(
        field(lb.choose(&ids(&["a"]), &[f64::NAN]).unwrap_err()),
        "scores"
    );
    assert_eq!(
        field(lb.choose(&ids(&["a"]), &[1.0, 2.0]).unwrap_err()),
        "scores"
    );
    assert!(matches!(
        lb.choose(&ids(&["zz"]), &[1.0]),
        Err(Error::UnknownModel(_))
    ));
    assert!(matches!(
        lb.choose(&ids(&["a"]), &[f64::NEG_INFINITY]),
        Err(Error::Infeasible(_))
    ));
    assert_eq!(
        field(BalancerConfig::new(1.5, 1.0).unwrap_err()),
        "load_weight"
    );
    assert_eq!(
        field(BalancerConfig::new(0.5, -1.0).unwrap_err()),
        "active_request_bias"
    );
}

#[test]
fn a_full_fleet_is_no_capacity_with_a_retry_hint() {
    let lb = balancer_over(&[("a", 1)]);
    lb.tracker().update_load("a", 1).unwrap();
    lb.tracker().update_queue("a", 1).unwrap();
    match lb.choose(&ids(&["a"]), &[0.5]) {
        Err(Error::NoCapacity { retry_after_s, .. }) => assert!(retry_after_s > 0.0),
        other => panic!("expected NoCapacity, got {other:?}"),
    }
}

#[test]
fn one_weighted_score_formula() {
    assert!((weighted_score(0.8, 0.5, 0.5) - 0.6).abs() < 1e-15);
    assert_eq!(weighted_score(0.8, 0.0, 0.9), 0.8);
    let cap = Capacity::new(4, 2, 0.5).unwrap();
    let none = TokenLoad::default();
    assert_eq!(cap.utilization(3, &none), 0.75);
    assert!(cap.is_over_target(3, &none) && !cap.is_over_target(2, &none));
    // With token limits, utilization is the highest fraction of any of them.
    let limits = Limits::new(Some(100), Some(1000), Some(400)).unwrap();
    let cap = cap.with_limits(limits);
    let tokens = |in_flight, requests_in_window, tokens_in_window| TokenLoad {
        in_flight,
        requests_in_window,
        tokens_in_window,
    };
    assert_eq!(cap.utilization(1, &tokens(300, 10, 100)), 0.75);
    assert_eq!(cap.utilization(1, &tokens(0, 90, 100)), 0.9);
    assert_eq!(cap.utilization(1, &tokens(0, 10, 950)), 0.95);
    assert_eq!(cap.utilization(3, &tokens(0, 10, 100)), 0.75);
    assert!(cap.is_overloaded(5, 0) && cap.is_overloaded(4, 3) && !cap.is_overloaded(4, 2));
}
