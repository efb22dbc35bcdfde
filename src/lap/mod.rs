//! Exact linear assignment with scipy's contract, solved by Jonker–Volgenant (1987): cheap
//! initial phases (column reduction, reduction transfer, augmenting row reduction) assign most
//! rows, then Dijkstra-style shortest augmenting paths place the rest.
//!
//! Duals: `v[j]` per column; a row's dual is implicit, `u[i] = c[i][col4row[i]] - v[col4row[i]]`,
//! and every phase keeps `c[i][j] - u[i] - v[j] >= 0` for assigned rows (the certificate that the
//! result is optimal). Forbidden pairs are `+inf` and stay `+inf` through the arithmetic, so no
//! "large constant" can ever win a sum. Rectangular problems (`rows < cols`) also need `v[j] == 0`
//! on columns left unassigned: `v` starts at 0, only falls on a column as it gets assigned, and an
//! assigned column never becomes free again. Column reduction would break that, so it only runs
//! on square matrices; wide ones start from row reduction instead. Tall ones are transposed.

use std::marker::PhantomData;

use crate::error::{Error, Result};

#[cfg(target_arch = "x86_64")]
mod avx2;
mod kernels;
use kernels::Isa;

/// scipy-shaped result: `rows[k]` is assigned `cols[k]`; `rows` is sorted ascending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    pub rows: Vec<usize>,
    pub cols: Vec<usize>,
}

/// Minimum (or maximum) cost assignment of a row-major `n_rows × n_cols` matrix.
/// Contract (scipy.optimize.linear_sum_assignment): min(n_rows, n_cols) pairs; +inf forbidden
/// (−inf when maximizing); NaN / −inf → `Error::invalid_verbatim("cost_matrix",
/// "matrix contains invalid numeric entries")`; no full finite assignment →
/// `Error::Infeasible("cost matrix is infeasible")`.
pub fn linear_sum_assignment(
    cost: &[f64],
    n_rows: usize,
    n_cols: usize,
    maximize: bool,
) -> Result<Assignment> {
    check_shape(cost, n_rows, n_cols)?;
    // scipy negates when maximizing, so the entry that would become −inf is +inf here.
    let bad = if maximize {
        f64::INFINITY
    } else {
        f64::NEG_INFINITY
    };
    if n_rows == 0 || n_cols == 0 {
        return Ok(Assignment::default());
    }
    if maximize {
        checked_solve::<Negated>(cost, n_rows, n_cols, bad)
    } else {
        checked_solve::<AsIs>(cost, n_rows, n_cols, bad)
    }
}

/// What the first pass over the matrix (which also checks every entry) leaves for the solve.
enum FirstPass {
    /// Square: column minima, the first row holding each, and whether every entry is an f32.
    Minima(Vec<f64>, Vec<usize>, bool),
    /// Wide: nothing (a plain check).
    Wide,
    /// Tall: the signed transpose.
    Transposed(Vec<f64>),
}

/// Checks the entries in the same pass that starts the solve (the matrix is read from memory
/// once for both: wide and tall solves are bound by memory bandwidth), then solves.
fn checked_solve<S: Sign>(
    cost: &[f64],
    n_rows: usize,
    n_cols: usize,
    bad: f64,
) -> Result<Assignment> {
    let isa = Isa::detect();
    let ((invalid, largest), pass) = if n_rows == n_cols {
        let (mut v, mut argmin) = (vec![INF; n_cols], vec![0; n_cols]);
        let (check, exact) =
            kernels::column_minima::<S>(isa, cost, n_rows, bad, &mut v, &mut argmin);
        (check, FirstPass::Minima(v, argmin, exact))
    } else if n_rows < n_cols {
        (kernels::check_entries(isa, cost, bad), FirstPass::Wide)
    } else {
        let (t, check) = transpose::<S>(cost, n_rows, n_cols, bad);
        (check, FirstPass::Transposed(t))
    };
    if invalid {
        return Err(Error::invalid_verbatim(
            "cost_matrix",
            "matrix contains invalid numeric entries",
        ));
    }
    // Potentials and path lengths add and subtract up to n_rows + n_cols entries: near the
    // float limit they would overflow to ±inf and the answer would be silently wrong. Scaling
    // by a power of two is exact and keeps every comparison, so the answer is the same as on
    // an unbounded float.
    let headroom = f64::MAX / (4 * (n_rows + n_cols)) as f64;
    if largest > headroom {
        let factor = (headroom / largest).log2().floor().exp2();
        let scaled: Vec<f64> = cost.iter().map(|&c| c * factor).collect();
        return linear_sum_assignment(&scaled, n_rows, n_cols, S::NEGATE);
    }
    let t = match pass {
        FirstPass::Minima(v, argmin, exact) => {
            let col4row = solve::<S, f64>(cost, n_rows, n_cols, Some((v, argmin)), exact)?.0;
            return Ok(Assignment {
                rows: (0..n_rows).collect(),
                cols: col4row,
            });
        }
        FirstPass::Wide => {
            let col4row = solve::<S, f64>(cost, n_rows, n_cols, None, false)?.0;
            return Ok(Assignment {
                rows: (0..n_rows).collect(),
                cols: col4row,
            });
        }
        FirstPass::Transposed(t) => t,
    };
    // Tall: the transpose keeps the hot loops reading rows contiguously; it is already signed.
    let (row4col, _) = solve::<AsIs, f64>(&t, n_cols, n_rows, None, false)?;
    let mut col_of_row = vec![FREE; n_rows];
    for (j, &i) in row4col.iter().enumerate() {
        col_of_row[i] = j;
    }
    let (rows, cols) = (0..n_rows)
        .filter(|&i| col_of_row[i] != FREE)
        .map(|i| (i, col_of_row[i]))
        .unzip();
    Ok(Assignment { rows, cols })
}

fn check_shape(cost: &[f64], n_rows: usize, n_cols: usize) -> Result<()> {
    match n_rows.checked_mul(n_cols) {
        Some(len) if len == cost.len() => Ok(()),
        _ => Err(Error::invalid(
            "cost_matrix",
            format!("expected {n_rows} × {n_cols} entries, got {}", cost.len()),
        )),
    }
}

const FREE: usize = usize::MAX;
const INF: f64 = f64::INFINITY;

fn infeasible() -> Error {
    Error::Infeasible("cost matrix is infeasible".into())
}

/// How stored entries are read: as is, or negated for `maximize` (saves copying the matrix).
trait Sign {
    /// Whether `get` negates (the SIMD kernels flip the sign bit themselves).
    const NEGATE: bool;
    fn get(c: f64) -> f64;
}
struct AsIs;
struct Negated;
impl Sign for AsIs {
    const NEGATE: bool = false;
    #[inline(always)]
    fn get(c: f64) -> f64 {
        c
    }
}
impl Sign for Negated {
    const NEGATE: bool = true;
    #[inline(always)]
    fn get(c: f64) -> f64 {
        -c
    }
}

/// How the matrix is stored for the solve: as given (f64), or as f32 when every entry is an
/// f32 exactly (integer costs below 2^24, Machol–Wien): the same values, so the same answer,
/// at half the memory traffic of the row scans, which is what bounds those solves.
trait Entry: Copy + Send + Sync + 'static {
    fn f64(self) -> f64;
    /// Four entries from `p` as f64.
    ///
    /// # Safety
    /// AVX2 available and `p..p + 4` readable.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load4(p: *const Self) -> std::arch::x86_64::__m256d;
}
impl Entry for f64 {
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load4(p: *const Self) -> std::arch::x86_64::__m256d {
        // SAFETY: the caller guarantees 4 readable entries.
        unsafe { std::arch::x86_64::_mm256_loadu_pd(p) }
    }
}
impl Entry for f32 {
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load4(p: *const Self) -> std::arch::x86_64::__m256d {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees 4 readable entries.
        unsafe { _mm256_cvtps_pd(_mm_loadu_ps(p)) }
    }
}

/// The f32 copy is made for square matrices from this size on, when at least 1/`LONG_PATHS`
/// of the rows are left for the shortest path phase: that phase then dominates (Machol–Wien:
/// 995 of 1000 rows, 1.3x faster with the copy), while with few rows left (integer 0..100:
/// 39 of 2000) writing the copy costs more than it saves.
const F32_FROM: usize = 256;
const LONG_PATHS: usize = 8;

/// Cache-blocked transpose of a row-major `n_rows × n_cols` matrix with the sign applied, and
/// the entry check of `kernels::check_entries` done on the way.
fn transpose<S: Sign>(
    cost: &[f64],
    n_rows: usize,
    n_cols: usize,
    bad: f64,
) -> (Vec<f64>, (bool, f64)) {
    const B: usize = 32;
    let mut t = vec![0.0; cost.len()];
    let (mut invalid, mut largest) = (false, 0.0f64);
    for i0 in (0..n_rows).step_by(B) {
        for j0 in (0..n_cols).step_by(B) {
            for i in i0..(i0 + B).min(n_rows) {
                let row = &cost[i * n_cols..(i + 1) * n_cols];
                for j in j0..(j0 + B).min(n_cols) {
                    t[j * n_rows + i] = S::get(row[j]);
                }
            }
        }
        // The block rows just read are still in cache.
        let (bad_rows, big) = kernels::check_entries(
            Isa::detect(),
            &cost[i0 * n_cols..(i0 + B).min(n_rows) * n_cols],
            bad,
        );
        invalid |= bad_rows;
        largest = largest.max(big);
    }
    (t, (invalid, largest))
}

/// `col4row` of an optimal assignment of the `n × m` matrix (`1 <= n <= m`) and the column
/// duals `v` that certify it.
/// `minima`: square only, the column minima and their rows if already computed. `narrow`:
/// every entry is an f32 exactly (see `Entry`, `LONG_PATHS`).
fn solve<S: Sign, E: Entry>(
    cost: &[E],
    n: usize,
    m: usize,
    minima: Option<(Vec<f64>, Vec<usize>)>,
    narrow: bool,
) -> Result<(Vec<usize>, Vec<f64>)> {
    let mut s = Solver::<S, E> {
        cost,
        m,
        v: vec![0.0; m],
        col4row: vec![FREE; n],
        row4col: vec![FREE; m],
        pen: vec![0.0; m],
        d: vec![INF; m],
        pred: vec![0; m],
        ready: Vec::with_capacity(m),
        rest: Vec::with_capacity(m),
        isa: Isa::detect(),
        sign: PhantomData,
    };
    let free = if n == m {
        let (v, argmin) = minima.unwrap_or_else(|| {
            let (mut v, mut argmin) = (vec![INF; m], vec![0; m]);
            kernels::column_minima_any::<S, E>(cost, n, &mut v, &mut argmin);
            (v, argmin)
        });
        s.v = v;
        s.column_reduction(&argmin)?
    } else {
        (0..n).collect()
    };
    let free = s.augmenting_row_reduction(free)?;
    if narrow && n >= F32_FROM && free.len() * LONG_PATHS >= n {
        // Without memory for the copy the f64 matrix serves, as for every other shape.
        let mut thin: Vec<f32> = Vec::new();
        if thin.try_reserve_exact(cost.len()).is_ok() {
            thin.extend(cost.iter().map(|&c| c.f64() as f32));
            let mut t = s.recast(&thin);
            for f in free {
                t.shortest_augmenting_path(f)?;
            }
            return Ok((t.col4row, t.v));
        }
    }
    for f in free {
        s.shortest_augmenting_path(f)?;
    }
    Ok((s.col4row, s.v))
}

struct Solver<'a, S, E> {
    cost: &'a [E],
    m: usize,
    v: Vec<f64>,
    col4row: Vec<usize>,
    row4col: Vec<usize>,
    /// 0 on free columns, +inf on assigned ones: `d + pen` is the distance to a free column.
    pen: Vec<f64>,
    // Scratch of the shortest path search, kept to avoid reallocating per row.
    d: Vec<f64>,
    pred: Vec<usize>,
    /// Settled columns of the current search with their distance and original `v`.
    ready: Vec<(usize, f64, f64)>,
    /// Unsettled columns once a search turns sparse (see `SPARSE_AFTER`).
    rest: Vec<usize>,
    isa: Isa,
    sign: PhantomData<S>,
}

impl<'a, S: Sign, E: Entry> Solver<'a, S, E> {
    /// The same state over another copy of the same matrix.
    fn recast<F: Entry>(self, cost: &[F]) -> Solver<'_, S, F> {
        Solver {
            cost,
            m: self.m,
            v: self.v,
            col4row: self.col4row,
            row4col: self.row4col,
            pen: self.pen,
            d: self.d,
            pred: self.pred,
            ready: self.ready,
            rest: self.rest,
            isa: self.isa,
            sign: PhantomData,
        }
    }

    fn row(&self, i: usize) -> &'a [E] {
        &self.cost[i * self.m..(i + 1) * self.m]
    }

    fn assign(&mut self, i: usize, j: usize) {
        self.col4row[i] = j;
        self.row4col[j] = i;
        self.pen[j] = INF;
    }

    /// Square only. `v[j]` = column minimum; each column goes to its minimum row unless that row
    /// already has one. Reduction transfer then moves slack from `v` to rows holding exactly one
    /// column, which makes the row reduction that follows more effective. Returns free rows.
    fn column_reduction(&mut self, argmin: &[usize]) -> Result<Vec<usize>> {
        let n = self.col4row.len();
        if self.v.contains(&INF) {
            return Err(infeasible()); // a column with no allowed entry
        }
        let mut matches = vec![0usize; n];
        // Forward, so that among columns sharing a minimum row the lowest index is kept (as
        // scipy does: a constant matrix gives the identity).
        for (j, &i) in argmin.iter().enumerate() {
            matches[i] += 1;
            if matches[i] == 1 {
                self.assign(i, j);
            }
        }
        let mut free = Vec::new();
        for (i, &count) in matches.iter().enumerate() {
            if count == 0 {
                free.push(i);
            } else if count == 1 {
                // mu: the row's smallest reduced cost outside j1.
                let j1 = self.col4row[i];
                let (u1, k1, u2, _) = self.two_smallest(i);
                let mu = if k1 == j1 { u2 } else { u1 };
                // mu == inf: j1 is the row's only allowed column; nothing to transfer.
                if mu < INF {
                    self.v[j1] -= mu;
                }
            }
        }
        Ok(free)
    }

    /// Two passes of JV's augmenting row reduction: a free row takes its cheapest column (by
    /// `c - v`), lowering that column's `v` so the row stays indifferent to its runner-up, and
    /// evicts the previous owner. Returns the rows still free.
    fn augmenting_row_reduction(&mut self, mut free: Vec<usize>) -> Result<Vec<usize>> {
        for _pass in 0..2 {
            let mut next = Vec::new();
            // An evicted row is retried at once. Those chains can get very long (uncapped, a
            // rank-3 1000×1000 matrix took 10 s here, and uniform ones got slower too), so they
            // are capped; rows left over simply go to the augmenting path phase.
            let mut retries = 8 * free.len() + 64;
            let mut k = 0;
            while k < free.len() {
                let i = free[k];
                k += 1;
                let (u1, j1, u2, j2) = self.two_smallest(i);
                if u1 == INF || j1 == FREE {
                    return Err(infeasible()); // a row with no allowed entry
                }
                let strict = u1 < u2;
                let (j, i0) = if strict || self.row4col[j1] == FREE {
                    (j1, self.row4col[j1])
                } else if let Some(jf) = self.free_at(i, u1) {
                    // A tie with a free column among the minima: take the first such (no
                    // eviction; scipy's choice too, which makes a constant matrix the identity).
                    (jf, FREE)
                } else {
                    (j2, self.row4col[j2])
                };
                let lowered = strict && u2 < INF;
                if lowered {
                    self.v[j1] -= u2 - u1;
                }
                self.assign(i, j);
                if i0 != FREE {
                    self.col4row[i0] = FREE;
                    if lowered && retries > 0 {
                        retries -= 1;
                        k -= 1;
                        free[k] = i0;
                    } else {
                        next.push(i0);
                    }
                }
            }
            // A pass that placed under 1/8 of its rows (Machol–Wien: 999 -> 996) says the
            // next one would not pay off either: shortest paths take over at once.
            let stalled = next.len() * 8 > free.len() * 7;
            free = next;
            if free.is_empty() || stalled {
                break;
            }
        }
        Ok(free)
    }

    /// First free column `j` with `c[i][j] - v[j] == u` (only called on ties, which are rare
    /// with real-valued costs).
    fn free_at(&self, i: usize, u: f64) -> Option<usize> {
        kernels::first_free_at::<S, E>(self.row(i), &self.v, &self.pen, u)
    }

    /// Smallest and second smallest `c[i][j] - v[j]` with their columns.
    fn two_smallest(&self, i: usize) -> (f64, usize, f64, usize) {
        kernels::two_smallest::<S, E>(self.isa, self.row(i), &self.v)
    }

    /// Dijkstra from free row `f` over reduced costs until a free column is settled, then flip
    /// the path and update `v` on the settled columns.
    ///
    /// Every scan runs over the whole row in memory order (vectorizable, no gathers); settled
    /// columns are masked by `d = +inf` and `v = -inf`, which makes their candidate `+inf` so
    /// they never change again. Their true `d` and `v` wait in `ready` until the search ends.
    fn shortest_augmenting_path(&mut self, f: usize) -> Result<()> {
        self.ready.clear();
        self.d.fill(INF);
        let mut sparse = false;
        let mut reach = self.relax(self.row(f), 0.0, f);
        let mut j = self.next_column(reach)?;
        let mut best = reach.0;
        let (sink, total) = loop {
            self.ready.push((j, best, self.v[j]));
            let i = self.row4col[j];
            if i == FREE {
                break (j, best);
            }
            let row = self.row(i);
            // Through row i: d(j) + reduced cost of (i, j'), u[i] implied by the tight pair (i, j).
            let h = best - (S::get(row[j].f64()) - self.v[j]);
            if !sparse {
                self.d[j] = INF;
                self.v[j] = -INF;
                if self.ready.len() * SPARSE_AFTER < self.m * (SPARSE_AFTER - 1) {
                    reach = self.relax(row, h, i);
                    j = self.next_column(reach)?;
                    best = reach.0;
                    continue;
                }
                // A long search: from here on scan only the columns not yet settled.
                sparse = true;
                self.rest.clear();
                self.rest.extend((0..self.m).filter(|&c| self.v[c] != -INF));
            }
            (best, j) = self.scan_rest(row, h, i)?;
        };
        for &(j, dj, vj) in &self.ready {
            self.v[j] = vj + (dj - total);
        }
        let mut j = sink;
        loop {
            let i = self.pred[j];
            let next = self.col4row[i];
            self.assign(i, j);
            if i == f {
                return Ok(());
            }
            j = next;
        }
    }

    /// Sparse step of a long search: relaxes row `i` over the unsettled columns in `rest` and
    /// takes out the closest one (a free one on ties), in one pass as scipy does. Returns its
    /// distance and index.
    fn scan_rest(&mut self, row: &[E], h: f64, i: usize) -> Result<(f64, usize)> {
        let (mut best, mut at, mut free) = (INF, usize::MAX, false);
        for (p, &j) in self.rest.iter().enumerate() {
            let x = h + S::get(row[j].f64()) - self.v[j];
            if x < self.d[j] {
                self.d[j] = x;
                self.pred[j] = i;
            }
            let dj = self.d[j];
            if dj < best || (dj == best && !free && self.row4col[j] == FREE) {
                best = dj;
                at = p;
                free = self.row4col[j] == FREE;
            }
        }
        if best == INF {
            return Err(infeasible());
        }
        Ok((best, self.rest.swap_remove(at)))
    }

    /// The column to settle at distance `best`: the first free one when a free column is that
    /// close (ending the search a row scan earlier, which matters with integer costs), else the
    /// first holding it.
    fn next_column(&self, (best, free): (f64, f64)) -> Result<usize> {
        if best == INF {
            return Err(infeasible());
        }
        kernels::first_at(&self.d, &self.pen, best, free == best).ok_or_else(infeasible)
    }

    /// One Dijkstra step through row `i` (see `kernels::relax`); returns the smallest distance
    /// overall and to a free column.
    fn relax(&mut self, row: &[E], h: f64, i: usize) -> (f64, f64) {
        kernels::relax::<S, E>(
            self.isa,
            row,
            &self.v,
            &self.pen,
            &mut self.d,
            &mut self.pred,
            h,
            i,
        )
    }
}

/// A search that has settled all but 1/`SPARSE_AFTER` of the columns switches from full-row
/// scans (AVX2, over settled columns too, plus a pass to find the minimum) to one scalar pass
/// over the unsettled columns only. Measured on Machol–Wien and low rank 1000×1000 (searches
/// that settle most columns): switching at 3/4 beat 1/2 and never switching by 5–15 %.
const SPARSE_AFTER: usize = 4;

#[cfg(test)]
mod tests;
