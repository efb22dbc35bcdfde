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
        accepting: true,
    }
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
    let mut rng = SmallRng::seed_from_u64(1);
    let mut counts = [0; 3];
    for _ in 0..1000 {
        match choose(
            Policy::PowerOfTwo,
            &cands,
            &BalancerConfig::default(),
            &mut rng,
        ) {
            Decision::Run(j) => counts[j] += 1,
            other => panic!("{other:?}"),
        }
    }
    // Only the pair {0, 1} is ever drawn among open models, and 0 always wins it.
    assert_eq!(counts, [1000, 0, 0]);
}

#[test]
fn policy_names_round_trip() {
    for p in Policy::ALL {
        assert_eq!(p.name().parse::<Policy>().unwrap(), p);
    }
    let err = "random".parse::<Policy>().unwrap_err().to_string();
    assert!(err.contains("least_loaded"), "{err}");
}
