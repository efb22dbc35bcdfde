use super::*;

fn caps(entries: &[(&str, f64)]) -> Vec<(String, f64)> {
    entries.iter().map(|(n, v)| (n.to_string(), *v)).collect()
}

fn model(id: &str, levels: &[(&str, f64)], window: u64, price: f64) -> ModelProfile {
    ModelProfile::new(id.into(), caps(levels), window, 10, 5, 0.8, price).unwrap()
}

fn agent(id: &str, req: &[(&str, f64)], pref: &[(&str, f64)], ctx: u64) -> AgentProfile {
    AgentProfile::new(id.into(), caps(req), caps(pref), ctx).unwrap()
}

#[test]
fn scores_follow_the_documented_formula() {
    let m = model("m", &[("code", 0.9), ("reasoning", 0.5)], 8000, 0.0);
    let a = agent("a", &[("code", 0.7)], &[("reasoning", 2.0)], 2000);
    let cost = cost_matrix(&[&a], &[&m], &ScoreWeights::default()).unwrap();
    let expected = 0.6 * 0.9 + 0.3 * 0.5 + 0.1 * (1.0 - 2000.0 / 8000.0);
    assert!((cost[0] - (1.0 - expected)).abs() < 1e-12);
}

#[test]
fn unmet_requirement_or_context_is_forbidden() {
    let weak = model("weak", &[("code", 0.5)], 100_000, 0.0);
    let small = model("small", &[("code", 0.9)], 1000, 0.0);
    let a = agent("a", &[("code", 0.7)], &[], 4096);
    let cost = cost_matrix(&[&a], &[&weak, &small], &ScoreWeights::default()).unwrap();
    assert_eq!(cost, vec![f64::INFINITY, f64::INFINITY]);
}

#[test]
fn missing_capability_counts_as_zero() {
    let m = model("m", &[("code", 0.9)], 8000, 0.0);
    let a = agent("a", &[("vision", 0.1)], &[], 0);
    let cost = cost_matrix(&[&a], &[&m], &ScoreWeights::default()).unwrap();
    assert_eq!(cost[0], f64::INFINITY);
}

#[test]
fn price_lowers_the_score_of_the_dearer_model() {
    let cheap = model("cheap", &[("code", 0.8)], 8000, 0.1);
    let dear = model("dear", &[("code", 0.8)], 8000, 1.0);
    let a = agent("a", &[("code", 0.5)], &[], 0);
    let w = ScoreWeights::new(0.6, 0.3, 0.1, 0.5).unwrap();
    let cost = cost_matrix(&[&a], &[&cheap, &dear], &w).unwrap();
    assert!(cost[0] < cost[1]);
    assert!((cost[1] - cost[0] - 0.5 * 0.9).abs() < 1e-12);
}

#[test]
fn invalid_profiles_name_the_field() {
    let err = ModelProfile::new("m".into(), caps(&[("code", 1.5)]), 1, 1, 0, 0.8, 0.0);
    assert!(
        matches!(err, Err(Error::InvalidInput { ref field, .. }) if field == "capabilities[\"code\"]")
    );
    let err = AgentProfile::new("a".into(), caps(&[("code", 0.0)]), vec![], 0);
    assert!(
        matches!(err, Err(Error::InvalidInput { ref field, .. }) if field == "required[\"code\"]")
    );
    let err = ModelProfile::new("m".into(), vec![], 1, 1, 0, 1.5, 0.0);
    assert!(
        matches!(err, Err(Error::InvalidInput { ref field, .. }) if field == "target_utilization")
    );
    let m = model("m", &[], 8000, 0.0);
    let err = cost_matrix(&[], &[&m, &m], &ScoreWeights::default());
    assert!(matches!(err, Err(Error::InvalidInput { ref field, .. }) if field == "models"));
}

#[test]
fn dense_shape_mismatch_is_an_error() {
    let p = DenseProfiles {
        n_agents: 2,
        n_models: 1,
        n_capabilities: 2,
        required: &[0.5, 0.0, 0.1],
        preferred: None,
        min_context: None,
        capabilities: &[1.0, 1.0],
        context_window: None,
        cost_per_1k_tokens: None,
    };
    let err = cost_matrix_dense(&p, &ScoreWeights::default());
    assert!(matches!(err, Err(Error::InvalidInput { ref field, .. }) if field == "required"));
}
