//! The solver's inner loops over matrix rows, each in a portable version and an AVX2 one
//! (`avx2.rs`) picked at run time: the wheel targets baseline x86-64, where the compiler may
//! only use SSE2, while almost every machine it runs on has AVX2. Results never depend on the
//! variant: the same `+`, `-`, comparisons and selects in the same order, no FMA.

use super::{Entry, Sign, FREE, INF};

/// Chunk width: two AVX2 registers of f64, four SSE2 ones.
pub(super) const LANES: usize = 8;

/// Which compiled variant to run, detected once per solve.
#[derive(Clone, Copy)]
pub(super) struct Isa {
    avx2: bool,
}

impl Isa {
    /// The baseline variant, to test it against the AVX2 one.
    #[cfg(test)]
    pub(super) fn portable() -> Self {
        Isa { avx2: false }
    }

    pub(super) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Isa {
                avx2: std::arch::is_x86_feature_detected!("avx2"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Isa { avx2: false }
        }
    }
}

/// One Dijkstra step through row `i` at offset `h`: `d[j] = min(d[j], h + c[i][j] - v[j])`,
/// `pred[j] = i` where that improved. Returns the smallest `d` afterwards, over all columns and
/// over free ones (`pen[j] == 0`; `+inf` on assigned columns). Settled columns carry `d = +inf`
/// and `v = -inf`, so their candidate is `+inf` and nothing changes there.
#[allow(clippy::too_many_arguments)]
pub(super) fn relax<S: Sign, E: Entry>(
    isa: Isa,
    row: &[E],
    v: &[f64],
    pen: &[f64],
    d: &mut [f64],
    pred: &mut [usize],
    h: f64,
    i: usize,
) -> (f64, f64) {
    let m = row.len();
    let (v, pen, d, pred) = (&v[..m], &pen[..m], &mut d[..m], &mut pred[..m]);
    #[cfg(target_arch = "x86_64")]
    if isa.avx2 {
        // SAFETY: only reached when the CPU reported AVX2 at run time; every slice is `m` long.
        return unsafe { super::avx2::relax::<S, E>(row, v, pen, d, pred, h, i) };
    }
    let _ = isa;
    relax_body::<S, E>(row, v, pen, d, pred, h, i)
}

#[inline(always)]
pub(super) fn relax_body<S: Sign, E: Entry>(
    row: &[E],
    v: &[f64],
    pen: &[f64],
    d: &mut [f64],
    pred: &mut [usize],
    h: f64,
    i: usize,
) -> (f64, f64) {
    let (mut best, mut free) = (INF, INF);
    for j in 0..row.len() {
        let x = h + S::get(row[j].f64()) - v[j];
        if x < d[j] {
            d[j] = x;
            pred[j] = i;
        }
        best = if d[j] < best { d[j] } else { best };
        let f = d[j] + pen[j];
        free = if f < free { f } else { free };
    }
    (best, free)
}

/// First `j` with `d[j] == x` (and, when `free_only`, `pen[j] == 0`), chunk by chunk.
pub(super) fn first_at(d: &[f64], pen: &[f64], x: f64, free_only: bool) -> Option<usize> {
    let hit = |k: usize| d[k] == x && (!free_only || pen[k] == 0.0);
    for (k, chunk) in d.chunks(LANES).enumerate() {
        if chunk.iter().fold(false, |any, &y| any | (y == x)) {
            let base = k * LANES;
            if let Some(l) = (0..chunk.len()).find(|&l| hit(base + l)) {
                return Some(base + l);
            }
        }
    }
    None
}

/// First free column (`pen == 0`) with `c[i][j] - v[j] == u`, chunk by chunk.
pub(super) fn first_free_at<S: Sign, E: Entry>(
    row: &[E],
    v: &[f64],
    pen: &[f64],
    u: f64,
) -> Option<usize> {
    let (v, pen) = (&v[..row.len()], &pen[..row.len()]);
    let hit = |c: E, v: f64, p: f64| (S::get(c.f64()) - v == u) & (p == 0.0);
    let chunks = row
        .chunks(LANES)
        .zip(v.chunks(LANES))
        .zip(pen.chunks(LANES));
    for (k, ((c, v), p)) in chunks.enumerate() {
        let mut lanes = c.iter().zip(v).zip(p);
        if lanes
            .clone()
            .fold(false, |any, ((&c, &v), &p)| any | hit(c, v, p))
        {
            return lanes
                .position(|((&c, &v), &p)| hit(c, v, p))
                .map(|l| k * LANES + l);
        }
    }
    None
}

/// The smallest and second smallest `c[i][j] - v[j]` with their columns, ties going to the
/// lower column (`(INF, FREE)` where there is none).
pub(super) fn two_smallest<S: Sign, E: Entry>(
    isa: Isa,
    row: &[E],
    v: &[f64],
) -> (f64, usize, f64, usize) {
    let v = &v[..row.len()];
    #[cfg(target_arch = "x86_64")]
    if isa.avx2 {
        // SAFETY: only reached when the CPU reported AVX2 at run time; both slices are as long.
        return unsafe { super::avx2::two_smallest::<S, E>(row, v) };
    }
    let _ = isa;
    two_smallest_body::<S, E>(row, v)
}

#[inline(always)]
fn two_smallest_body<S: Sign, E: Entry>(row: &[E], v: &[f64]) -> (f64, usize, f64, usize) {
    let m = row.len();
    let v = &v[..m];
    // Per lane, the two smallest (value, column) in lexicographic order; the overall two are
    // the two smallest of those 2·LANES candidates.
    let (mut u1, mut j1, mut u2, mut j2) =
        ([INF; LANES], [FREE; LANES], [INF; LANES], [FREE; LANES]);
    let mut step = |j: usize, l: usize| {
        let h = S::get(row[j].f64()) - v[j];
        let lt1 = h < u1[l];
        let lt2 = h < u2[l];
        u2[l] = if lt1 {
            u1[l]
        } else if lt2 {
            h
        } else {
            u2[l]
        };
        j2[l] = if lt1 {
            j1[l]
        } else if lt2 {
            j
        } else {
            j2[l]
        };
        u1[l] = if lt1 { h } else { u1[l] };
        j1[l] = if lt1 { j } else { j1[l] };
    };
    let split = m - m % LANES;
    for k in (0..split).step_by(LANES) {
        for l in 0..LANES {
            step(k + l, l);
        }
    }
    // The tail goes into lane 0 after its chunked columns, keeping columns in order per lane.
    for j in split..m {
        step(j, 0);
    }
    merge_two_smallest(u1.into_iter().zip(j1).chain(u2.into_iter().zip(j2)))
}

/// The two smallest `(value, column)` pairs, lexicographically, of per-lane candidates.
pub(super) fn merge_two_smallest(
    candidates: impl Iterator<Item = (f64, usize)>,
) -> (f64, usize, f64, usize) {
    let mut best = (INF, FREE, INF, FREE);
    // Like the scalar loop, a `+inf` entry is never a candidate (its column stays FREE).
    for (u, j) in candidates.filter(|&(u, _)| u < INF) {
        if (u, j) < (best.0, best.1) {
            (best.2, best.3, best.0, best.1) = (best.0, best.1, u, j);
        } else if (u, j) < (best.2, best.3) {
            (best.2, best.3) = (u, j);
        }
    }
    best
}

/// Column minima over rows `0..n` of the row-major matrix with `v.len()` columns into `v`
/// (which must start at `+inf`) and the first row holding each into `argmin`; also the entry
/// check of `check_entries` on the same pass, and whether every entry is exactly an f32.
pub(super) fn column_minima<S: Sign>(
    isa: Isa,
    cost: &[f64],
    n: usize,
    bad: f64,
    v: &mut [f64],
    argmin: &mut [usize],
) -> ((bool, f64), bool) {
    let argmin = &mut argmin[..v.len()];
    assert_eq!(cost.len(), n * v.len());
    #[cfg(target_arch = "x86_64")]
    if isa.avx2 {
        // SAFETY: only reached when the CPU reported AVX2 at run time; sizes checked above.
        return unsafe { super::avx2::column_minima::<S>(cost, n, bad, v, argmin) };
    }
    let _ = isa;
    column_minima_body::<S>(cost, n, bad, v, argmin)
}

#[inline(always)]
fn column_minima_body<S: Sign>(
    cost: &[f64],
    n: usize,
    bad: f64,
    v: &mut [f64],
    argmin: &mut [usize],
) -> ((bool, f64), bool) {
    let m = v.len();
    let argmin = &mut argmin[..m];
    let mut narrow = [true; LANES];
    let mut invalid = [0u64; LANES];
    let mut big = [0.0f64; LANES];
    // Row by row (not column by column) so the matrix is read in memory order.
    for i in 0..n {
        let row = &cost[i * m..(i + 1) * m];
        let chunks = row
            .chunks(LANES)
            .zip(v.chunks_mut(LANES))
            .zip(argmin.chunks_mut(LANES));
        for ((row, v), argmin) in chunks {
            for (l, ((&raw, vj), aj)) in row.iter().zip(v).zip(argmin).enumerate() {
                let c = S::get(raw);
                let lt = c < *vj;
                *vj = if lt { c } else { *vj };
                *aj = if lt { i } else { *aj };
                check_step(raw, bad, &mut invalid[l], &mut big[l]);
                narrow[l] &= raw as f32 as f64 == raw;
            }
        }
    }
    (fold_check(&invalid, &big), narrow.iter().all(|&x| x))
}

/// Column minima of a matrix stored as `E`, without the entry check (tests solve such
/// matrices directly).
pub(super) fn column_minima_any<S: Sign, E: Entry>(
    cost: &[E],
    n: usize,
    v: &mut [f64],
    argmin: &mut [usize],
) {
    let m = v.len();
    for i in 0..n {
        for (j, &raw) in cost[i * m..(i + 1) * m].iter().enumerate() {
            let c = S::get(raw.f64());
            if c < v[j] {
                (v[j], argmin[j]) = (c, i);
            }
        }
    }
}

#[inline(always)]
fn check_step(c: f64, bad: f64, invalid: &mut u64, big: &mut f64) {
    *invalid |= (c.is_nan() | (c == bad)) as u64;
    let a = c.abs();
    let a = if a < INF { a } else { 0.0 }; // NaN too
    *big = if a > *big { a } else { *big };
}

fn fold_check(invalid: &[u64], big: &[f64]) -> (bool, f64) {
    let largest = big.iter().fold(0.0f64, |m, &x| if x > m { x } else { m });
    (invalid.iter().any(|&x| x != 0), largest)
}

/// Whether `cost` holds a NaN or `bad`, and the largest finite magnitude: one branch-free pass
/// (a scalar early-exit loop here cost as much as solving a wide uniform matrix).
pub(super) fn check_entries(isa: Isa, cost: &[f64], bad: f64) -> (bool, f64) {
    #[cfg(target_arch = "x86_64")]
    if isa.avx2 {
        // SAFETY: only reached when the CPU reported AVX2 at run time.
        return unsafe { check_entries_avx2(cost, bad) };
    }
    let _ = isa;
    check_entries_body(cost, bad)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn check_entries_avx2(cost: &[f64], bad: f64) -> (bool, f64) {
    check_entries_body(cost, bad)
}

#[inline(always)]
pub(super) fn check_entries_body(cost: &[f64], bad: f64) -> (bool, f64) {
    let mut invalid = [0u64; LANES];
    let mut big = [0.0f64; LANES];
    let mut chunks = cost.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (l, &c) in chunk.iter().enumerate() {
            check_step(c, bad, &mut invalid[l], &mut big[l]);
        }
    }
    for &c in chunks.remainder() {
        check_step(c, bad, &mut invalid[0], &mut big[0]);
    }
    fold_check(&invalid, &big)
}
