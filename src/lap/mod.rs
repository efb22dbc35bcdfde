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
    let mut largest = 0.0f64;
    for &c in cost {
        if c.is_nan() || c == bad {
            return Err(Error::invalid_verbatim(
                "cost_matrix",
                "matrix contains invalid numeric entries",
            ));
        }
        if c.is_finite() {
            largest = largest.max(c.abs());
        }
    }
    if n_rows == 0 || n_cols == 0 {
        return Ok(Assignment::default());
    }
    // Potentials and path lengths add and subtract up to n_rows + n_cols entries: near the
    // float limit they would overflow to ±inf and the answer would be silently wrong. Scaling
    // by a power of two is exact and keeps every comparison, so the answer is the same as on
    // an unbounded float.
    let headroom = f64::MAX / (4 * (n_rows + n_cols)) as f64;
    if largest > headroom {
        let factor = (headroom / largest).log2().floor().exp2();
        let scaled: Vec<f64> = cost.iter().map(|&c| c * factor).collect();
        return linear_sum_assignment(&scaled, n_rows, n_cols, maximize);
    }
    if n_rows <= n_cols {
        let col4row = if maximize {
            solve::<Negated>(cost, n_rows, n_cols)?.0
        } else {
            solve::<AsIs>(cost, n_rows, n_cols)?.0
        };
        return Ok(Assignment {
            rows: (0..n_rows).collect(),
            cols: col4row,
        });
    }
    // Tall: solve the transpose so the hot loops still read rows contiguously.
    let t = transpose(cost, n_rows, n_cols, if maximize { -1.0 } else { 1.0 });
    let (row4col, _) = solve::<AsIs>(&t, n_cols, n_rows)?;
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
    fn get(c: f64) -> f64;
}
struct AsIs;
struct Negated;
impl Sign for AsIs {
    #[inline(always)]
    fn get(c: f64) -> f64 {
        c
    }
}
impl Sign for Negated {
    #[inline(always)]
    fn get(c: f64) -> f64 {
        -c
    }
}

/// Cache-blocked transpose (times `scale`) of a row-major `n_rows × n_cols` matrix.
fn transpose(cost: &[f64], n_rows: usize, n_cols: usize, scale: f64) -> Vec<f64> {
    const B: usize = 32;
    let mut t = vec![0.0; cost.len()];
    for i0 in (0..n_rows).step_by(B) {
        for j0 in (0..n_cols).step_by(B) {
            for i in i0..(i0 + B).min(n_rows) {
                let row = &cost[i * n_cols..(i + 1) * n_cols];
                for j in j0..(j0 + B).min(n_cols) {
                    t[j * n_rows + i] = scale * row[j];
                }
            }
        }
    }
    t
}

/// `col4row` of an optimal assignment of the `n × m` matrix (`1 <= n <= m`) and the column
/// duals `v` that certify it.
fn solve<S: Sign>(cost: &[f64], n: usize, m: usize) -> Result<(Vec<usize>, Vec<f64>)> {
    let mut s = Solver::<S> {
        cost,
        m,
        v: vec![0.0; m],
        col4row: vec![FREE; n],
        row4col: vec![FREE; m],
        d: vec![INF; m],
        pred: vec![0; m],
        ready: Vec::with_capacity(m),
        free_best: (INF, FREE),
        rest: Vec::with_capacity(m),
        sign: PhantomData,
    };
    let free = if n == m {
        s.column_reduction()?
    } else {
        (0..n).collect()
    };
    let free = s.augmenting_row_reduction(free)?;
    for f in free {
        s.shortest_augmenting_path(f)?;
    }
    Ok((s.col4row, s.v))
}

struct Solver<'a, S> {
    cost: &'a [f64],
    m: usize,
    v: Vec<f64>,
    col4row: Vec<usize>,
    row4col: Vec<usize>,
    // Scratch of the shortest path search, kept to avoid reallocating per row.
    d: Vec<f64>,
    pred: Vec<usize>,
    /// Settled columns of the current search with their distance and original `v`.
    ready: Vec<(usize, f64, f64)>,
    /// Smallest distance to a free column in the current search, and that column.
    free_best: (f64, usize),
    /// Unsettled columns once a search turns sparse (see `SPARSE_AFTER`).
    rest: Vec<usize>,
    sign: PhantomData<S>,
}

impl<'a, S: Sign> Solver<'a, S> {
    fn row(&self, i: usize) -> &'a [f64] {
        &self.cost[i * self.m..(i + 1) * self.m]
    }

    fn assign(&mut self, i: usize, j: usize) {
        self.col4row[i] = j;
        self.row4col[j] = i;
    }

    /// Square only. `v[j]` = column minimum; each column goes to its minimum row unless that row
    /// already has one. Reduction transfer then moves slack from `v` to rows holding exactly one
    /// column, which makes the row reduction that follows more effective. Returns free rows.
    fn column_reduction(&mut self) -> Result<Vec<usize>> {
        let n = self.col4row.len();
        let mut argmin = vec![0usize; self.m];
        self.v.fill(INF);
        for i in 0..n {
            // Row by row (not column by column) so the matrix is read in memory order.
            for ((&c, vj), aj) in self.row(i).iter().zip(&mut self.v).zip(&mut argmin) {
                let c = S::get(c);
                if c < *vj {
                    *vj = c;
                    *aj = i;
                }
            }
        }
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
                let j1 = self.col4row[i];
                let row = self.row(i);
                let reduced = |c: &[f64], v: &[f64]| {
                    c.iter()
                        .zip(v)
                        .fold(INF, |mu, (&c, &v)| mu.min(S::get(c) - v))
                };
                let mu = reduced(&row[..j1], &self.v[..j1])
                    .min(reduced(&row[j1 + 1..], &self.v[j1 + 1..]));
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
            free = next;
            if free.is_empty() {
                break;
            }
        }
        Ok(free)
    }

    /// First free column `j` with `c[i][j] - v[j] == u` (only called on ties, which are rare
    /// with real-valued costs).
    fn free_at(&self, i: usize, u: f64) -> Option<usize> {
        let row = self.row(i);
        (0..self.m).find(|&j| self.row4col[j] == FREE && S::get(row[j]) - self.v[j] == u)
    }

    /// Smallest and second smallest `c[i][j] - v[j]` with their columns.
    fn two_smallest(&self, i: usize) -> (f64, usize, f64, usize) {
        let (mut u1, mut j1, mut u2, mut j2) = (INF, FREE, INF, FREE);
        for (j, (&c, &vj)) in self.row(i).iter().zip(&self.v).enumerate() {
            let h = S::get(c) - vj;
            if h < u2 {
                if h >= u1 {
                    (u2, j2) = (h, j);
                } else {
                    (u2, j2, u1, j1) = (u1, j1, h, j);
                }
            }
        }
        (u1, j1, u2, j2)
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
        self.free_best = (INF, FREE);
        let mut sparse = false;
        let mut best = self.relax(self.row(f), 0.0, f);
        let mut j = self.next_column(best)?;
        let (sink, total) = loop {
            self.ready.push((j, best, self.v[j]));
            let i = self.row4col[j];
            if i == FREE {
                break (j, best);
            }
            let row = self.row(i);
            // Through row i: d(j) + reduced cost of (i, j'), u[i] implied by the tight pair (i, j).
            let h = best - (S::get(row[j]) - self.v[j]);
            if !sparse {
                self.d[j] = INF;
                self.v[j] = -INF;
                if self.ready.len() * SPARSE_AFTER < self.m {
                    best = self.relax(row, h, i);
                    j = self.next_column(best)?;
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
    fn scan_rest(&mut self, row: &[f64], h: f64, i: usize) -> Result<(f64, usize)> {
        let (mut best, mut at, mut free) = (INF, usize::MAX, false);
        for (p, &j) in self.rest.iter().enumerate() {
            let x = h + S::get(row[j]) - self.v[j];
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

    /// The column to settle at distance `best`: a free one when tied (ending the search a row
    /// scan earlier, which matters with integer costs), else the first holding `best`.
    fn next_column(&self, best: f64) -> Result<usize> {
        if best == INF {
            return Err(infeasible());
        }
        if self.free_best.0 == best {
            return Ok(self.free_best.1);
        }
        for (k, chunk) in self.d.chunks(LANES).enumerate() {
            if chunk.iter().fold(false, |hit, &x| hit | (x == best)) {
                let l = chunk.iter().position(|&x| x == best).unwrap_or(0);
                return Ok(k * LANES + l);
            }
        }
        Err(infeasible()) // unreachable: `best` came from `d`
    }

    /// `d[j] = min(d[j], h + c[i][j] - v[j])` over the whole row, recording `pred[j] = i` and
    /// the best free column; returns the new minimum of `d` (+inf if none is finite). Written
    /// over fixed-size chunks so the common path (no improvement) compiles to packed SIMD.
    fn relax(&mut self, row: &[f64], h: f64, i: usize) -> f64 {
        let Self {
            v,
            d,
            pred,
            row4col,
            free_best,
            ..
        } = self;
        let mut improve = |j: usize, x: f64, d: &mut f64, p: &mut usize| {
            if x < *d {
                *d = x;
                *p = i;
                if x < free_best.0 && row4col[j] == FREE {
                    *free_best = (x, j);
                }
            }
        };
        let mut acc = [INF; LANES];
        let split = row.len() - row.len() % LANES;
        let (d, d_tail) = d.split_at_mut(split);
        let (pred, p_tail) = pred.split_at_mut(split);
        let chunks = row[..split]
            .chunks_exact(LANES)
            .zip(v[..split].chunks_exact(LANES))
            .zip(d.chunks_exact_mut(LANES).zip(pred.chunks_exact_mut(LANES)));
        for (k, ((c, v), (d, p))) in chunks.enumerate() {
            let mut cand = [0.0; LANES];
            let mut any = false;
            for ((x, &c), (&v, &d)) in cand.iter_mut().zip(c).zip(v.iter().zip(d.iter())) {
                *x = h + S::get(c) - v;
                any |= *x < d;
            }
            // Improvements are rare once a search is under way: skip the stores when none.
            if any {
                for (l, ((&x, d), p)) in cand.iter().zip(d.iter_mut()).zip(p).enumerate() {
                    improve(k * LANES + l, x, d, p);
                }
            }
            for (a, &d) in acc.iter_mut().zip(d.iter()) {
                *a = if d < *a { d } else { *a };
            }
        }
        let tail = row[split..]
            .iter()
            .zip(&v[split..])
            .zip(d_tail.iter_mut().zip(p_tail));
        for (l, ((&c, &v), (d, p))) in tail.enumerate() {
            improve(split + l, h + S::get(c) - v, d, p);
            acc[0] = if *d < acc[0] { *d } else { acc[0] };
        }
        acc.iter().fold(INF, |m, &x| if x < m { x } else { m })
    }
}

const LANES: usize = 8;

/// A search that has settled 1/`SPARSE_AFTER` of the columns switches from full-row scans
/// (vectorized, but over settled columns too, plus a pass to find the minimum) to one pass over
/// the unsettled columns only: long searches (Machol–Wien, low rank) do about half the work.
const SPARSE_AFTER: usize = 4;

#[cfg(test)]
mod tests;
