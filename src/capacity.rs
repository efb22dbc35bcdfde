//! CapacityManager: scaling rules that fire only after utilization has stayed at or above a
//! threshold for a duration, and clear as soon as it falls back.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::display::{py_float, py_str};
use crate::error::{parse_choice, Error, Result};
use crate::load::{AtomicF64, LoadTracker, ModelState, SharedClock};

/// What a firing rule asks for, from mildest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Report only.
    AlertOnly,
    /// Ask for more replicas (reported with a suggested count).
    ScaleOut,
    /// Send new work elsewhere while any other model has room; use this one last.
    Redistribute,
    /// Refuse new work on this model until the rule clears.
    RejectNew,
}

impl ActionKind {
    pub const ALL: [ActionKind; 4] = [
        ActionKind::AlertOnly,
        ActionKind::ScaleOut,
        ActionKind::Redistribute,
        ActionKind::RejectNew,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ActionKind::AlertOnly => "alert_only",
            ActionKind::ScaleOut => "scale_out",
            ActionKind::Redistribute => "redistribute",
            ActionKind::RejectNew => "reject_new",
        }
    }
}

impl FromStr for ActionKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        parse_choice("action", "action", s, &ActionKind::ALL, ActionKind::name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScalingRule {
    pub threshold_utilization: f64,
    pub threshold_duration_s: f64,
    pub action: ActionKind,
}

impl ScalingRule {
    pub fn new(
        threshold_utilization: f64,
        threshold_duration_s: f64,
        action: ActionKind,
    ) -> Result<Self> {
        if !(threshold_utilization.is_finite() && threshold_utilization > 0.0) {
            return Err(Error::invalid(
                "threshold_utilization",
                format!("must be a finite number > 0, got {threshold_utilization}"),
            ));
        }
        if !(threshold_duration_s.is_finite() && threshold_duration_s >= 0.0) {
            return Err(Error::invalid(
                "threshold_duration_s",
                format!("must be a finite number >= 0, got {threshold_duration_s}"),
            ));
        }
        Ok(ScalingRule {
            threshold_utilization,
            threshold_duration_s,
            action,
        })
    }
}

/// A rule that is firing for a model now.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingAction {
    pub model_id: String,
    pub action: ActionKind,
    pub rule: ScalingRule,
    pub utilization: f64,
    /// Clock time since which utilization has held at or above the threshold.
    pub since: f64,
    /// For scale_out: replicas needed to bring utilization back to the model's target.
    pub suggested_replicas: u64,
}

/// `ScalingRule(threshold_utilization=0.9, …)`: the Python repr.
impl fmt::Display for ScalingRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ScalingRule(threshold_utilization={}, threshold_duration_s={}, action={})",
            py_float(self.threshold_utilization),
            py_float(self.threshold_duration_s),
            py_str(self.action.name())
        )
    }
}

/// `ScalingAction("m", action="scale_out", utilization=0.950, since=12)`: the Python repr.
impl fmt::Display for ScalingAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ScalingAction({}, action={}, utilization={}, since={})",
            py_str(&self.model_id),
            py_str(self.action.name()),
            py_float((self.utilization * 1e3).round() / 1e3),
            py_float(self.since)
        )
    }
}

/// The Python `ScalingAction.to_dict()`: the action's fields, then its rule's thresholds.
impl Serialize for ScalingAction {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ScalingAction", 7)?;
        s.serialize_field("model_id", &self.model_id)?;
        s.serialize_field("action", &self.action)?;
        s.serialize_field("utilization", &self.utilization)?;
        s.serialize_field("since", &self.since)?;
        s.serialize_field("suggested_replicas", &self.suggested_replicas)?;
        s.serialize_field("threshold_utilization", &self.rule.threshold_utilization)?;
        s.serialize_field("threshold_duration_s", &self.rule.threshold_duration_s)?;
        s.end()
    }
}

/// Per model, per rule: since when the threshold has held (NaN while it does not).
#[derive(Debug)]
pub struct RuleClocks(Vec<AtomicF64>);

#[derive(Debug)]
pub struct CapacityManager {
    rules: Vec<ScalingRule>,
    tracker: Arc<LoadTracker>,
    clocks: RwLock<HashMap<String, Arc<RuleClocks>>>,
}

impl CapacityManager {
    pub fn new(rules: Vec<ScalingRule>, tracker: Arc<LoadTracker>) -> Self {
        CapacityManager {
            rules,
            tracker,
            clocks: RwLock::new(HashMap::new()),
        }
    }

    /// A manager over `tracker`, or over a tracker of its own (60 s staleness, as
    /// `LoadTracker`'s default) on `clock`. Giving both is an input error naming `clock`:
    /// a tracker brings its own clock.
    pub fn with_tracker_or_clock(
        rules: Vec<ScalingRule>,
        tracker: Option<Arc<LoadTracker>>,
        clock: Option<SharedClock>,
    ) -> Result<Self> {
        let tracker = match (tracker, clock) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "clock",
                    "give either a tracker (which has its clock) or a clock, not both",
                ))
            }
            (Some(t), None) => t,
            (None, clock) => {
                let clock = clock.unwrap_or_else(crate::load::system_clock);
                Arc::new(LoadTracker::new(60.0, clock)?)
            }
        };
        Ok(CapacityManager::new(rules, tracker))
    }

    pub fn rules(&self) -> &[ScalingRule] {
        &self.rules
    }

    pub fn tracker(&self) -> &Arc<LoadTracker> {
        &self.tracker
    }

    /// The hold clocks of one model, created on first use; the router caches the handle.
    pub fn clocks_for(&self, model_id: &str) -> Arc<RuleClocks> {
        if let Some(c) = self
            .clocks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(model_id)
        {
            return c.clone();
        }
        let mut map = self.clocks.write().unwrap_or_else(|e| e.into_inner());
        map.entry(model_id.to_string())
            .or_insert_with(|| {
                Arc::new(RuleClocks(
                    self.rules
                        .iter()
                        .map(|_| AtomicF64::new(f64::NAN))
                        .collect(),
                ))
            })
            .clone()
    }

    /// Evaluates every rule for one model now; returns the strongest firing action.
    pub fn check(&self, model_id: &str) -> Result<Option<ScalingAction>> {
        let state = self.tracker.state(model_id)?;
        let clocks = self.clocks_for(model_id);
        Ok(self.evaluate(&state, &clocks))
    }

    /// Stale load counts as unknown: it fires nothing and restarts every hold clock.
    pub fn evaluate(&self, state: &ModelState, clocks: &RuleClocks) -> Option<ScalingAction> {
        let now = self.tracker.now();
        let stale = self.tracker.is_stale(state);
        let load = state.snapshot();
        let utilization = load.utilization();
        let mut strongest: Option<ScalingAction> = None;
        for (rule, since_cell) in self.rules.iter().zip(&clocks.0) {
            if stale || utilization < rule.threshold_utilization {
                since_cell.store(f64::NAN);
                continue;
            }
            let mut since = since_cell.load();
            if since.is_nan() {
                since_cell.store(now);
                since = now;
            }
            if now - since < rule.threshold_duration_s {
                continue;
            }
            if strongest.as_ref().is_some_and(|s| s.action >= rule.action) {
                continue;
            }
            let needed = utilization / load.capacity.target_utilization;
            strongest = Some(ScalingAction {
                model_id: state.id.clone(),
                action: rule.action,
                rule: *rule,
                utilization,
                since,
                suggested_replicas: (needed.ceil() as u64).saturating_sub(1).max(1),
            });
        }
        strongest
    }

    /// Every model the tracker knows, evaluated now; firing ones only.
    pub fn check_all(&self) -> Vec<ScalingAction> {
        self.tracker
            .model_ids()
            .iter()
            .filter_map(|id| self.check(id).ok().flatten())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Capacity, ManualClock};

    fn setup(rules: Vec<ScalingRule>) -> (CapacityManager, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(0.0));
        let tracker = Arc::new(LoadTracker::new(60.0, clock.clone()).unwrap());
        tracker.set_capacity("m", Capacity::new(10, 0, 0.8).unwrap());
        (CapacityManager::new(rules, tracker), clock)
    }

    #[test]
    fn fires_only_after_the_duration_and_clears_when_load_falls() {
        let rule = ScalingRule::new(0.9, 30.0, ActionKind::RejectNew).unwrap();
        let (cm, clock) = setup(vec![rule]);
        cm.tracker().update_load("m", 9).unwrap();
        assert_eq!(cm.check("m").unwrap(), None);
        clock.advance(29.0);
        assert_eq!(cm.check("m").unwrap(), None);
        clock.advance(1.0);
        let fired = cm.check("m").unwrap().unwrap();
        assert_eq!((fired.action, fired.since), (ActionKind::RejectNew, 0.0));
        cm.tracker().update_load("m", -1).unwrap();
        assert_eq!(cm.check("m").unwrap(), None);
        // Back above: the hold starts again from now.
        cm.tracker().update_load("m", 1).unwrap();
        clock.advance(10.0);
        assert_eq!(cm.check("m").unwrap(), None);
    }

    #[test]
    fn a_flap_shorter_than_the_duration_never_fires() {
        let rule = ScalingRule::new(0.5, 10.0, ActionKind::AlertOnly).unwrap();
        let (cm, clock) = setup(vec![rule]);
        for _ in 0..5 {
            cm.tracker().update_load("m", 6).unwrap();
            cm.check("m").unwrap();
            clock.advance(9.0);
            assert_eq!(cm.check("m").unwrap(), None);
            cm.tracker().update_load("m", -6).unwrap();
            cm.check("m").unwrap();
            clock.advance(1.0);
        }
    }

    #[test]
    fn the_strongest_firing_action_wins_and_scale_out_suggests_replicas() {
        let rules = vec![
            ScalingRule::new(0.5, 0.0, ActionKind::ScaleOut).unwrap(),
            ScalingRule::new(0.9, 0.0, ActionKind::Redistribute).unwrap(),
        ];
        let (cm, _) = setup(rules);
        cm.tracker().update_load("m", 6).unwrap();
        let a = cm.check("m").unwrap().unwrap();
        assert_eq!((a.action, a.suggested_replicas), (ActionKind::ScaleOut, 1));
        cm.tracker().update_load("m", 10).unwrap();
        let a = cm.check("m").unwrap().unwrap();
        assert_eq!(a.action, ActionKind::Redistribute);
        // 16 / 10 = 1.6 utilization over a 0.8 target: two replicas' worth, one more needed.
        assert_eq!(a.suggested_replicas, 1);
        assert_eq!(cm.check_all().len(), 1);
    }

    #[test]
    fn stale_load_fires_nothing_and_unknown_models_are_errors() {
        let rule = ScalingRule::new(0.5, 0.0, ActionKind::RejectNew).unwrap();
        let (cm, clock) = setup(vec![rule]);
        cm.tracker().update_load("m", 9).unwrap();
        assert!(cm.check("m").unwrap().is_some());
        clock.advance(61.0);
        assert_eq!(cm.check("m").unwrap(), None);
        assert!(matches!(cm.check("x"), Err(Error::UnknownModel(_))));
        assert!(ScalingRule::new(0.0, 1.0, ActionKind::AlertOnly).is_err());
        assert!(ScalingRule::new(0.5, -1.0, ActionKind::AlertOnly).is_err());
        assert!("explode".parse::<ActionKind>().is_err());
    }

    #[test]
    fn actions_serialize_as_the_python_dict_and_display_as_the_repr() {
        let rule = ScalingRule::new(0.9, 30.0, ActionKind::ScaleOut).unwrap();
        assert_eq!(
            rule.to_string(),
            "ScalingRule(threshold_utilization=0.9, threshold_duration_s=30.0, action='scale_out')"
        );
        let action = ScalingAction {
            model_id: "m".into(),
            action: ActionKind::ScaleOut,
            rule,
            utilization: 0.95,
            since: 12.0,
            suggested_replicas: 2,
        };
        assert_eq!(
            serde_json::to_string(&action).unwrap(),
            r#"{"model_id":"m","action":"scale_out","utilization":0.95,"since":12.0,"suggested_replicas":2,"threshold_utilization":0.9,"threshold_duration_s":30.0}"#
        );
        assert_eq!(
            action.to_string(),
            "ScalingAction('m', action='scale_out', utilization=0.95, since=12.0)"
        );
    }

    #[test]
    fn a_manager_takes_a_tracker_or_a_clock_not_both() {
        let clock = Arc::new(ManualClock::new(5.0));
        let own =
            CapacityManager::with_tracker_or_clock(vec![], None, Some(clock.clone())).unwrap();
        assert_eq!(own.tracker().clock().now(), 5.0);
        let tracker = Arc::new(LoadTracker::new(60.0, clock.clone()).unwrap());
        let shared =
            CapacityManager::with_tracker_or_clock(vec![], Some(tracker.clone()), None).unwrap();
        assert!(Arc::ptr_eq(shared.tracker(), &tracker));
        let err =
            CapacityManager::with_tracker_or_clock(vec![], Some(tracker), Some(clock)).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "clock"));
    }
}
