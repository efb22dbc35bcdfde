use super::*;
use crate::limits::Demand;

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
            ..LoadSnapshot::default()
        }, // overloaded: 5 > 4
        LoadSnapshot {
            active: 0,
            queued: 0,
            ..LoadSnapshot::default()
        },
        LoadSnapshot {
            active: 3,
            queued: 0,
            ..LoadSnapshot::default()
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
            ..LoadSnapshot::default()
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
    let _sixth = r.admit(&coder()).unwrap();
    let _seventh = r.admit(&coder()).unwrap();
    match r.admit(&coder()).map(|(route, _)| route) {
        Err(Error::NoCapacity { retry_after_s, .. }) => assert!(retry_after_s > 0.0),
        other => panic!("expected NoCapacity, got {other:?}"),
    }
    assert!(matches!(r.route(&coder()), Err(Error::NoCapacity { .. })));
    let flights: Vec<Flight> = taken.into_iter().map(|(_, f)| f).collect();
    assert_eq!(Flight::end_all(flights, Outcome::Ok), 5);
    assert_eq!(
        r.loads().iter().map(|l| l.active + l.queued).sum::<u64>(),
        2
    ); // the last two
}

#[test]
fn capability_only_routing_ignores_load() {
    let models = vec![model("a", 0.9, 1), model("b", 0.8, 1)];
    let r = router(models, config(Strategy::Optimal, false)).unwrap();
    // Model a has 1 slot and 2 queue places: three requests go there although b is idle.
    let held: Vec<_> = (0..3).map(|_| r.admit(&coder()).unwrap()).collect();
    assert!(held.iter().all(|(route, _)| route.model == 0));
    assert_eq!((r.state(0).active(), r.state(0).queued()), (1, 2));
    // Admission still holds the limits: the fourth is refused, never pushed past them.
    match r.admit(&coder()).map(|(route, _)| route) {
        Err(Error::NoCapacity { message, .. }) => assert!(message.contains("\"a\""), "{message}"),
        other => panic!("expected NoCapacity, got {other:?}"),
    }
    assert_eq!((r.state(0).active(), r.state(0).queued()), (1, 2));
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

// -- the Flight: one request from admission to its end ---------------------------------------

fn manual_router(models: Vec<ModelProfile>) -> (Router, Arc<crate::load::ManualClock>) {
    let clock = Arc::new(crate::load::ManualClock::new(0.0));
    let t = Arc::new(LoadTracker::new(60.0, clock.clone()).unwrap());
    let r = Router::new(models, config(Strategy::Optimal, true), Feeds::with_load(t)).unwrap();
    (r, clock)
}

#[test]
fn a_flight_ends_once_and_feeds_load_ewma_and_statistics() {
    let (r, clock) = manual_router(vec![model("a", 0.9, 2)]);
    let (route, flight) = r.admit(&coder()).unwrap();
    assert_eq!((route.model, route.queued), (0, false));
    assert_eq!((flight.model_id(), flight.agent()), ("a", Some("x")));
    assert_eq!(r.state(0).active(), 1);
    clock.advance(0.25);
    let landing = flight.end(Outcome::Ok);
    assert_eq!(landing.latency_ms, 250.0);
    assert_eq!(r.state(0).active(), 0);
    assert_eq!(r.state(0).latency_ms(), 250.0);
    let model_stats = r.performance().stats("a").unwrap();
    assert_eq!((model_stats.count, model_stats.successes), (1, 1));
    let agent_stats = r.performance().agent_stats("x").unwrap();
    assert_eq!(
        (agent_stats.count, agent_stats.p50_ms.map(f64::round)),
        (1, Some(250.0))
    );
}

#[test]
fn a_dropped_flight_is_cancelled_gives_its_slot_back_and_counts_as_a_failure() {
    let (r, clock) = manual_router(vec![model("a", 0.9, 1)]);
    {
        let (_route, _flight) = r.admit(&coder()).unwrap();
        assert_eq!(r.state(0).active(), 1);
        clock.advance(0.1);
    }
    assert_eq!(r.state(0).active(), 0);
    let stats = r.performance().stats("a").unwrap();
    assert_eq!((stats.count, stats.failures), (1, 1));
    assert!(!Outcome::Cancelled.is_success());
}

#[test]
fn queued_flights_give_back_their_queue_place() {
    // max_concurrent 1, max_queue 2: the second and third requests wait.
    let (r, _) = manual_router(vec![model("a", 0.9, 1)]);
    let flights: Vec<Flight> = (0..3).map(|_| r.admit(&coder()).unwrap().1).collect();
    assert_eq!(flights.iter().filter(|f| f.queued()).count(), 2);
    assert_eq!((r.state(0).active(), r.state(0).queued()), (1, 2));
    assert!(r.admit(&coder()).is_err());
    assert_eq!(Flight::end_all(flights, Outcome::Failed), 3);
    assert_eq!((r.state(0).active(), r.state(0).queued()), (0, 0));
    let stats = r.performance().stats("a").unwrap();
    assert_eq!((stats.count, stats.failures), (3, 3));
}

#[test]
fn tracked_flights_count_whatever_the_limits_and_record_without_an_agent() {
    let (r, clock) = manual_router(vec![model("a", 0.9, 1)]);
    let flights: Vec<Flight> = (0..3).map(|_| r.track(0, None).unwrap()).collect();
    assert_eq!(r.state(0).active(), 3);
    clock.advance(0.05);
    for f in flights {
        assert_eq!(f.agent(), None);
        f.end(Outcome::Ok);
    }
    assert_eq!(r.state(0).active(), 0);
    assert_eq!(r.performance().stats("a").unwrap().successes, 3);
    assert!(r.performance().agent_ids().is_empty());
}

#[test]
fn flights_admitted_in_a_batch_end_in_a_batch() {
    let (r, _) = manual_router(vec![model("a", 0.9, 4)]);
    let clock = r.tracker().clock().clone();
    // 4 slots + 2 queue places: a batch of 10 gets 6.
    let flights = Flight::admit_many(r.state(0), &clock, 10, None).unwrap();
    assert_eq!(flights.len(), 6);
    assert_eq!(flights.iter().filter(|f| f.queued()).count(), 2);
    assert_eq!(Flight::end_all(flights, Outcome::Ok), 6);
    assert_eq!((r.state(0).active(), r.state(0).queued()), (0, 0));
}

/// More contenders than slots, on real threads: the limit is reached, never exceeded, and the
/// surplus is queued or refused. A router without atomic admission fails the peak check.
#[test]
fn concurrent_admission_never_exceeds_the_limits() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Barrier;
    let (r, _) = manual_router(vec![model("a", 0.9, 10)]);
    let r = Arc::new(r);
    let threads = 32;
    let barrier = Arc::new(Barrier::new(threads));
    let peak_active = Arc::new(AtomicU64::new(0));
    let peak_queued = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (r, barrier) = (r.clone(), barrier.clone());
            let (pa, pq, refused) = (peak_active.clone(), peak_queued.clone(), refused.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..200 {
                    match r.admit(&coder()) {
                        Ok((_, flight)) => {
                            let (a, q) = (r.state(0).local_active(), r.state(0).local_queued());
                            pa.fetch_max(a, Ordering::AcqRel);
                            pq.fetch_max(q, Ordering::AcqRel);
                            std::thread::yield_now();
                            flight.end(Outcome::Ok);
                        }
                        Err(Error::NoCapacity { .. }) => {
                            refused.fetch_add(1, Ordering::AcqRel);
                        }
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let (pa, pq) = (
        peak_active.load(Ordering::Acquire),
        peak_queued.load(Ordering::Acquire),
    );
    assert!(pa <= 10 && pq <= 2, "peak active {pa}, queued {pq}");
    assert_eq!(
        pa, 10,
        "the limit was never reached: the test did not contend"
    );
    assert!(refused.load(Ordering::Acquire) > 0 || pq > 0);
    assert_eq!((r.state(0).active(), r.state(0).queued()), (0, 0));
    let stats = r.performance().stats("a").unwrap();
    assert_eq!(
        stats.count + refused.load(Ordering::Acquire),
        (threads * 200) as u64
    );
}

#[test]
fn redistribute_sends_traffic_elsewhere_only_while_another_model_is_open() {
    use crate::capacity::ScalingRule;
    let t = tracker();
    let rule = ScalingRule::new(0.5, 0.0, ActionKind::Redistribute).unwrap();
    let cm = Arc::new(CapacityManager::new(vec![rule], t.clone()));
    let models = vec![model("a", 0.9, 4), model("b", 0.5, 2)];
    let feeds = Feeds {
        capacity: Some(cm),
        ..Feeds::with_load(t)
    };
    let r = Router::new(models, config(Strategy::Optimal, true), feeds).unwrap();
    r.state(0).add_active(2, 0.0).unwrap(); // a at 0.5: redistribute fires
    assert_eq!(r.route(&coder()).unwrap().model, 1);
    r.state(1).add_active(2, 0.0).unwrap(); // b full: a is the only open model, so it serves
    let route = r.route(&coder()).unwrap();
    assert_eq!((route.model, route.queued), (0, false));
}

#[test]
fn an_agent_id_that_returns_with_new_requirements_is_scored_anew() {
    let mut b = model("b", 0.5, 4);
    b.capabilities.push(("chat".into(), 0.9));
    let r = router(vec![model("a", 0.9, 4), b], config(Strategy::Optimal, true)).unwrap();
    assert_eq!(r.route(&coder()).unwrap().model, 0);
    let same_id = AgentProfile::new("x".into(), vec![("chat".into(), 0.5)], vec![], 0).unwrap();
    assert_eq!(r.route(&same_id).unwrap().model, 1);
    assert_eq!(r.route(&coder()).unwrap().model, 0);
}

// -- what the bindings show: reprs and dicts -------------------------------------------------

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

#[test]
fn an_assignment_outcome_by_ids_is_the_rest_body_and_the_reprs() {
    let (r, _) = manual_router(vec![model("a", 0.9, 1), model("b", 0.2, 4)]);
    assert_eq!(
        r.to_string(),
        "Router(models=2, strategy='optimal', load_balancing=True, load_weight=0.5)"
    );
    let agent = |id: &str, level: f64| {
        AgentProfile::new(id.into(), vec![("code".into(), level)], vec![], 0).unwrap()
    };
    let agents = [agent("x", 0.5), agent("y", 0.95), agent("z", 0.1)];
    let refs: Vec<&AgentProfile> = agents.iter().collect();
    let outcome = r.assign(&refs).unwrap();
    let result = outcome.named(&refs, &r.models);
    assert_eq!(r.assign_named(&refs).unwrap(), result);
    let ids: Vec<(&str, &str)> = result
        .assignments
        .iter()
        .map(|a| (a.agent_id.as_str(), a.model_id.as_str()))
        .collect();
    assert_eq!(ids, [("x", "a"), ("z", "b")]);
    assert_eq!(result.unassigned, ["y"]);
    let scores: Vec<f64> = outcome.placements.iter().map(|p| p.score).collect();
    assert_eq!(result.assignments[0].score, scores[0]);
    assert_eq!(
        json(&result),
        format!(
            r#"{{"assignments":[{{"agent_id":"x","model_id":"a","score":{}}},{{"agent_id":"z","model_id":"b","score":{}}}],"total_score":{},"strategy_used":"optimal","load_balancing_enabled":true,"models_filtered":0,"avg_utilization":0.0,"unassigned":["y"]}}"#,
            json(&scores[0]),
            json(&scores[1]),
            json(&outcome.total_score)
        )
    );
    assert_eq!(
        result.assignments[0].to_string(),
        format!(
            "Assignment(agent_id='x', model_id='a', score={})",
            crate::display::py_float(scores[0])
        )
    );
    assert_eq!(
        result.to_string(),
        format!(
            "AssignmentResult(strategy_used='optimal', assigned=2, unassigned=['y'], \
             total_score={})",
            crate::display::py_float(outcome.total_score)
        )
    );
}

#[test]
fn a_pending_guard_takes_its_slot_on_enter_and_ends_once() {
    let (r, clock) = manual_router(vec![model("a", 0.9, 1)]);
    assert!(matches!(
        r.guard("zz", None, 0),
        Err(Error::UnknownModel(_))
    ));
    assert!(matches!(
        Guard::track(r.tracker(), "zz", 0),
        Err(Error::UnknownModel(_))
    ));
    let g = r.guard("a", Some("x"), 0).unwrap();
    assert_eq!(g.to_string(), "InFlight('a', state='not entered')");
    assert!(!g.released() && !g.queued() && g.lease_id().is_none());
    assert_eq!(r.state(0).active(), 0);
    g.enter().unwrap();
    g.enter().unwrap(); // a second enter holds nothing more
    assert_eq!(r.state(0).active(), 1);
    assert_eq!(g.to_string(), "InFlight('a', state='in flight')");
    clock.advance(0.5);
    g.mark_failed();
    g.finish(true); // marked failed: ends as a failure whatever it is released with
    g.finish(true);
    assert!(g.released());
    assert_eq!(g.to_string(), "InFlight('a', state='released')");
    assert_eq!(r.state(0).active(), 0);
    let stats = r.performance().agent_stats("x").unwrap();
    assert_eq!((stats.count, stats.failures), (1, 1));
    g.enter().unwrap(); // entering after the end holds nothing
    assert_eq!(r.state(0).active(), 0);
    // Released before it was entered: nothing was ever held.
    let never = Guard::track(r.tracker(), "a", 0).unwrap();
    never.finish(true);
    assert!(never.released());
    never.enter().unwrap();
    assert_eq!(r.state(0).active(), 0);
    // A tracker's guard counts whatever the limits, and feeds no statistics.
    let over: Vec<Guard> = (0..2)
        .map(|_| Guard::track(r.tracker(), "a", 0).unwrap())
        .collect();
    for g in &over {
        g.enter().unwrap();
    }
    assert_eq!(r.state(0).active(), 2);
    drop(over);
    assert_eq!(r.state(0).active(), 0);
    assert_eq!(r.performance().stats("a").unwrap().count, 1);
}

#[test]
fn admitted_guards_end_together_by_outcome() {
    let (r, clock) = manual_router(vec![model("a", 0.9, 2)]);
    let shared: crate::load::SharedClock = clock;
    let flights = Flight::admit_many(r.state(0), &shared, 3, Some(r.feedback(0, None))).unwrap();
    let guards: Vec<Guard> = flights.into_iter().map(Guard::flying).collect();
    let queued: Vec<bool> = guards.iter().map(Guard::queued).collect();
    assert_eq!(queued, [false, false, true]);
    assert_eq!(guards[0].model_id(), "a");
    assert_eq!(guards[0].to_string(), "InFlight('a', state='in flight')");
    guards[1].mark_failed();
    guards[2].finish(true);
    let refs: Vec<&Guard> = guards.iter().collect();
    assert_eq!(Guard::release_all(&refs, true), 2);
    assert_eq!(Guard::release_all(&refs, true), 0);
    assert!(guards.iter().all(Guard::released));
    assert_eq!((r.state(0).active(), r.state(0).queued()), (0, 0));
    let stats = r.performance().stats("a").unwrap();
    assert_eq!((stats.count, stats.successes, stats.failures), (3, 2, 1));
}

#[test]
fn a_batch_of_guards_is_bounded_and_names_its_model() {
    let (r, _) = manual_router(vec![model("a", 0.9, 2)]);
    let t = r.tracker();
    for n in [-1, guard::MAX_BATCH + 1] {
        let err = Guard::admit_many(t, "a", n).err().unwrap();
        assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "n"));
    }
    assert!(matches!(
        Guard::admit_many(t, "zz", 1),
        Err(Error::UnknownModel(_))
    ));
    assert!(Guard::admit_many(t, "a", 0).unwrap().is_empty());
    let guards = Guard::admit_many(t, "a", 5).unwrap(); // 2 slots + 2 queue places
    assert_eq!(guards.len(), 4);
    assert_eq!((r.state(0).active(), r.state(0).queued()), (2, 2));
    drop(guards); // dropped guards give everything back
    assert_eq!((r.state(0).active(), r.state(0).queued()), (0, 0));
}

#[test]
fn a_router_reads_the_tracker_given_else_the_capacity_managers_else_a_new_one() {
    let (given, other) = (tracker(), tracker());
    let cm = Arc::new(CapacityManager::new(vec![], given.clone()));
    let same = |a: &Arc<LoadTracker>, b: &Arc<LoadTracker>| Arc::ptr_eq(a, b);
    let load = Feeds::load_for(Some(given.clone()), Some(&cm)).unwrap();
    assert!(same(&load, &given));
    assert!(same(&Feeds::load_for(None, Some(&cm)).unwrap(), &given));
    assert!(same(
        &Feeds::load_for(Some(other.clone()), None).unwrap(),
        &other
    ));
    let err = Feeds::load_for(Some(other), Some(&cm)).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "capacity"));
    let fresh = Feeds::load_for(None, None).unwrap();
    assert!(!same(&fresh, &given) && fresh.model_ids().is_empty());
    assert_eq!(fresh.stale_after_s(), 60.0);
}

#[test]
fn each_old_tracker_keyword_warns_with_its_replacement() {
    assert_eq!(
        legacy_keyword_warning("tracker").unwrap(),
        "Router(tracker=...) is deprecated: pass the LoadTracker as load= instead"
    );
    for keyword in &LEGACY_TRACKER_KEYWORDS[1..] {
        assert_eq!(
            legacy_keyword_warning(keyword).unwrap(),
            format!(
                "Router({keyword}=...) is deprecated: give {keyword} to a LoadTracker and pass it as load= instead"
            )
        );
    }
    assert_eq!(legacy_keyword_warning("trackr"), None);
    assert_eq!(legacy_keyword_warning("load"), None);
}

// -- health: ejected and cooling models are passed over ----------------------------------------

#[test]
fn an_ejected_model_is_passed_over_and_a_probe_brings_it_back() {
    let (r, clock) = manual_router(vec![
        model("a", 0.9, 4),
        model("b", 0.8, 4),
        model("c", 0.7, 4),
        model("d", 0.6, 4),
    ]);
    for _ in 0..5 {
        let (_, f) = r.admit(&coder()).unwrap();
        assert_eq!(f.model_id(), "a");
        f.end(Outcome::ServerError);
    }
    assert_eq!(r.health().of(0, 0.0).state, crate::health::State::Ejected);
    assert_eq!(r.route(&coder()).unwrap().model, 1);
    // The ejection ends after 30 s: one request probes a, the next goes elsewhere meanwhile.
    clock.advance(30.0);
    let (route, probe) = r.admit(&coder()).unwrap();
    assert_eq!(route.model, 0);
    let (other, _f) = r.admit(&coder()).unwrap();
    assert_ne!(
        other.model, 0,
        "a second request while the probe is in flight"
    );
    probe.end(Outcome::Ok);
    assert_eq!(r.route(&coder()).unwrap().model, 0);
}

#[test]
fn a_rate_limited_fleet_says_when_to_come_back_and_callers_errors_do_not_count() {
    let (r, clock) = manual_router(vec![model("a", 0.9, 1)]);
    let (_, f) = r.admit(&coder()).unwrap();
    f.end(Outcome::RateLimited {
        retry_after_s: Some(7.0),
    });
    // The only model cools down; with nothing else available the panic threshold applies
    // (health is ignored rather than the fleet emptied), so routing still works.
    assert!(r.health().of(0, 0.0).state == crate::health::State::CoolingDown);
    assert!(r.route(&coder()).is_ok());
    let (_, f) = r.admit(&coder()).unwrap();
    clock.advance(0.5);
    f.end(Outcome::ClientError);
    let stats = r.performance().stats("a").unwrap();
    assert_eq!(
        stats.count, 1,
        "a client error is not the model's: not recorded"
    );
}

#[test]
fn no_capacity_hints_at_the_earliest_return_of_a_model_that_is_out() {
    // Two models; b cools down for 2 s and a is full (1 slot, 2 queue places).
    let (r, _) = manual_router(vec![model("a", 0.9, 1), model("b", 0.8, 1)]);
    r.health().observe(
        1,
        crate::health::Verdict::RateLimited {
            retry_after_s: Some(2.0),
        },
        0.0,
    );
    // One of two available is not below the 50 % panic threshold: b stays out.
    let held: Vec<Flight> = (0..3).map(|_| r.admit(&coder()).unwrap().1).collect();
    assert!(held.iter().all(|f| f.model_id() == "a"));
    match r.admit(&coder()).map(|(route, _)| route) {
        Err(Error::NoCapacity { retry_after_s, .. }) => assert!(retry_after_s <= 2.0),
        other => panic!("expected NoCapacity, got {other:?}"),
    }
}

#[test]
fn outcome_kinds_parse_by_name_and_reject_bad_input() {
    for kind in Outcome::KINDS {
        let retry = (kind == "rate_limited").then_some(1.5);
        assert_eq!(Outcome::parse(kind, retry).unwrap().name(), kind);
    }
    let field = |e: Error| match e {
        Error::InvalidInput { field, message } => (field, message),
        other => panic!("{other:?}"),
    };
    let (f, m) = field(Outcome::parse("exploded", None).unwrap_err());
    assert!(f == "kind" && m.contains("server_error"), "{m}");
    let (f, _) = field(Outcome::parse("rate_limited", Some(-1.0)).unwrap_err());
    assert_eq!(f, "retry_after_s");
    let (f, _) = field(Outcome::parse("server_error", Some(1.0)).unwrap_err());
    assert_eq!(f, "retry_after_s");
}

#[test]
fn batch_assignment_passes_over_ejected_models() {
    let (r, _) = manual_router(vec![
        model("a", 0.9, 4),
        model("b", 0.8, 4),
        model("c", 0.7, 4),
        model("d", 0.6, 4),
    ]);
    for _ in 0..5 {
        r.health()
            .observe(0, crate::health::Verdict::ServerError, 0.0);
    }
    let out = r.assign(&[&coder()]).unwrap();
    assert_eq!(out.models_filtered, 1);
    assert_eq!(out.placements[0].model, 1);
}

fn limited_router(limits: [crate::limits::Limits; 2]) -> (Router, Arc<crate::load::ManualClock>) {
    let clock = Arc::new(crate::load::ManualClock::new(0.0));
    let t = Arc::new(LoadTracker::new(60.0, clock.clone()).unwrap());
    let models = vec![
        model("a", 0.9, 100).with_limits(limits[0]),
        model("b", 0.8, 100).with_limits(limits[1]),
    ];
    let r = Router::new(models, config(Strategy::Greedy, true), Feeds::with_load(t)).unwrap();
    (r, clock)
}

#[test]
fn token_limits_steer_admission_and_refuse_with_the_window_hint() {
    use crate::limits::Limits;
    let (r, clock) = limited_router([
        Limits::new(None, Some(1000), None).unwrap(),
        Limits::new(None, Some(500), None).unwrap(),
    ]);
    let (route, f1) = r.admit_tokens(&coder(), Demand::tokens(900)).unwrap();
    assert_eq!(route.model, 0);
    // 200 more fit only on b; 400 more after that fit nowhere.
    let (route, _f2) = r.admit_tokens(&coder(), Demand::tokens(200)).unwrap();
    assert_eq!(route.model, 1);
    clock.advance(20.0);
    match r.admit_tokens(&coder(), Demand::tokens(400)) {
        Err(Error::NoCapacity {
            retry_after_s,
            message,
        }) => {
            assert!((retry_after_s - 40.0).abs() < 1e-9, "{retry_after_s}");
            assert!(message.contains("tpm"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        r.route_tokens(&coder(), Demand::tokens(400)),
        Err(Error::NoCapacity { .. })
    ));
    // Reported usage frees the window: the 900 were really 300.
    let mut f1 = f1;
    f1.set_usage(250, 50);
    assert_eq!(r.state(0).token_load(20.0).tokens_in_window, 300);
    assert_eq!(
        r.route_tokens(&coder(), Demand::tokens(400)).unwrap().model,
        0
    );
    // Bigger than every model's TPM: an input error naming the limit, never a wait.
    let err = r.admit_tokens(&coder(), Demand::tokens(1001)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "tokens"),
        "{err}"
    );
    assert!(err.to_string().contains("tpm of 1000"), "{err}");
    // Bigger than b's only: a goes on serving it once its window frees.
    clock.advance(40.0);
    assert_eq!(
        r.admit_tokens(&coder(), Demand::tokens(600))
            .unwrap()
            .0
            .model,
        0
    );
}

#[test]
fn tokens_in_flight_go_back_at_the_end_and_utilization_reads_them() {
    use crate::limits::Limits;
    let (r, _clock) = limited_router([
        Limits::new(None, None, Some(1000)).unwrap(),
        Limits::new(None, None, Some(1000)).unwrap(),
    ]);
    let (_, f) = r.admit_tokens(&coder(), Demand::tokens(800)).unwrap();
    let loads = r.loads();
    assert_eq!(
        loads[f.state().id.ends_with('b') as usize].tokens.in_flight,
        800
    );
    let j = r.model_index(f.model_id()).unwrap();
    assert!((r.utilization(j, &loads[j]) - 0.8).abs() < 1e-12);
    // The other model takes the next 800; a third fits nowhere (but would after an end).
    let (_, g) = r.admit_tokens(&coder(), Demand::tokens(800)).unwrap();
    assert_ne!(f.model_id(), g.model_id());
    assert!(matches!(
        r.admit_tokens(&coder(), Demand::tokens(800)),
        Err(Error::NoCapacity { .. })
    ));
    f.end(Outcome::Ok);
    assert!(r.admit_tokens(&coder(), Demand::tokens(800)).is_ok());
    drop(g);
    assert_eq!(
        r.state(1).limiter().in_flight() + r.state(0).limiter().in_flight(),
        0
    );
}

/// A stream that reports its first token teaches TTFT at once (even if it then fails) and,
/// ending with usage, the per-token time after it: one output length suffices, and the
/// measurement wins over what latency alone would fit.
#[test]
fn measured_first_tokens_teach_the_token_timing() {
    let clock = Arc::new(crate::load::ManualClock::new(0.0));
    let t = Arc::new(LoadTracker::new(60.0, clock.clone()).unwrap());
    let r = Router::new(
        vec![model("m", 0.9, 100)],
        config(Strategy::Greedy, true),
        Feeds::with_load(t),
    )
    .unwrap();
    // Latency alone, two output lengths: fits TTFT 200 + 1 ms/token.
    for out in [100u64, 300] {
        let mut f = r.track(0, None).unwrap();
        f.set_usage(10, out);
        clock.advance((200.0 + out as f64) / 1000.0);
        f.end(Outcome::Ok);
    }
    let (a, b) = r.state(0).token_timing();
    assert!(
        (a - 200.0).abs() < 1e-6 && (b - 1.0).abs() < 1e-9,
        "{a} {b}"
    );
    // A stream: first token after 0.5 s, then 80 tokens in 0.4 s; it fails after the first
    // token, and the TTFT is learned anyway.
    let mut f = r.track(0, None).unwrap();
    assert_eq!(f.time_to_first_token_ms(), None);
    clock.advance(0.5);
    assert_eq!(f.first_token(), 500.0);
    clock.advance(0.1);
    assert_eq!(f.first_token(), 500.0, "only the first call counts");
    f.end(Outcome::ServerError);
    assert_eq!(r.state(0).token_timing().0, 500.0);
    let mut f = r.track(0, None).unwrap();
    clock.advance(0.5);
    f.first_token();
    f.set_usage(10, 80);
    clock.advance(0.4);
    f.end(Outcome::Ok);
    let (a, b) = r.state(0).token_timing();
    assert_eq!(a, 500.0);
    assert!((b - 5.0).abs() < 1e-9, "{b}");
    // A time the caller measured: checked, then counted like one seen here.
    let mut f = r.track(0, None).unwrap();
    for bad in [f64::NAN, -1.0, f64::INFINITY] {
        match f.first_token_after(bad) {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "ttft_ms"),
            other => panic!("expected InvalidInput for {bad}, got {other:?}"),
        }
    }
    assert_eq!(f.first_token_after(500.0).unwrap(), 500.0);
    clock.advance(2.0);
    assert_eq!(f.first_token(), 500.0, "only the first report counts");
    f.end(Outcome::Cancelled);
    assert_eq!(r.state(0).token_timing().0, 500.0);
}

#[test]
fn predictive_prices_a_request_by_its_output_tokens() {
    let clock = Arc::new(crate::load::ManualClock::new(0.0));
    let t = Arc::new(LoadTracker::new(60.0, clock.clone()).unwrap());
    let models = vec![model("fast_ttft", 0.9, 100), model("fast_tokens", 0.9, 100)];
    let cfg = RouterConfig {
        policy: Policy::Predictive,
        ..config(Strategy::Greedy, true)
    };
    let r = Router::new(models, cfg, Feeds::with_load(t)).unwrap();
    // fast_ttft: 100 ms + 20 ms/token; fast_tokens: 1000 ms + 2 ms/token.
    let timing = [(100.0, 20.0), (1000.0, 2.0)];
    for (j, (ttft, per_token)) in timing.into_iter().enumerate() {
        for out in [10u64, 200, 50, 400] {
            let mut f = r.track(j, None).unwrap();
            f.set_usage(30, out);
            clock.advance((ttft + per_token * out as f64) / 1000.0);
            f.end(Outcome::Ok);
        }
        let (a, b) = r.state(j).token_timing();
        assert!(
            (a - ttft).abs() < 1e-6 && (b - per_token).abs() < 1e-9,
            "{a} {b}"
        );
    }
    let short = Demand {
        tokens: 40,
        output_tokens: 10,
    };
    let long = Demand {
        tokens: 530,
        output_tokens: 500,
    };
    for _ in 0..20 {
        assert_eq!(r.route_tokens(&coder(), short).unwrap().model, 0);
        assert_eq!(r.route_tokens(&coder(), long).unwrap().model, 1);
    }
}

#[test]
fn affinity_keeps_a_key_on_its_replica_within_the_load_bound() {
    let models: Vec<ModelProfile> = (0..4).map(|j| model(&format!("r{j}"), 0.9, 100)).collect();
    let cfg = RouterConfig {
        policy: Policy::LeastLoaded,
        ..config(Strategy::Greedy, true)
    };
    let r = router(models, cfg)
        .unwrap()
        .with_affinity_epsilon(0.25)
        .unwrap();
    assert!(matches!(
        router(vec![model("x", 0.9, 1)], config(Strategy::Greedy, true))
            .unwrap()
            .with_affinity_epsilon(-1.0),
        Err(Error::InvalidInput { .. })
    ));
    // One request at a time: a key always lands on its home replica.
    let (home, f) = r.admit_affine(&coder(), Demand::default(), "s1").unwrap();
    drop(f);
    for _ in 0..10 {
        assert_eq!(
            r.admit_affine(&coder(), Demand::default(), "s1")
                .unwrap()
                .0
                .model,
            home.model
        );
    }
    // Held requests of one hot key: the home replica fills to the bound, then the key passes
    // on; no admission ever leaves a replica above ⌈(1 + ε)(L + 1) / n⌉.
    let mut held = Vec::new();
    for _ in 0..40 {
        let total: u64 = r.loads().iter().map(|l| l.active).sum();
        let cap = affinity::bounded_cap(total, 4, 0.25);
        let (route, f) = r.admit_affine(&coder(), Demand::default(), "hot").unwrap();
        assert!(r.loads()[route.model].active <= cap);
        held.push(f);
    }
    let loads: Vec<u64> = r.loads().iter().map(|l| l.active).collect();
    assert_eq!(loads.iter().sum::<u64>(), 40);
    assert!(*loads.iter().max().unwrap() <= 13, "{loads:?}");
}
