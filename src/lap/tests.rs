use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Optimal objective by enumerating every injection of the smaller side (None: infeasible).
fn brute(c: &[f64], n: usize, m: usize, maximize: bool) -> Option<f64> {
    if n > m {
        return brute(&transpose::<AsIs>(c, n, m, f64::NAN).0, m, n, maximize);
    }
    fn go(c: &[f64], m: usize, i: usize, used: &mut [bool], sign: f64) -> f64 {
        if i * m == c.len() {
            return 0.0;
        }
        let mut best = INF;
        for j in 0..m {
            let x = sign * c[i * m + j];
            if !used[j] && x < INF {
                used[j] = true;
                best = best.min(x + go(c, m, i + 1, used, sign));
                used[j] = false;
            }
        }
        best
    }
    let sign = if maximize { -1.0 } else { 1.0 };
    let best = go(c, m, 0, &mut vec![false; m], sign);
    (best < INF).then_some(sign * best)
}

/// Checks the scipy shape of the answer and returns its objective.
fn checked_objective(a: &Assignment, c: &[f64], n: usize, m: usize) -> f64 {
    assert_eq!(a.rows.len(), n.min(m));
    assert_eq!(a.cols.len(), n.min(m));
    assert!(
        a.rows.windows(2).all(|w| w[0] < w[1]),
        "rows sorted, distinct"
    );
    let mut seen = vec![false; m];
    for (&i, &j) in a.rows.iter().zip(&a.cols) {
        assert!(i < n && j < m && !seen[j], "cols distinct and in range");
        seen[j] = true;
        assert!(c[i * m + j].is_finite(), "uses a forbidden pair");
    }
    a.rows
        .iter()
        .zip(&a.cols)
        .map(|(&i, &j)| c[i * m + j])
        .sum()
}

/// Random matrix of one of several kinds: uniform, heavy ties, negative, with forbidden pairs.
fn random_matrix(rng: &mut StdRng, n: usize, m: usize, maximize: bool) -> Vec<f64> {
    let kind = rng.random_range(0..4);
    let p_forbid = if kind == 3 {
        rng.random_range(0.1..0.6)
    } else {
        0.0
    };
    let forbidden = if maximize { -INF } else { INF };
    (0..n * m)
        .map(|_| {
            if rng.random_bool(p_forbid) {
                return forbidden;
            }
            match kind {
                0 => rng.random::<f64>(),
                1 => rng.random_range(0..3) as f64,
                _ => rng.random_range(-50..50) as f64 * 0.5,
            }
        })
        .collect()
}

#[test]
fn matches_brute_force_on_small_matrices() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..3000 {
        let (n, m) = (rng.random_range(1..=6), rng.random_range(1..=6));
        let maximize = rng.random_bool(0.3);
        let c = random_matrix(&mut rng, n, m, maximize);
        let got = linear_sum_assignment(&c, n, m, maximize);
        match (brute(&c, n, m, maximize), got) {
            (Some(best), Ok(a)) => {
                let obj = checked_objective(&a, &c, n, m);
                assert!(
                    (obj - best).abs() <= 1e-9 * best.abs().max(1.0),
                    "{c:?} {n}x{m}"
                );
            }
            (None, Err(e)) => assert_eq!(e, infeasible()),
            (want, got) => panic!("{n}x{m} {c:?}: brute {want:?}, solver {got:?}"),
        }
    }
}

/// LP duality: u[i] + v[j] <= c[i][j] everywhere, tight on the assignment, v <= 0 with
/// v == 0 on unassigned columns, proves optimality without enumerating.
#[test]
fn dual_certificate_on_larger_matrices() {
    let mut rng = StdRng::seed_from_u64(11);
    for round in 0..200 {
        let n = rng.random_range(1..=80);
        let m = if round % 2 == 0 {
            n
        } else {
            rng.random_range(n..=120)
        };
        let mut c = random_matrix(&mut rng, n, m, false);
        // A random finite permutation keeps most instances feasible despite forbidden pairs.
        for i in 0..n {
            if c[i * m + i] == INF {
                c[i * m + i] = rng.random();
            }
        }
        let (col4row, v) = solve::<AsIs, f64>(&c, n, m, None, false).unwrap();
        let tol = 1e-9
            * c.iter()
                .filter(|x| x.is_finite())
                .fold(1.0_f64, |a, &x| a.max(x.abs()));
        let mut assigned = vec![false; m];
        for i in 0..n {
            let j0 = col4row[i];
            assigned[j0] = true;
            let u = c[i * m + j0] - v[j0];
            for j in 0..m {
                assert!(
                    c[i * m + j] - u - v[j] >= -tol,
                    "dual infeasible at ({i},{j})"
                );
            }
        }
        for j in 0..m {
            assert!(v[j] <= tol || n == m);
            assert!(assigned[j] || v[j] == 0.0 || n == m);
        }
    }
}

#[test]
fn tall_equals_transposed_wide() {
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..50 {
        let (n, m) = (rng.random_range(2..60), rng.random_range(1..30));
        let c = random_matrix(&mut rng, n, m, false);
        let t = transpose::<AsIs>(&c, n, m, f64::NAN).0;
        match (
            linear_sum_assignment(&c, n, m, false),
            linear_sum_assignment(&t, m, n, false),
        ) {
            (Ok(a), Ok(b)) => {
                let (x, y) = (
                    checked_objective(&a, &c, n, m),
                    checked_objective(&b, &t, m, n),
                );
                assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0));
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("{a:?} vs {b:?}"),
        }
    }
}

#[test]
fn invalid_entries_are_rejected() {
    let invalid = Error::invalid_verbatim("cost_matrix", "matrix contains invalid numeric entries");
    for (x, maximize) in [
        (f64::NAN, false),
        (-INF, false),
        (f64::NAN, true),
        (INF, true),
    ] {
        let got = linear_sum_assignment(&[1.0, x, 2.0, 3.0], 2, 2, maximize);
        assert_eq!(got, Err(invalid.clone()));
    }
    // Checked before the shape short-cuts, like scipy.
    assert_eq!(
        linear_sum_assignment(&[f64::NAN], 1, 1, false),
        Err(invalid)
    );
}

#[test]
fn shape_mismatch_names_cost_matrix() {
    for (len, n, m) in [(3, 2, 2), (0, 1, 1), (1, usize::MAX, 2)] {
        match linear_sum_assignment(&vec![0.0; len], n, m, false) {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "cost_matrix"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn degenerate_shapes() {
    assert_eq!(
        linear_sum_assignment(&[], 0, 5, false),
        Ok(Assignment::default())
    );
    assert_eq!(
        linear_sum_assignment(&[], 4, 0, true),
        Ok(Assignment::default())
    );
    assert_eq!(
        linear_sum_assignment(&[], 0, 0, false),
        Ok(Assignment::default())
    );
    let one = linear_sum_assignment(&[5.0], 1, 1, false).unwrap();
    assert_eq!((one.rows, one.cols), (vec![0], vec![0]));
    let row = linear_sum_assignment(&[3.0, 1.0, 2.0], 1, 3, false).unwrap();
    assert_eq!(row.cols, vec![1]);
    let col = linear_sum_assignment(&[3.0, 1.0, 2.0], 3, 1, true).unwrap();
    assert_eq!((col.rows, col.cols), (vec![0], vec![0]));
    let equal = linear_sum_assignment(&[2.0; 12], 3, 4, false).unwrap();
    assert_eq!(equal.rows, vec![0, 1, 2]);
}

#[test]
fn infeasible_patterns() {
    let cases: [(&[f64], usize, usize); 5] = [
        (&[INF], 1, 1),
        (&[1.0, INF, 2.0, INF], 2, 2), // a column without allowed entries
        (&[INF, INF, 1.0, 2.0], 2, 2), // a row without allowed entries
        (&[1.0, INF, INF, 2.0, INF, INF], 2, 3), // two rows share their only column
        (&[1.0, 2.0, INF, INF, INF, INF], 3, 2),
    ];
    for (c, n, m) in cases {
        assert_eq!(
            linear_sum_assignment(c, n, m, false),
            Err(infeasible()),
            "{c:?}"
        );
    }
    assert_eq!(
        linear_sum_assignment(&[-INF, 1.0], 1, 2, true)
            .unwrap()
            .cols,
        vec![1]
    );
}

/// Sums may overflow to ±inf with such entries; the answer can then be off, but the solver
/// must still end with a valid assignment or an error, never a panic or a hang.
#[test]
fn overflowing_magnitudes_never_panic() {
    let mut rng = StdRng::seed_from_u64(5);
    let pool = [f64::MAX, -f64::MAX, 1e300, -1e300, 0.0, 1.0, INF];
    for _ in 0..2000 {
        let (n, m) = (rng.random_range(1..=7), rng.random_range(1..=7));
        let c: Vec<f64> = (0..n * m)
            .map(|_| pool[rng.random_range(0..pool.len())])
            .collect();
        for maximize in [false, true] {
            let c: Vec<f64> = c.iter().map(|&x| if maximize { -x } else { x }).collect();
            if let Ok(a) = linear_sum_assignment(&c, n, m, maximize) {
                checked_objective(&a, &c, n, m);
            }
        }
    }
}

#[test]
fn huge_and_tiny_magnitudes_stay_finite() {
    let c = [1e300, -1e300, 1e-300, 5e299, INF, 0.0, 1e300, 1e300, -1e300];
    let a = linear_sum_assignment(&c, 3, 3, false).unwrap();
    let obj = checked_objective(&a, &c, 3, 3);
    assert_eq!(Some(obj), brute(&c, 3, 3, false));
}

/// The AVX2 kernels and the portable ones (run where AVX2 is missing) agree exactly, on rows
/// with ties, forbidden entries, settled columns (`v = -inf`, `d = +inf`) and both signs.
#[test]
fn kernel_variants_agree() {
    let (fast, portable) = (Isa::detect(), Isa::portable());
    let mut rng = StdRng::seed_from_u64(13);
    let pool = [0.0, 1.0, 2.0, -1.0, 0.5, INF];
    let pick = |rng: &mut StdRng| {
        if rng.random_bool(0.6) {
            pool[rng.random_range(0..pool.len())]
        } else {
            rng.random_range(-2.0..2.0)
        }
    };
    fn both<S: Sign>(isas: (Isa, Isa), row: &[f64], v: &[f64], pen: &[f64], d: &[f64], h: f64) {
        // The f32 copy of a row of f32-exact entries must give the very same answer.
        let narrow: Option<Vec<f32>> = row
            .iter()
            .map(|&c| (c as f32 as f64 == c).then_some(c as f32))
            .collect();
        let run = |isa| {
            let (mut d, mut pred) = (d.to_vec(), vec![7usize; d.len()]);
            let reach = kernels::relax::<S, f64>(isa, row, v, pen, &mut d, &mut pred, h, 3);
            (reach, d, pred, kernels::two_smallest::<S, f64>(isa, row, v))
        };
        let run32 = |isa, narrow: &[f32]| {
            let (mut d, mut pred) = (d.to_vec(), vec![7usize; d.len()]);
            let reach = kernels::relax::<S, f32>(isa, narrow, v, pen, &mut d, &mut pred, h, 3);
            (
                reach,
                d,
                pred,
                kernels::two_smallest::<S, f32>(isa, narrow, v),
            )
        };
        if let Some(narrow) = &narrow {
            assert_eq!(run32(isas.0, narrow), run(isas.0));
            assert_eq!(run32(isas.1, narrow), run(isas.1));
        }
        assert_eq!(run(isas.0), run(isas.1));
    }
    for _ in 0..2000 {
        let m = rng.random_range(1..=45);
        let row: Vec<f64> = (0..m).map(|_| pick(&mut rng)).collect();
        let settled: Vec<bool> = (0..m).map(|_| rng.random_bool(0.2)).collect();
        let v: Vec<f64> = settled
            .iter()
            .map(|&s| if s { -INF } else { pick(&mut rng).min(3.0) })
            .collect();
        let d: Vec<f64> = settled
            .iter()
            .map(|&s| if s { INF } else { pick(&mut rng) })
            .collect();
        let pen: Vec<f64> = (0..m)
            .map(|_| if rng.random_bool(0.5) { 0.0 } else { INF })
            .collect();
        let h = pick(&mut rng).min(1.0);
        both::<AsIs>((fast, portable), &row, &v, &pen, &d, h);
        both::<Negated>((fast, portable), &row, &v, &pen, &d, h);
        // Column minima and the entry check, on a small matrix of such rows.
        let n = rng.random_range(1..=5);
        let mut c: Vec<f64> = (0..n * m).map(|_| pick(&mut rng)).collect();
        if rng.random_bool(0.1) {
            let k = rng.random_range(0..c.len());
            c[k] = [f64::NAN, -INF, 1e300][rng.random_range(0..3)];
        }
        let minima = |isa| {
            let (mut v, mut argmin) = (vec![INF; m], vec![0; m]);
            let check = kernels::column_minima::<AsIs>(isa, &c, n, -INF, &mut v, &mut argmin);
            (check, v, argmin, kernels::check_entries(isa, &c, -INF))
        };
        let got = minima(fast);
        assert_eq!(got, minima(portable));
        let exact = c.iter().all(|&x| x as f32 as f64 == x);
        assert!(got.0 .0 .0 || got.0 .1 == exact, "f32-exact flag");
    }
}

/// Machol–Wien c = i·j, where augmenting row reduction stalls and is cut short: the answer is
/// still the optimum (the reversed diagonal, by the rearrangement inequality), and on small
/// outer-product matrices with heavy ties it matches brute force.
#[test]
fn machol_wien_and_outer_products_are_optimal() {
    for n in [1, 2, 5, 17, 64, 257] {
        let c: Vec<f64> = (0..n * n).map(|k| ((k / n) * (k % n)) as f64).collect();
        let a = linear_sum_assignment(&c, n, n, false).unwrap();
        let want: f64 = (0..n).map(|i| (i * (n - 1 - i)) as f64).sum();
        assert_eq!(checked_objective(&a, &c, n, n), want, "n = {n}");
    }
    let mut rng = StdRng::seed_from_u64(17);
    for _ in 0..1500 {
        let (n, m) = (rng.random_range(1..=6), rng.random_range(1..=6));
        let a: Vec<f64> = (0..n).map(|_| rng.random_range(0..5) as f64).collect();
        let b: Vec<f64> = (0..m).map(|_| rng.random_range(0..5) as f64).collect();
        let noise = rng.random_range(0..3) as f64;
        let c: Vec<f64> = (0..n * m)
            .map(|k| a[k / m] * b[k % m] + (noise * rng.random::<f64>()).floor())
            .collect();
        let maximize = rng.random_bool(0.3);
        let got = checked_objective(
            &linear_sum_assignment(&c, n, m, maximize).unwrap(),
            &c,
            n,
            m,
        );
        assert_eq!(Some(got), brute(&c, n, m, maximize), "{c:?} {n}×{m}");
    }
}

/// Matrices whose entries are all f32 values are solved from an f32 copy: the same values, so
/// the very same assignment as the f64 solve, on the families that take that path.
#[test]
fn f32_copy_gives_the_same_assignment() {
    let mut rng = StdRng::seed_from_u64(19);
    for round in 0..8 {
        let n = 256;
        let c: Vec<f64> = match round % 4 {
            0 => (0..n * n)
                .map(|_| rng.random_range(0..101) as f64)
                .collect(),
            1 => (0..n * n)
                .map(|_| rng.random_range(0..1_000_001) as f64)
                .collect(),
            2 => (0..n * n).map(|k| ((k / n) * (k % n)) as f64).collect(),
            _ => (0..n * n)
                .map(|_| rng.random_range(-8..8) as f64 * 0.25)
                .collect(),
        };
        let narrow: Vec<f32> = c.iter().map(|&x| x as f32).collect();
        for maximize in [false, true] {
            let wide = if maximize {
                solve::<Negated, f64>(&c, n, n, None, false)
            } else {
                solve::<AsIs, f64>(&c, n, n, None, false)
            };
            let thin = if maximize {
                solve::<Negated, f32>(&narrow, n, n, None, false)
            } else {
                solve::<AsIs, f32>(&narrow, n, n, None, false)
            };
            assert_eq!(wide.unwrap().0, thin.unwrap().0);
            let api = linear_sum_assignment(&c, n, n, maximize).unwrap();
            let want = if maximize {
                solve::<Negated, f64>(&c, n, n, None, false)
            } else {
                solve::<AsIs, f64>(&c, n, n, None, false)
            };
            assert_eq!(api.cols, want.unwrap().0);
        }
    }
}
