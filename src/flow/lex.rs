//! Two-level costs compared lexicographically.
//!
//! Both policies are one min-cost flow with a virtual "unassigned" node; they differ only in
//! which criterion comes first. Carrying the pair through Dijkstra keeps the tie-break exact
//! where a single number would need a "large enough" constant that floats cannot guarantee.

use std::ops::{Add, Sub};

use super::UnassignedPolicy;

/// `hi` decides, `lo` breaks ties. Integer-valued components (counts) stay exact in f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Lex {
    pub hi: f64,
    pub lo: f64,
}

impl Lex {
    pub const ZERO: Lex = Lex { hi: 0.0, lo: 0.0 };
    /// A missing arc. Both halves are infinite so no tier can make it look cheap.
    pub const INF: Lex = Lex {
        hi: f64::INFINITY,
        lo: f64::INFINITY,
    };

    #[inline(always)]
    pub fn lt(self, other: Lex) -> bool {
        (self.hi < other.hi) | ((self.hi == other.hi) & (self.lo < other.lo))
    }

    #[inline(always)]
    pub fn is_finite(self) -> bool {
        self.hi.is_finite() && self.lo.is_finite()
    }
}

/// What a pair cache and a Dijkstra need of a cost: exact sums and a strict order. `Lex` carries
/// the policy's two tiers; plain `f64` serves the warm-started solver, where every agent is
/// placed and only the cost tier is left.
pub(super) trait Cost: Copy + Add<Output = Self> + Sub<Output = Self> {
    const INF: Self;
    fn lt(self, other: Self) -> bool;
}

impl Cost for Lex {
    const INF: Lex = Lex::INF;
    #[inline(always)]
    fn lt(self, other: Lex) -> bool {
        Lex::lt(self, other)
    }
}

impl Cost for f64 {
    const INF: f64 = f64::INFINITY;
    #[inline(always)]
    fn lt(self, other: f64) -> bool {
        self < other
    }
}

impl Add for Lex {
    type Output = Lex;
    #[inline(always)]
    fn add(self, o: Lex) -> Lex {
        Lex {
            hi: self.hi + o.hi,
            lo: self.lo + o.lo,
        }
    }
}

impl Sub for Lex {
    type Output = Lex;
    #[inline(always)]
    fn sub(self, o: Lex) -> Lex {
        Lex {
            hi: self.hi - o.hi,
            lo: self.lo - o.lo,
        }
    }
}

/// Arc costs of one instance: agent → model `j` is `cost[k][j]` lifted into the policy's pair,
/// agent → unassigned node (index `n_models`) is the policy's parking cost.
#[derive(Clone, Copy)]
pub(super) struct Keys<'a> {
    cost: &'a [f64],
    n_models: usize,
    /// MaxCardinality: placed = (0, c), parked = (1, 0) — fewer parked agents first.
    /// MinCost: placed = (c, 0), parked = (0, 1) — lower cost first, then fewer parked.
    cost_first: bool,
}

impl<'a> Keys<'a> {
    pub fn new(cost: &'a [f64], n_models: usize, policy: UnassignedPolicy) -> Self {
        Keys {
            cost,
            n_models,
            cost_first: policy == UnassignedPolicy::MinCost,
        }
    }

    /// Cost of parking an agent on the unassigned node.
    #[inline(always)]
    pub fn park(&self) -> Lex {
        if self.cost_first {
            Lex { hi: 0.0, lo: 1.0 }
        } else {
            Lex { hi: 1.0, lo: 0.0 }
        }
    }

    /// The `n_agents × n_models` costs transposed: `[j * n_agents + k]` is agent `k` on `j`.
    /// `None` when that copy cannot be allocated (the caller then reads rows).
    pub fn columns(&self, n_agents: usize) -> Option<Vec<f64>> {
        let m = self.n_models;
        let mut cols: Vec<f64> = Vec::new();
        cols.try_reserve_exact(n_agents.checked_mul(m)?).ok()?;
        cols.resize(n_agents * m, 0.0);
        // Blocks of rows keep both sides of the copy in cache.
        const B: usize = 64;
        for k0 in (0..n_agents).step_by(B) {
            let k1 = (k0 + B).min(n_agents);
            for j in 0..m {
                for k in k0..k1 {
                    cols[j * n_agents + k] = self.cost[k * m + j];
                }
            }
        }
        Some(cols)
    }

    /// Cost of agent `k` on node `node` (`n_models` = unassigned).
    #[inline(always)]
    pub fn key(&self, k: usize, node: usize) -> Lex {
        if node == self.n_models {
            return self.park();
        }
        self.lift(self.cost[k * self.n_models + node])
    }

    /// Arc cost of a placement whose plain cost is `c` (+inf = forbidden).
    #[inline(always)]
    pub fn lift(&self, c: f64) -> Lex {
        if c == f64::INFINITY {
            Lex::INF
        } else if self.cost_first {
            Lex { hi: c, lo: 0.0 }
        } else {
            Lex { hi: 0.0, lo: c }
        }
    }
}
