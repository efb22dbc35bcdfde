//! Checks against exhaustive search (tiny) and a negative-cycle certificate (medium). Costs are
//! small integers so every sum is exact and objectives compare with `==`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::lex::{Keys, Lex};
use super::*;

const INF: f64 = f64::INFINITY;
use super::solver::Cache;
use UnassignedPolicy::{MaxCardinality, MinCost};
const METHODS: [Method; 8] = [
    Method::Auto,
    Method::Agents {
        cached: Cache::Columns,
    },
    Method::Agents {
        cached: Cache::Rows,
    },
    Method::Agents { cached: Cache::Off },
    Method::Types,
    Method::Warm,
    Method::Sampled,
    Method::Best,
];

/// An instance whose agents are drawn from a few distinct rows (agent types).
fn typed_instance(rng: &mut StdRng, n: usize, m: usize) -> (Vec<f64>, Vec<usize>) {
    let n_types = rng.random_range(1..=n.clamp(1, 4));
    let (rows, caps) = random_instance(rng, n_types, m);
    let cost = (0..n)
        .flat_map(|_| {
            let t = rng.random_range(0..n_types);
            rows[t * m..(t + 1) * m].to_vec()
        })
        .collect();
    (cost, caps)
}

fn random_instance(rng: &mut StdRng, n: usize, m: usize) -> (Vec<f64>, Vec<usize>) {
    let p_inf = rng.random_range(0.0..0.5);
    let negative = rng.random_bool(0.5);
    let cost = (0..n * m)
        .map(|_| {
            if rng.random_bool(p_inf) {
                INF
            } else if negative {
                rng.random_range(-6..=3) as f64
            } else {
                rng.random_range(0..=9) as f64
            }
        })
        .collect();
    let caps = (0..m).map(|_| rng.random_range(0..=3)).collect();
    (cost, caps)
}

/// (placed, cost) of the best placement, by enumerating every agent's choice.
fn brute_force(
    cost: &[f64],
    n: usize,
    m: usize,
    caps: &[usize],
    policy: UnassignedPolicy,
) -> (usize, f64) {
    fn better(a: (usize, f64), b: (usize, f64), policy: UnassignedPolicy) -> bool {
        match policy {
            MaxCardinality => a.0 > b.0 || (a.0 == b.0 && a.1 < b.1),
            MinCost => a.1 < b.1 || (a.1 == b.1 && a.0 > b.0),
        }
    }
    #[allow(clippy::too_many_arguments)]
    fn go(
        i: usize,
        cost: &[f64],
        n: usize,
        m: usize,
        load: &mut [usize],
        caps: &[usize],
        cur: (usize, f64),
        best: &mut (usize, f64),
        policy: UnassignedPolicy,
    ) {
        if i == n {
            if better(cur, *best, policy) {
                *best = cur;
            }
            return;
        }
        go(i + 1, cost, n, m, load, caps, cur, best, policy);
        for j in 0..m {
            let c = cost[i * m + j];
            if c.is_finite() && load[j] < caps[j] {
                load[j] += 1;
                go(
                    i + 1,
                    cost,
                    n,
                    m,
                    load,
                    caps,
                    (cur.0 + 1, cur.1 + c),
                    best,
                    policy,
                );
                load[j] -= 1;
            }
        }
    }
    let mut best = (0, 0.0);
    go(
        0,
        cost,
        n,
        m,
        &mut vec![0; m],
        caps,
        (0, 0.0),
        &mut best,
        policy,
    );
    best
}

/// Feasibility of a returned assignment; returns (placed, recomputed cost).
fn check_feasible(
    res: &CapacitatedAssignment,
    cost: &[f64],
    n: usize,
    m: usize,
    caps: &[usize],
) -> (usize, f64) {
    assert_eq!(res.model_of.len(), n);
    let mut load = vec![0; m];
    let (mut placed, mut total) = (0, 0.0);
    for (i, &j) in res.model_of.iter().enumerate() {
        if j < 0 {
            assert_eq!(j, -1);
            continue;
        }
        let j = j as usize;
        assert!(j < m);
        assert!(cost[i * m + j].is_finite(), "forbidden pair used");
        load[j] += 1;
        placed += 1;
        total += cost[i * m + j];
    }
    for j in 0..m {
        assert!(load[j] <= caps[j], "capacity exceeded");
    }
    assert_eq!(total, res.total_cost);
    (placed, total)
}

/// True when the residual graph (models, unassigned node U, sink T) has a negative cycle,
/// i.e. the assignment is not optimal for its policy. Bellman-Ford in exact Lex arithmetic.
fn has_negative_cycle(
    res: &CapacitatedAssignment,
    cost: &[f64],
    m: usize,
    caps: &[usize],
    policy: UnassignedPolicy,
) -> bool {
    let keys = Keys::new(cost, m, policy);
    let (u, t, nodes) = (m, m + 1, m + 2);
    let mut arc = vec![Lex::INF; nodes * nodes];
    let mut load = vec![0; m + 1];
    for (k, &j) in res.model_of.iter().enumerate() {
        let v = if j < 0 { u } else { j as usize };
        load[v] += 1;
        for w in 0..=m {
            let kw = keys.key(k, w);
            if w != v && kw.is_finite() {
                let c = kw - keys.key(k, v);
                if c.lt(arc[v * nodes + w]) {
                    arc[v * nodes + w] = c;
                }
            }
        }
    }
    for v in 0..=m {
        if v == u || load[v] < caps[v] {
            arc[v * nodes + t] = Lex::ZERO;
        }
        if load[v] > 0 {
            arc[t * nodes + v] = Lex::ZERO;
        }
    }
    let mut dist = vec![Lex::ZERO; nodes];
    for _ in 0..=nodes {
        let mut changed = false;
        for v in 0..nodes {
            for w in 0..nodes {
                let c = arc[v * nodes + w];
                if c.is_finite() && (dist[v] + c).lt(dist[w]) {
                    dist[w] = dist[v] + c;
                    changed = true;
                }
            }
        }
        if !changed {
            return false;
        }
    }
    true
}

#[test]
fn matches_brute_force_on_tiny_instances() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..3000 {
        let n = rng.random_range(0..=6);
        let m = rng.random_range(0..=3);
        let (cost, caps) = if rng.random_bool(0.5) {
            random_instance(&mut rng, n, m)
        } else {
            typed_instance(&mut rng, n, m)
        };
        for policy in [MaxCardinality, MinCost] {
            let want = brute_force(&cost, n, m, &caps, policy);
            for method in METHODS {
                let res = assign_with(&cost, n, m, &caps, policy, method).unwrap();
                let got = check_feasible(&res, &cost, n, m, &caps);
                assert_eq!(
                    got, want,
                    "{policy:?} {method:?} cost={cost:?} caps={caps:?} res={res:?}"
                );
            }
        }
    }
}

#[test]
fn optimal_on_medium_instances_by_certificate() {
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..300 {
        let n = rng.random_range(1..=60);
        let m = rng.random_range(1..=8);
        let (cost, mut caps) = if rng.random_bool(0.5) {
            random_instance(&mut rng, n, m)
        } else {
            typed_instance(&mut rng, n, m)
        };
        for c in &mut caps {
            *c = rng.random_range(0..=2 * n / m + 1);
        }
        for policy in [MaxCardinality, MinCost] {
            for method in METHODS {
                let res = assign_with(&cost, n, m, &caps, policy, method).unwrap();
                check_feasible(&res, &cost, n, m, &caps);
                assert!(
                    !has_negative_cycle(&res, &cost, m, &caps, policy),
                    "{policy:?} {method:?} not optimal"
                );
            }
        }
    }
}

#[test]
fn certificate_detects_a_suboptimal_assignment() {
    // Swapping the two agents saves 2: the checker must see that cycle.
    let cost = [1.0, 2.0, 2.0, 1.0];
    let bad = CapacitatedAssignment {
        model_of: vec![1, 0],
        total_cost: 4.0,
    };
    assert!(has_negative_cycle(&bad, &cost, 2, &[1, 1], MaxCardinality));
    let good = assign_capacitated(&cost, 2, 2, &[1, 1], MaxCardinality).unwrap();
    assert_eq!(good.model_of, vec![0, 1]);
    assert!(!has_negative_cycle(
        &good,
        &cost,
        2,
        &[1, 1],
        MaxCardinality
    ));
}

#[test]
fn policies_differ_on_positive_costs_and_ties() {
    // Model 0 costs 5 for agent 0 and 0 for agent 1: MaxCardinality places both (cap 2),
    // MinCost leaves out the positive one but places the zero-cost one (tie → place).
    let cost = [5.0, 0.0];
    let max = assign_capacitated(&cost, 2, 1, &[2], MaxCardinality).unwrap();
    assert_eq!(max.model_of, vec![0, 0]);
    let min = assign_capacitated(&cost, 2, 1, &[2], MinCost).unwrap();
    assert_eq!(min.model_of, vec![-1, 0]);
    assert_eq!(min.total_cost, 0.0);
}

#[test]
fn max_cardinality_prefers_more_placements_over_cost() {
    // Agent 0 alone on model 0 is cheapest, but then agent 1 has nowhere to go.
    let cost = [0.0, 100.0, 1.0, INF];
    let res = assign_capacitated(&cost, 2, 2, &[1, 1], MaxCardinality).unwrap();
    assert_eq!(res.model_of, vec![1, 0]);
    assert_eq!(res.total_cost, 101.0);
}

#[test]
fn seed_case_five_agents_three_models() {
    let cost = [
        0.1, 0.5, 0.9, //
        0.4, 0.2, 0.8, //
        0.3, 0.3, 0.3, //
        0.9, 0.1, 0.5, //
        0.2, 0.6, 0.4,
    ];
    let res = assign_capacitated(&cost, 5, 3, &[5, 3, 8], MaxCardinality).unwrap();
    // Capacities are loose, so every agent takes its own cheapest model.
    assert_eq!(res.model_of, vec![0, 1, 0, 1, 0]);
    assert!((res.total_cost - 0.9).abs() < 1e-12);
}

#[test]
fn empty_shapes() {
    let res = assign_capacitated(&[], 0, 3, &[1, 1, 1], MaxCardinality).unwrap();
    assert!(res.model_of.is_empty());
    let res = assign_capacitated(&[], 4, 0, &[], MinCost).unwrap();
    assert_eq!(res.model_of, vec![-1; 4]);
    assert_eq!(res.total_cost, 0.0);
}

#[test]
fn rejects_bad_input() {
    let field = |e: Error| match e {
        Error::InvalidInput { field, .. } => field,
        other => panic!("unexpected {other:?}"),
    };
    let r = assign_capacitated(&[f64::NAN], 1, 1, &[1], MaxCardinality);
    assert_eq!(field(r.unwrap_err()), "cost");
    let r = assign_capacitated(&[f64::NEG_INFINITY], 1, 1, &[1], MinCost);
    assert_eq!(field(r.unwrap_err()), "cost");
    let r = assign_capacitated(&[1.0, 2.0], 1, 1, &[1], MaxCardinality);
    assert_eq!(field(r.unwrap_err()), "cost");
    let r = assign_capacitated(&[1.0], 1, 1, &[1, 2], MaxCardinality);
    assert_eq!(field(r.unwrap_err()), "capacities");
    let r = assign_capacitated(&[], usize::MAX, 2, &[1, 1], MaxCardinality);
    assert_eq!(field(r.unwrap_err()), "cost");
}

#[test]
fn huge_costs_do_not_overflow() {
    let big = f64::MAX / 2.0;
    let cost = [big, -big, -big, big];
    let res = assign_capacitated(&cost, 2, 2, &[1, 1], MaxCardinality).unwrap();
    assert_eq!(res.model_of, vec![1, 0]);
    assert_eq!(res.total_cost, -f64::MAX);
}

#[test]
fn maximize_negates_and_rejects_plus_infinity_by_position() {
    let mut cost = vec![1.0, -INF, 2.5, 0.0];
    negate_for_maximize(&mut cost, 2).unwrap();
    assert_eq!(cost, vec![-1.0, INF, -2.5, -0.0]);
    let mut cost = vec![1.0, 2.0, 3.0, INF];
    let err = negate_for_maximize(&mut cost, 2).unwrap_err();
    assert!(
        err.to_string().starts_with("cost: entry (1, 1) is +inf"),
        "{err}"
    );
}

#[test]
fn capacities_are_non_negative_integers() {
    assert_eq!(capacities_from_i64(&[0, 3]).unwrap(), vec![0, 3]);
    let err = capacities_from_i64(&[1, -2]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "capacities: entry 1 is -2, expected a non-negative integer"
    );
    assert_eq!(
        capacities_from_f64(&[2.0, 1e300]).unwrap(),
        vec![2, usize::MAX]
    );
    for (bad, text) in [
        (1.5, "entry 0 is 1.5, expected an integer"),
        (f64::NAN, "entry 0 is NaN, expected an integer"),
        (-1.0, "entry 0 is -1, expected a non-negative integer"),
    ] {
        let err = capacities_from_f64(&[bad]).unwrap_err();
        assert_eq!(err.to_string(), format!("capacities: {text}"));
    }
}

#[test]
fn counts_match_the_expanded_instance() {
    let mut rng = StdRng::seed_from_u64(23);
    for _ in 0..500 {
        let n_types = rng.random_range(0..=4);
        let m = rng.random_range(0..=4);
        let (rows, caps) = random_instance(&mut rng, n_types, m);
        let counts: Vec<u64> = (0..n_types).map(|_| rng.random_range(0..=3)).collect();
        let expanded: Vec<f64> = counts
            .iter()
            .enumerate()
            .flat_map(|(t, &c)| {
                (0..c)
                    .flat_map(|_| rows[t * m..(t + 1) * m].to_vec())
                    .collect::<Vec<_>>()
            })
            .collect();
        let n = expanded.len() / m.max(1);
        let n = if m == 0 {
            counts.iter().sum::<u64>() as usize
        } else {
            n
        };
        let cases = [MaxCardinality, MinCost]
            .into_iter()
            .flat_map(|p| METHODS.map(|m| (p, m)));
        for (policy, method) in cases {
            let res = counts_with(&rows, &counts, m, &caps, policy, method).unwrap();
            let got = check_feasible(&res, &expanded, n, m, &caps);
            let want = brute_force(&expanded, n, m, &caps, policy);
            assert_eq!(
                got, want,
                "{policy:?} {method:?} rows={rows:?} counts={counts:?} caps={caps:?}"
            );
            // Deterministic expansion: within a type, models ascend and -1 comes last.
            let mut at = 0;
            for &c in &counts {
                let run = &res.model_of[at..at + c as usize];
                let key = |&j: &i64| if j < 0 { i64::MAX } else { j };
                assert!(run.windows(2).all(|w| key(&w[0]) <= key(&w[1])), "{run:?}");
                at += c as usize;
            }
        }
    }
}

#[test]
fn counts_reject_bad_input() {
    let err = assign_capacitated_counts(&[1.0, 2.0], &[1], 2, &[1], MinCost).unwrap_err();
    assert!(err.to_string().contains("capacities"), "{err}");
    let err = assign_capacitated_counts(&[1.0, 2.0], &[1, 1], 2, &[1, 1], MinCost).unwrap_err();
    assert!(err.to_string().contains("cost"), "{err}");
    let err = assign_capacitated_counts(&[1.0], &[u64::MAX], 1, &[1], MinCost).unwrap_err();
    assert!(err.to_string().contains("counts"), "{err}");
    let big =
        assign_capacitated_counts(&[1.0, 5.0], &[1_000_000], 2, &[10, 3], MaxCardinality).unwrap();
    assert_eq!(big.model_of.iter().filter(|&&j| j == 0).count(), 10);
    assert_eq!(big.model_of.iter().filter(|&&j| j == 1).count(), 3);
    assert_eq!(big.total_cost, 25.0);
}

/// Finite costs and room for every agent: the instances `Method::Warm` solves itself (the
/// random ones above mostly fall back to per-agent paths).
fn placeable_instance(rng: &mut StdRng, n: usize, m: usize) -> (Vec<f64>, Vec<usize>) {
    let spread = rng.random_range(1..=20);
    let cost = (0..n * m)
        .map(|_| rng.random_range(-spread..=spread) as f64)
        .collect();
    let mut caps: Vec<usize> = (0..m).map(|_| rng.random_range(0..=3)).collect();
    while caps.iter().sum::<usize>() < n {
        let j = rng.random_range(0..m);
        caps[j] += 1;
    }
    (cost, caps)
}

#[test]
fn warm_start_matches_brute_force_and_the_certificate() {
    let mut rng = StdRng::seed_from_u64(23);
    for round in 0..2000 {
        let medium = round % 4 == 0;
        let n = rng.random_range(1..=if medium { 80 } else { 6 });
        let m = rng.random_range(1..=if medium { 12 } else { 3 });
        let (cost, caps) = placeable_instance(&mut rng, n, m);
        for method in [Method::Warm, Method::Sampled] {
            let res = assign_with(&cost, n, m, &caps, MaxCardinality, method).unwrap();
            let got = check_feasible(&res, &cost, n, m, &caps);
            assert_eq!(got.0, n, "every agent fits: cost={cost:?} caps={caps:?}");
            if medium {
                assert!(
                    !has_negative_cycle(&res, &cost, m, &caps, MaxCardinality),
                    "{method:?} not optimal: cost={cost:?} caps={caps:?} res={res:?}"
                );
            } else {
                let want = brute_force(&cost, n, m, &caps, MaxCardinality);
                assert_eq!(
                    got, want,
                    "{method:?} cost={cost:?} caps={caps:?} res={res:?}"
                );
            }
        }
    }
}

/// Many models, tight and loose capacities, float costs with a common structure (popular models
/// that fill): the warm start against per-agent paths, to rounding.
#[test]
fn warm_start_agrees_with_per_agent_paths_on_many_models() {
    let mut rng = StdRng::seed_from_u64(29);
    for _ in 0..12 {
        let m = rng.random_range(20..=300);
        let n = rng.random_range(m..=4 * m);
        let dims = 4;
        let a: Vec<f64> = (0..n * dims).map(|_| rng.random::<f64>()).collect();
        let b: Vec<f64> = (0..m * dims).map(|_| rng.random::<f64>()).collect();
        let cost: Vec<f64> = (0..n * m)
            .map(|idx| {
                let (i, j) = (idx / m, idx % m);
                let dot: f64 = (0..dims).map(|d| a[i * dims + d] * b[j * dims + d]).sum();
                -dot + 0.1 * rng.random::<f64>()
            })
            .collect();
        let slack = rng.random_range(1.0..1.5);
        let per = ((n as f64 * slack) / m as f64).ceil() as usize;
        let caps = vec![per; m];
        let plain = assign_with(
            &cost,
            n,
            m,
            &caps,
            MaxCardinality,
            Method::Agents {
                cached: Cache::Columns,
            },
        )
        .unwrap();
        for method in [Method::Warm, Method::Sampled] {
            let warm = assign_with(&cost, n, m, &caps, MaxCardinality, method).unwrap();
            let (placed, total) = check_feasible(&warm, &cost, n, m, &caps);
            assert_eq!(placed, n);
            let scale = plain.total_cost.abs().max(1.0);
            assert!(
                (total - plain.total_cost).abs() <= 1e-9 * scale,
                "{method:?} n={n} m={m}: {total} vs per agent {}",
                plain.total_cost
            );
        }
    }
}

/// `Auto` warm-starts where agents share preferences, not on uniform costs (where per-agent
/// paths stay short); the auction only with many models, every agent placeable and little
/// spare room.
#[test]
fn auto_warm_starts_only_where_agents_pile_up() {
    let mut rng = StdRng::seed_from_u64(31);
    let (n, m) = (2000, 200);
    let uniform: Vec<f64> = (0..n * m).map(|_| rng.random::<f64>()).collect();
    let shared: Vec<f64> = (0..n * m)
        .map(|idx| (idx % m) as f64 + rng.random::<f64>())
        .collect();
    let caps = vec![11; m];
    let auction = Some(Prices::Auction);
    assert_eq!(warm_start(&shared, n, m, &caps, true), auction);
    assert_eq!(warm_start(&uniform, n, m, &caps, true), None);
    assert_eq!(warm_start(&shared, n, m, &caps, false), None);
    assert_eq!(
        warm_start(&shared[..n * 100], n, 100, &caps[..100], true),
        None
    );
    assert_eq!(warm_start(&shared, n, m, &vec![40; m], true), None);
    // Dozens of agents per model: a sample prices them, whatever the policy.
    let (n, m) = (2000, 20);
    let shared: Vec<f64> = (0..n * m).map(|idx| (idx % m) as f64).collect();
    assert_eq!(
        warm_start(&shared, n, m, &[110; 20], false),
        Some(Prices::Sample)
    );
    let uniform: Vec<f64> = (0..n * m).map(|_| rng.random::<f64>()).collect();
    assert_eq!(warm_start(&uniform, n, m, &[110; 20], false), None);
    // Beyond the pair cache's bound the repair's cache would be too large: no warm start.
    let m = MAX_CACHED_MODELS + 1;
    let shared: Vec<f64> = (0..m * m).map(|idx| (idx % m) as f64).collect();
    assert_eq!(warm_start(&shared, m, m, &vec![1; m], true), None);
}

/// The repair is exact from any prices, not only good ones: random prices on random instances
/// (both policies, forbidden pairs, too little room) must give an optimal placement, and the
/// repair itself must finish (no fallback hides a failure here).
#[test]
fn repair_is_exact_from_arbitrary_prices() {
    let mut rng = StdRng::seed_from_u64(37);
    for _ in 0..600 {
        let n = rng.random_range(1..=40);
        let m = rng.random_range(1..=7);
        let (cost, caps) = random_instance(&mut rng, n, m);
        for policy in [MaxCardinality, MinCost] {
            let keys = Keys::new(&cost, m, policy);
            let mut prices: Vec<Lex> = (0..m)
                .map(|_| keys.lift(rng.random_range(-5.0..15.0)))
                .collect();
            prices.push(Lex::ZERO);
            let (nodes, _) = warm::solve(keys, n, &caps, &prices).unwrap();
            let model_of = model_indices(nodes, m);
            let total_cost = placed_total(&cost, m, &model_of);
            let res = CapacitatedAssignment {
                model_of,
                total_cost,
            };
            check_feasible(&res, &cost, n, m, &caps);
            assert!(
                !has_negative_cycle(&res, &cost, m, &caps, policy),
                "{policy:?} cost={cost:?} caps={caps:?} prices={prices:?}"
            );
        }
    }
}
