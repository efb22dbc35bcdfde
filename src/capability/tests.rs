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

fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

#[test]
fn model_defaults_are_the_documented_values() {
    assert_eq!(
        json(&MODEL_DEFAULTS),
        r#"{"context_window":8192,"max_concurrent":10,"max_queue":0,"target_utilization":0.8,"cost_per_1k_tokens":0.0,"rpm":null,"tpm":null,"max_tokens_in_flight":null}"#
    );
    // Every default is itself a valid model.
    let d = MODEL_DEFAULTS;
    ModelProfile::new(
        "m".into(),
        vec![],
        d.context_window,
        d.max_concurrent,
        d.max_queue,
        d.target_utilization,
        d.cost_per_1k_tokens,
    )
    .unwrap();
}

#[test]
fn profiles_serialize_as_the_python_dicts_with_levels_as_maps() {
    let m = model("m", &[("reasoning", 0.5), ("code", 0.9)], 4096, 0.25);
    assert_eq!(
        json(&m),
        r#"{"id":"m","capabilities":{"code":0.9,"reasoning":0.5},"context_window":4096,"max_concurrent":10,"max_queue":5,"target_utilization":0.8,"cost_per_1k_tokens":0.25,"rpm":null,"tpm":null,"max_tokens_in_flight":null}"#
    );
    let a = agent("a", &[("code", 0.7)], &[("reasoning", 2.0)], 100);
    assert_eq!(
        json(&a),
        r#"{"id":"a","required":{"code":0.7},"preferred":{"reasoning":2.0},"min_context":100}"#
    );
}

#[test]
fn reprs_come_from_display() {
    let m = model("m", &[("code", 0.9)], 4096, 0.0);
    assert_eq!(
        m.to_string(),
        "Model('m', capabilities={'code': 0.9}, context_window=4096, max_concurrent=10, \
         max_queue=5, target_utilization=0.8, cost_per_1k_tokens=0.0)"
    );
    let a = agent("a", &[("code", 0.7)], &[], 0);
    assert_eq!(
        a.to_string(),
        "Agent('a', required={'code': 0.7}, preferred={}, min_context=0)"
    );
    assert_eq!(
        ScoreWeights::default().to_string(),
        "ScoreWeights(required=0.6, preferred=0.3, context=0.1, cost=0.0)"
    );
}

fn field_of(err: Error) -> String {
    match err {
        Error::InvalidInput { field, .. } => field,
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn dense_arrays_check_shapes_against_each_other() {
    let arrays = |agents: Matrix, models: Matrix| DenseArrays {
        agents,
        models,
        preferred: None,
        min_context: None,
        context_window: None,
        cost_per_1k_tokens: None,
    };
    let ok = arrays((vec![0.5, 0.0], 1, 2), (vec![0.9, 0.1, 0.4, 1.0], 2, 2));
    let cost = ok.cost_matrix(&ScoreWeights::default()).unwrap();
    assert_eq!(cost[0], 1.0 - (0.6 * 0.9 + 0.3 + 0.1));
    assert_eq!(cost[1], f64::INFINITY);
    let w = ScoreWeights::default();
    let bad_k = arrays((vec![0.5, 0.0], 1, 2), (vec![0.9], 1, 1));
    assert_eq!(field_of(bad_k.cost_matrix(&w).unwrap_err()), "models");
    let mut bad_pref = ok.clone();
    bad_pref.preferred = Some((vec![1.0; 4], 2, 2));
    assert_eq!(field_of(bad_pref.cost_matrix(&w).unwrap_err()), "preferred");
    let mut bad_ctx = ok.clone();
    bad_ctx.min_context = Some(vec![1.0, 2.0]);
    assert_eq!(
        field_of(bad_ctx.cost_matrix(&w).unwrap_err()),
        "min_context"
    );
}
