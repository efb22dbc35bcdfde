//! Exact min-cost placement started from model prices (from `auction`), for instances where every
//! agent can be placed (all costs finite, total capacity ≥ agents, most agents first): plain
//! `f64` costs, no unassigned node.
//!
//! Network: agents → models (one unit each), model `v` → sink `T` (up to `cap[v]`). With
//! potentials `pot` (a model's is minus its price, `T`'s is 0), the reduced cost of moving
//! agent `k` from `v` to `w` is `c[k][w] − c[k][v] + pot[v] − pot[w]`, of `v → T` is
//! `pot[v] − pot[T]` and of `T → w` is `pot[T] − pot[w]`. The start is a pseudo-flow with every
//! reduced cost ≥ 0: each agent on its cheapest model at the prices, each sink arc saturated
//! when its reduced cost is negative, empty when the reverse one is, else carrying what fits.
//! What is left are excesses (models with more agents than they pass on, or `T` receiving more
//! than the agents) and matching deficits; successive shortest paths (Dijkstra from every
//! excess at once, potentials updated on settled nodes) move one unit per path until none is
//! left. Each path keeps every reduced cost ≥ 0, so the final flow is a min-cost flow — the
//! same certificate as `solver`, reached in few short paths when the prices are close.

use super::lex::Cost;
use super::pairs::PairCache;
use crate::error::{Error, Result};

const NONE: u32 = u32::MAX;

pub(super) struct Warm<'a> {
    cost: &'a [f64],
    n: usize,
    m: usize,
    /// Capacities clamped to the number of agents (an unlimited one saturates at `n`).
    cap: Vec<usize>,
    node_of: Vec<u32>,
    members: Vec<Vec<u32>>,
    pos: Vec<u32>,
    pairs: PairCache<f64>,
    /// Units on each sink arc `v → T`, and their sum.
    flow: Vec<usize>,
    into_sink: usize,
    /// Potentials of the models, then `T` at index `m`.
    pot: Vec<f64>,
    label: Vec<f64>,
    pred: Vec<u32>,
    via: Vec<u32>,
    done: Vec<bool>,
    settled: Vec<u32>,
    dirty: Vec<u32>,
}

/// Model of every agent, optimal, given prices that only steer the work.
pub(super) fn solve(
    cost: &[f64],
    n: usize,
    m: usize,
    cap: &[usize],
    prices: &[f64],
) -> Result<Vec<u32>> {
    let mut warm = Warm::start(cost, n, m, cap, prices);
    while warm.excess_left() {
        warm.augment()?;
    }
    Ok(warm.node_of)
}

impl<'a> Warm<'a> {
    fn start(cost: &'a [f64], n: usize, m: usize, cap: &'a [usize], prices: &[f64]) -> Self {
        let mut pot: Vec<f64> = prices.iter().map(|&p| -p).collect();
        pot.push(0.0);
        let mut warm = Warm {
            cost,
            n,
            m,
            cap: cap.iter().map(|&c| c.min(n)).collect(),
            node_of: vec![NONE; n],
            members: vec![Vec::new(); m],
            pos: vec![NONE; n],
            pairs: PairCache::new(m, m),
            flow: vec![0; m],
            into_sink: 0,
            pot,
            label: vec![f64::INFINITY; m + 1],
            pred: vec![NONE; m + 1],
            via: vec![NONE; m + 1],
            done: vec![false; m + 1],
            settled: Vec::with_capacity(m + 1),
            dirty: Vec::with_capacity(m),
        };
        for k in 0..n {
            let row = &cost[k * m..(k + 1) * m];
            let mut best = (f64::INFINITY, 0);
            for (j, (&c, &p)) in row.iter().zip(&warm.pot).enumerate() {
                let r = c - p;
                if r < best.0 && cap[j] > 0 {
                    best = (r, j);
                }
            }
            warm.attach(k, best.1);
        }
        let t = warm.pot[m];
        for v in 0..m {
            let load = warm.members[v].len();
            warm.flow[v] = if warm.pot[v] < t {
                warm.cap[v]
            } else if warm.pot[v] > t {
                0
            } else {
                load.min(warm.cap[v])
            };
            warm.into_sink += warm.flow[v];
        }
        warm
    }

    /// Units a node holds beyond what it passes on (negative: a deficit).
    fn excess(&self, x: usize) -> i64 {
        if x == self.m {
            self.into_sink as i64 - self.n as i64
        } else {
            self.members[x].len() as i64 - self.flow[x] as i64
        }
    }

    fn excess_left(&self) -> bool {
        (0..=self.m).any(|x| self.excess(x) > 0)
    }

    /// One shortest path from any excess to the nearest deficit, one unit moved along it.
    fn augment(&mut self) -> Result<()> {
        let nodes = self.m + 1;
        let t_node = self.m;
        self.settled.clear();
        for x in 0..nodes {
            let source = self.excess(x) > 0;
            self.label[x] = if source { 0.0 } else { f64::INFINITY };
            self.pred[x] = NONE;
            self.done[x] = false;
        }
        let target = loop {
            let mut at = NONE as usize;
            let mut min = f64::INFINITY;
            for x in 0..nodes {
                if !self.done[x] && self.label[x] < min {
                    min = self.label[x];
                    at = x;
                }
            }
            if at == NONE as usize {
                return Err(internal());
            }
            if self.excess(at) < 0 {
                break at;
            }
            self.done[at] = true;
            self.settled.push(at as u32);
            if at == t_node {
                // T → w undoes a unit on w's sink arc.
                for w in 0..self.m {
                    if self.flow[w] > 0 && !self.done[w] {
                        let cand = min + self.pot[t_node] - self.pot[w];
                        if cand < self.label[w] {
                            self.label[w] = cand;
                            self.pred[w] = t_node as u32;
                            self.via[w] = NONE;
                        }
                    }
                }
                continue;
            }
            let v = at;
            let base = min + self.pot[v];
            if self.flow[v] < self.cap[v] && !self.done[t_node] {
                let cand = base - self.pot[t_node];
                if cand < self.label[t_node] {
                    self.label[t_node] = cand;
                    self.pred[t_node] = v as u32;
                    self.via[t_node] = NONE;
                }
            }
            let m = self.m;
            let (pot, done) = (&self.pot, &self.done);
            let (label, pred, via) = (&mut self.label, &mut self.pred, &mut self.via);
            if let Some((row, arg)) = row_of(&mut self.pairs, &self.members, self.cost, m, v) {
                for w in 0..m {
                    let cand = base + row[w] - pot[w];
                    if !done[w] && cand.lt(label[w]) {
                        label[w] = cand;
                        pred[w] = v as u32;
                        via[w] = arg[w];
                    }
                }
            }
        };
        let lt = self.label[target];
        for &x in &self.settled {
            let x = x as usize;
            self.pot[x] += self.label[x] - lt;
        }
        // Bottleneck: one unit through any agent move, more along sink arcs only.
        let mut units = self.excess(target).unsigned_abs() as usize;
        let mut to = target;
        let mut steps = 0;
        while self.pred[to] != NONE {
            let from = self.pred[to] as usize;
            units = units.min(if from == t_node {
                self.flow[to]
            } else if to == t_node {
                self.cap[from] - self.flow[from]
            } else {
                1
            });
            to = from;
            steps += 1;
            if steps > nodes {
                return Err(internal());
            }
        }
        units = units.min(self.excess(to) as usize);
        let mut to = target;
        while self.pred[to] != NONE {
            let from = self.pred[to] as usize;
            if from == t_node {
                self.flow[to] -= units;
                self.into_sink -= units;
            } else if to == t_node {
                self.flow[from] += units;
                self.into_sink += units;
            } else {
                let k = self.via[to];
                if k == NONE {
                    return Err(internal());
                }
                self.detach(k as usize, from);
                self.attach(k as usize, to);
            }
            to = from;
        }
        Ok(())
    }

    fn key(&self, k: usize, x: usize) -> f64 {
        self.cost[k * self.m + x]
    }

    /// Puts agent `k` on model `w` and offers its moves to `w`'s cached row.
    fn attach(&mut self, k: usize, w: usize) {
        self.node_of[k] = w as u32;
        self.pos[k] = self.members[w].len() as u32;
        self.members[w].push(k as u32);
        let others = self.members[w].len() - 1;
        if !self.pairs.has_row(w) {
            return;
        }
        let start = self.pairs.row_start(w);
        let row = &self.cost[k * self.m..(k + 1) * self.m];
        let kw = row[w];
        for (x, &c) in row.iter().enumerate() {
            if x != w {
                self.pairs.offer(start, x, c - kw, k as u32, others);
            }
        }
    }

    /// Takes agent `k` off model `v`; refills the cached pairs it leaves empty.
    fn detach(&mut self, k: usize, v: usize) {
        let p = self.pos[k] as usize;
        let list = &mut self.members[v];
        list.swap_remove(p);
        if let Some(&moved) = list.get(p) {
            self.pos[moved as usize] = p as u32;
        }
        if !self.pairs.has_row(v) {
            return;
        }
        self.dirty.clear();
        self.pairs.remove(v, k as u32, &mut self.dirty);
        let start = self.pairs.row_start(v);
        for i in 0..self.dirty.len() {
            let x = self.dirty[i] as usize;
            for idx in 0..self.members[v].len() {
                let k2 = self.members[v][idx] as usize;
                let val = self.key(k2, x) - self.key(k2, v);
                self.pairs.offer(start, x, val, k2 as u32, idx);
            }
        }
    }
}

/// `v`'s cached moves, built from its members the first time a search settles `v`: most models
/// are never settled when the prices are close, and a row costs a pass over the members' costs.
/// Once built, a row is kept up to date by `attach` and `detach`.
fn row_of<'p>(
    pairs: &'p mut PairCache<f64>,
    members: &[Vec<u32>],
    cost: &[f64],
    m: usize,
    v: usize,
) -> Option<(&'p [f64], &'p [u32])> {
    if !pairs.has_row(v) {
        let start = pairs.row_start(v);
        for (idx, &k) in members[v].iter().enumerate() {
            let row = &cost[k as usize * m..(k as usize + 1) * m];
            let kv = row[v];
            for (x, &c) in row.iter().enumerate() {
                if x != v {
                    pairs.offer(start, x, c - kv, k, idx);
                }
            }
        }
    }
    pairs.row(v)
}

fn internal() -> Error {
    Error::Infeasible("internal error in assign_capacitated: no repair path".into())
}
