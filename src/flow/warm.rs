//! Exact min-cost placement started from model prices (from `auction` or a solved sample), so
//! that a good guess costs a few short repair paths instead of one long search per agent.
//!
//! Network: agents → models and the unassigned node `U` (index `m`, room for every agent, the
//! policy's parking cost), each of those → sink `T` (index `m + 1`, up to its capacity). Costs
//! are the policy's two-tier `Lex` keys, so both policies and forbidden pairs are exact. With
//! potentials `pot` (minus the prices; `T`'s is 0), moving agent `k` from `v` to `w` costs
//! `key(k, w) − key(k, v) + pot[v] − pot[w]`, `v → T` costs `pot[v] − pot[T]` and `T → w`
//! costs `pot[T] − pot[w]`. The start is a pseudo-flow with every reduced cost ≥ 0: each agent
//! on its cheapest node at the prices, each sink arc saturated when its reduced cost is
//! negative, empty when the reverse one is, else carrying what fits. What is left are
//! excesses (nodes holding more agents than they pass on, or `T` receiving more than there are
//! agents) and matching deficits; successive shortest paths (Dijkstra from every excess at
//! once, potentials updated on settled nodes) move them until none is left. Every step keeps
//! every reduced cost ≥ 0, so the result is a min-cost flow: the same certificate as `solver`.

use super::lex::{Keys, Lex};
use super::pairs::PairCache;
use crate::error::{Error, Result};

const NONE: u32 = u32::MAX;

pub(super) struct Warm<'a> {
    keys: Keys<'a>,
    n: usize,
    /// Placement nodes: the models, then `U` at index `m`; `T` is at `nodes`.
    nodes: usize,
    /// Capacities clamped to the number of agents (`U` and unlimited models take all of them).
    cap: Vec<usize>,
    node_of: Vec<u32>,
    members: Vec<Vec<u32>>,
    pos: Vec<u32>,
    pairs: PairCache<Lex>,
    /// Units on each sink arc `v → T`, and their sum.
    flow: Vec<usize>,
    into_sink: usize,
    /// Potentials of the placement nodes, then `T`.
    pot: Vec<Lex>,
    label: Vec<Lex>,
    pred: Vec<u32>,
    via: Vec<u32>,
    done: Vec<bool>,
    source: Vec<bool>,
    settled: Vec<u32>,
    dirty: Vec<u32>,
}

/// Node of every agent (`m` = unassigned), optimal, given prices per placement node (`m + 1`
/// of them, `U` last) that only steer the work; and the final prices (relative to the sink's,
/// so a node with room is at zero), which certify it.
pub(super) fn solve(
    keys: Keys<'_>,
    n: usize,
    cap: &[usize],
    prices: &[Lex],
) -> Result<(Vec<u32>, Vec<Lex>)> {
    let mut warm = Warm::start(keys, n, cap, prices);
    while warm.excess_left() {
        warm.augment()?;
    }
    let sink = warm.pot[warm.nodes];
    let prices = warm.pot[..warm.nodes].iter().map(|&p| sink - p).collect();
    Ok((warm.node_of, prices))
}

impl<'a> Warm<'a> {
    fn start(keys: Keys<'a>, n: usize, cap: &[usize], prices: &[Lex]) -> Self {
        let nodes = cap.len() + 1;
        let mut pot: Vec<Lex> = prices.iter().map(|&p| Lex::ZERO - p).collect();
        pot.push(Lex::ZERO);
        let mut clamped: Vec<usize> = cap.iter().map(|&c| c.min(n)).collect();
        clamped.push(n);
        let mut warm = Warm {
            keys,
            n,
            nodes,
            cap: clamped,
            node_of: vec![NONE; n],
            members: vec![Vec::new(); nodes],
            pos: vec![NONE; n],
            pairs: PairCache::new(nodes, nodes),
            flow: vec![0; nodes],
            into_sink: 0,
            pot,
            label: vec![Lex::INF; nodes + 1],
            pred: vec![NONE; nodes + 1],
            via: vec![NONE; nodes + 1],
            done: vec![false; nodes + 1],
            source: vec![false; nodes + 1],
            settled: Vec::with_capacity(nodes + 1),
            dirty: Vec::with_capacity(nodes),
        };
        for k in 0..n {
            // `U` is always open, so every agent has a finite choice.
            let mut best = (Lex::INF, nodes - 1);
            for x in 0..nodes {
                let r = keys.key(k, x) - warm.pot[x];
                if warm.cap[x] > 0 && r.lt(best.0) {
                    best = (r, x);
                }
            }
            warm.attach(k, best.1);
        }
        let t = warm.pot[nodes];
        for v in 0..nodes {
            let load = warm.members[v].len();
            warm.flow[v] = if warm.pot[v].lt(t) {
                warm.cap[v]
            } else if t.lt(warm.pot[v]) {
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
        if x == self.nodes {
            self.into_sink as i64 - self.n as i64
        } else {
            self.members[x].len() as i64 - self.flow[x] as i64
        }
    }

    fn excess_left(&self) -> bool {
        (0..=self.nodes).any(|x| self.excess(x) > 0)
    }

    /// One shortest path from any excess to the nearest deficit; moves what it can carry.
    fn augment(&mut self) -> Result<()> {
        let t_node = self.nodes;
        let all = self.nodes + 1;
        self.settled.clear();
        for x in 0..all {
            self.label[x] = if self.excess(x) > 0 {
                Lex::ZERO
            } else {
                Lex::INF
            };
            self.pred[x] = NONE;
            // A source stays a source: were rounding to make some reduced cost a hair below
            // zero, no path may pass through one (each path starts at an excess).
            self.done[x] = false;
            self.source[x] = self.excess(x) > 0;
        }
        let target = loop {
            let mut at = NONE as usize;
            let mut min = Lex::INF;
            for x in 0..all {
                if !self.done[x] && self.label[x].lt(min) {
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
                for w in 0..self.nodes {
                    if self.flow[w] > 0 && !self.done[w] && !self.source[w] {
                        let cand = min + self.pot[t_node] - self.pot[w];
                        if cand.lt(self.label[w]) {
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
            if self.flow[v] < self.cap[v] && !self.done[t_node] && !self.source[t_node] {
                let cand = base - self.pot[t_node];
                if cand.lt(self.label[t_node]) {
                    self.label[t_node] = cand;
                    self.pred[t_node] = v as u32;
                    self.via[t_node] = NONE;
                }
            }
            let nodes = self.nodes;
            let (pot, done, source) = (&self.pot, &self.done, &self.source);
            let (label, pred, via) = (&mut self.label, &mut self.pred, &mut self.via);
            if let Some((row, arg)) = row_of(&mut self.pairs, &self.members, self.keys, v) {
                for w in 0..nodes {
                    let cand = base + row[w] - pot[w];
                    if !done[w] && !source[w] && cand.lt(label[w]) {
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
            self.pot[x] = self.pot[x] + self.label[x] - lt;
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
            if steps > all {
                return Err(internal());
            }
        }
        units = units.min(self.excess(to).max(0) as usize);
        if units == 0 {
            return Err(internal());
        }
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

    /// Puts agent `k` on node `w` and offers its moves to `w`'s cached row, if it has one.
    fn attach(&mut self, k: usize, w: usize) {
        self.node_of[k] = w as u32;
        self.pos[k] = self.members[w].len() as u32;
        self.members[w].push(k as u32);
        let others = self.members[w].len() - 1;
        if self.pairs.has_row(w) {
            let keys = self.keys;
            self.pairs
                .offer_moves(w, k as u32, others, |x| keys.key(k, x));
        }
    }

    /// Takes agent `k` off node `v`; refills the cached pairs it leaves empty.
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
        let keys = self.keys;
        self.pairs
            .refill(v, &self.dirty, &self.members[v], |k2, x| keys.key(k2, x));
    }
}

/// `v`'s cached moves, built from its members the first time a search settles `v`: most nodes
/// are never settled when the prices are close, and a row costs a pass over the members' costs.
/// Once built, a row is kept up to date by `attach` and `detach`.
fn row_of<'p>(
    pairs: &'p mut PairCache<Lex>,
    members: &[Vec<u32>],
    keys: Keys<'_>,
    v: usize,
) -> Option<(&'p [Lex], &'p [u32])> {
    if !pairs.has_row(v) {
        for (idx, &k) in members[v].iter().enumerate() {
            pairs.offer_moves(v, k, idx, |x| keys.key(k as usize, x));
        }
    }
    pairs.row(v)
}

fn internal() -> Error {
    Error::Infeasible("internal error in assign_capacitated: no repair path".into())
}
