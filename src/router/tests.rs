use super::*;

fn model(id: &str, code: f64, cap: u64) -> ModelProfile {
    ModelProfile::new(
        id.into(),
        vec![("code".into(), code)],
        8192,
        cap,
        2,
        0.8,
        0.0,
    )
    .unwrap()
}

fn config(strategy: Strategy, load_balancing: bool) -> RouterConfig {
    RouterConfig {
        strategy,
        load_balancing,
        load_weight: 0.5,
        weights: ScoreWeights::default(),
        policy: Policy::Weighted,
    }
}

fn tracker() -> Arc<LoadTracker> {
    let clock = Arc::new(crate::load::ManualClock::new(0.0));
    Arc::new(LoadTracker::new(60.0, clock).unwrap())
}

fn router(models: Vec<ModelProfile>, cfg: RouterConfig) -> Result<Router> {
    Router::new(models, cfg, Feeds::with_load(tracker()))
}

#[test]
fn overloaded_models_are_filtered_and_busy_ones_weighted_down() {
    let models = vec![model("a", 0.9, 4), model("b", 0.8, 4), model("c", 0.85, 4)];
    let router = router(models, config(Strategy::Greedy, true)).unwrap();
    let agent = AgentProfile::new("x".into(), vec![("code".into(), 0.5)], vec![], 0).unwrap();
    let loads = [
        LoadSnapshot {
            active: 5,
            queued: 0,
        }, // overloaded: 5 > 4
        LoadSnapshot {
            active: 0,
            queued: 0,
        },
        LoadSnapshot {
            active: 3,
            queued: 0,
        }, // busy: score × (1 − 0.5 × 0.75)
    ];
    let out = router.assign_with(&[&agent], &loads).unwrap();
    assert_eq!(out.models_filtered, 1);
    assert_eq!(out.placements[0].model, 1);
    assert!((out.avg_utilization - (5.0 / 4.0 + 0.0 + 0.75) / 3.0).abs() < 1e-12);
}

#[test]
fn without_load_balancing_load_is_ignored() {
    let models = vec![model("a", 0.9, 4), model("b", 0.8, 4)];
    let router = router(models, config(Strategy::Greedy, false)).unwrap();
    let agent = AgentProfile::new("x".into(), vec![], vec![], 0).unwrap();
    let loads = [
        LoadSnapshot {
            active: 9,
            queued: 9,
        },
        LoadSnapshot::default(),
    ];
    let out = router.assign_with(&[&agent], &loads).unwrap();
    assert_eq!(out.models_filtered, 0);
    assert_eq!(out.placements[0].model, 0);
}

#[test]
fn bad_configuration_is_rejected() {
    let err = router(vec![], config(Strategy::Optimal, true)).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "models"));
    let dup = vec![model("a", 0.9, 1), model("a", 0.8, 1)];
    assert!(router(dup, config(Strategy::Optimal, true)).is_err());
    let mut cfg = config(Strategy::Optimal, true);
    cfg.load_weight = 1.5;
    let err = router(vec![model("a", 0.9, 1)], cfg).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "load_weight"));
}

fn coder() -> AgentProfile {
    AgentProfile::new("x".into(), vec![("code".into(), 0.5)], vec![], 0).unwrap()
}

#[test]
fn route_spreads_load_and_refuses_when_everything_is_full() {
    let models = vec![model("a", 0.9, 2), model("b", 0.8, 1)];
    let r = router(models, config(Strategy::Optimal, true)).unwrap();
    let mut taken = Vec::new();
    for _ in 0..5 {
        // max_queue is 2 per model: 3 slots + 4 queue places in all.
        taken.push(r.admit(&coder()).unwrap());
    }
    assert_eq!(r.state(0).active() + r.state(1).active(), 3);
    assert!(taken.iter().filter(|(route, _)| route.queued).count() == 2);
    r.admit(&coder()).unwrap();
    r.admit(&coder()).unwrap();
    match r.admit(&coder()) {
        Err(Error::NoCapacity { retry_after_s, .. }) => assert!(retry_after_s > 0.0),
        other => panic!("expected NoCapacity, got {other:?}"),
    }
    assert!(matches!(r.route(&coder()), Err(Error::NoCapacity { .. })));
    for (route, ticket) in taken {
        r.state(route.model).release_ticket(&ticket, 0.0);
    }
}

#[test]
fn capability_only_routing_ignores_load() {
    let models = vec![model("a", 0.9, 1), model("b", 0.8, 1)];
    let r = router(models, config(Strategy::Optimal, false)).unwrap();
    for _ in 0..3 {
        assert_eq!(r.admit(&coder()).unwrap().0.model, 0);
    }
    assert_eq!(r.state(0).active(), 3);
}

#[test]
fn unmet_requirements_are_infeasible() {
    let r = router(vec![model("a", 0.3, 1)], config(Strategy::Optimal, true)).unwrap();
    assert!(matches!(r.route(&coder()), Err(Error::Infeasible(_))));
}

#[test]
fn reject_new_rules_steer_traffic_away() {
    use crate::capacity::ScalingRule;
    let t = tracker();
    let rule = ScalingRule::new(0.5, 0.0, ActionKind::RejectNew).unwrap();
    let cm = Arc::new(CapacityManager::new(vec![rule], t.clone()));
    let models = vec![model("a", 0.9, 4), model("b", 0.5, 4)];
    let feeds = Feeds {
        capacity: Some(cm),
        ..Feeds::with_load(t)
    };
    let r = Router::new(models, config(Strategy::Optimal, true), feeds).unwrap();
    r.state(0).add_active(2, 0.0).unwrap(); // utilization 0.5: rule fires at once
    assert_eq!(r.route(&coder()).unwrap().model, 1);
    r.state(0).add_active(-1, 0.0).unwrap();
    assert_eq!(r.route(&coder()).unwrap().model, 0);
}
