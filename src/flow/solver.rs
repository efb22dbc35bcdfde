//! Successive shortest paths with Dijkstra over the *models*, never over agents.
//!
//! Nodes are the `m` models plus the unassigned node `U` (index `m`, unlimited capacity).
//! Agents are inserted one at a time; each insertion is one shortest augmenting path from the
//! new agent to a node with spare room. Residual arcs through agents are condensed: moving some
//! agent `k` off model `v` onto node `w` costs `key(k, w) − key(k, v)`, independent of the
//! potentials, so only the cheapest such agent per ordered pair `(v, w)` matters. Those minima
//! are cached (`pairs`) when the m × m table is affordable; otherwise each settled model scans
//! its members directly (same search, more work per node, O(n + m) memory).
//!
//! Potentials keep reduced costs non-negative; after each search only settled nodes change
//! (JV-style), so nodes with spare room, including `U`, keep potential zero. That is what makes
//! "first node with room to be settled" the true shortest path to the sink.

use super::lex::{Keys, Lex};
use super::pairs::PairCache;
use crate::error::{Error, Result};

const NONE: u32 = u32::MAX;

/// How the search finds the cheapest move between two models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cache {
    /// Scan the members of each settled model (O(n + m) memory).
    Off,
    /// Pair cache, refilled by reading the members' rows (what `Columns` does when the copy
    /// cannot be allocated; tests pin it).
    #[cfg_attr(not(test), allow(dead_code))]
    Rows,
    /// Pair cache, refilled from a column-major copy of the costs (falls back to `Rows` when
    /// the copy cannot be allocated).
    Columns,
}

pub(super) struct Solver<'a> {
    keys: Keys<'a>,
    m: usize,
    cap: &'a [usize],
    /// Node of each inserted agent (`m` = unassigned).
    node_of: Vec<u32>,
    /// Agents on each real model, and each agent's index in that list (for O(1) removal).
    members: Vec<Vec<u32>>,
    pos: Vec<u32>,
    /// Rows: real models only (`U` is always a terminal, so nothing ever moves out of it).
    pairs: Option<PairCache>,
    /// With the cache: the costs column by column (`cols[j * n + k]`), so that refilling a
    /// pair scans one compact column instead of one far-apart row per member (the refill was
    /// ~2/3 of the time at 100,000 agents × 100 models, waiting on memory). `None` without the
    /// cache or when the copy cannot be allocated: the refill then reads rows.
    cols: Option<Vec<f64>>,
    n: usize,
    pot: Vec<Lex>,
    // Scratch of one search, kept to avoid reallocating per agent.
    label: Vec<Lex>,
    pred: Vec<u32>,
    /// The agent moved along the arc into each node (`NONE` for the new agent's first arc).
    via: Vec<u32>,
    todo: Vec<u32>,
    settled: Vec<u32>,
    dirty: Vec<u32>,
    moves: Vec<(u32, u32, u32)>,
}

impl<'a> Solver<'a> {
    pub fn new(keys: Keys<'a>, n_agents: usize, m: usize, cap: &'a [usize], cached: Cache) -> Self {
        let nodes = m + 1;
        Solver {
            keys,
            m,
            cap,
            node_of: vec![NONE; n_agents],
            members: vec![Vec::new(); m],
            pos: vec![NONE; n_agents],
            pairs: (cached != Cache::Off).then(|| PairCache::new(m, nodes)),
            cols: if cached == Cache::Columns {
                keys.columns(n_agents)
            } else {
                None
            },
            n: n_agents,
            pot: vec![Lex::ZERO; nodes],
            label: vec![Lex::INF; nodes],
            pred: vec![NONE; nodes],
            via: vec![NONE; nodes],
            todo: Vec::with_capacity(nodes),
            settled: Vec::with_capacity(nodes),
            dirty: Vec::with_capacity(nodes),
            moves: Vec::with_capacity(nodes),
        }
    }

    /// Each node's price (minus its potential; nodes with room, `U` included, are at zero),
    /// which certifies the placement so far: what the warm start reads from a solved sample.
    pub fn prices(&self) -> Vec<Lex> {
        self.pot.iter().map(|&p| Lex::ZERO - p).collect()
    }

    /// Node of every agent (`m` = unassigned), valid once all agents are inserted.
    pub fn into_nodes(self) -> Vec<u32> {
        self.node_of
    }

    #[inline]
    fn has_room(&self, v: usize) -> bool {
        v == self.m || self.members[v].len() < self.cap[v]
    }

    /// Places agent `i` optimally given the agents already placed (one SSP augmentation).
    pub fn insert(&mut self, i: usize) -> Result<()> {
        let t = self.shortest_path(i)?;
        let lt = self.label[t];
        for &s in &self.settled {
            let s = s as usize;
            self.pot[s] = self.pot[s] + self.label[s] - lt;
        }
        self.moves.clear();
        let mut first = t;
        while self.pred[first] != NONE {
            let v = self.pred[first] as usize;
            let k = self.via[first];
            if k == NONE || self.moves.len() > self.m {
                return Err(internal());
            }
            self.moves.push((k, v as u32, first as u32));
            first = v;
        }
        for idx in 0..self.moves.len() {
            let (k, from, to) = self.moves[idx];
            self.detach(k as usize, from as usize);
            self.attach(k as usize, to as usize);
        }
        self.attach(i, first);
        Ok(())
    }

    /// Dense Dijkstra from agent `i` over the nodes; stops at the first settled node with room.
    fn shortest_path(&mut self, i: usize) -> Result<usize> {
        let nodes = self.m + 1;
        self.todo.clear();
        self.settled.clear();
        for v in 0..nodes {
            self.label[v] = self.keys.key(i, v) - self.pot[v];
            self.pred[v] = NONE;
            self.todo.push(v as u32);
        }
        let mut at = self.closest();
        loop {
            if at >= self.todo.len() {
                return Err(internal());
            }
            let v = self.todo.swap_remove(at) as usize;
            let lv = self.label[v];
            // `U` is always reachable at a finite cost, so an infinite minimum is a bug.
            if !lv.is_finite() {
                return Err(internal());
            }
            if self.has_room(v) {
                return Ok(v);
            }
            self.settled.push(v as u32);
            at = if self.pairs.is_some() {
                self.relax_cached(v, lv + self.pot[v])
            } else {
                self.relax_direct(v, lv + self.pot[v]);
                self.closest()
            };
        }
    }

    /// Position in `todo` of the smallest label.
    fn closest(&self) -> usize {
        let mut min = Lex::INF;
        let mut at = 0;
        for (p, &w) in self.todo.iter().enumerate() {
            let lw = self.label[w as usize];
            if lw.lt(min) {
                min = lw;
                at = p;
            }
        }
        at
    }

    /// Relaxes the arcs out of settled `v` from its cached row; returns the next `closest()`.
    #[inline]
    fn relax_cached(&mut self, v: usize, base: Lex) -> usize {
        let Some((row, arg)) = self.pairs.as_ref().and_then(|p| p.row(v)) else {
            return self.closest(); // a model that never had members has no arcs out
        };
        let mut min = Lex::INF;
        let mut at = 0;
        for (p, &w) in self.todo.iter().enumerate() {
            let w = w as usize;
            let cand = base + row[w] - self.pot[w];
            let mut lw = self.label[w];
            if cand.lt(lw) {
                lw = cand;
                self.label[w] = cand;
                self.pred[w] = v as u32;
                self.via[w] = arg[w];
            }
            if lw.lt(min) {
                min = lw;
                at = p;
            }
        }
        at
    }

    /// Relaxes the arcs out of settled `v` through each of its members (no cache).
    fn relax_direct(&mut self, v: usize, base: Lex) {
        for &k in &self.members[v] {
            let from = base - self.keys.key(k as usize, v);
            for &w in &self.todo {
                let w = w as usize;
                let cand = from + self.keys.key(k as usize, w) - self.pot[w];
                if cand.lt(self.label[w]) {
                    self.label[w] = cand;
                    self.pred[w] = v as u32;
                    self.via[w] = k;
                }
            }
        }
    }

    /// Puts agent `k` on node `w` and offers its moves to `w`'s cached row.
    fn attach(&mut self, k: usize, w: usize) {
        self.node_of[k] = w as u32;
        if w == self.m {
            return;
        }
        self.pos[k] = self.members[w].len() as u32;
        self.members[w].push(k as u32);
        let others = self.members[w].len() - 1;
        let Some(pairs) = &mut self.pairs else {
            return;
        };
        let keys = self.keys;
        pairs.offer_moves(w, k as u32, others, |x| keys.key(k, x));
    }

    /// Takes agent `k` off real model `v`; refills the cached pairs it leaves empty.
    fn detach(&mut self, k: usize, v: usize) {
        let p = self.pos[k] as usize;
        let list = &mut self.members[v];
        list.swap_remove(p);
        if let Some(&moved) = list.get(p) {
            self.pos[moved as usize] = p as u32;
        }
        let Some(pairs) = &mut self.pairs else {
            return;
        };
        self.dirty.clear();
        pairs.remove(v, k as u32, &mut self.dirty);
        if self.dirty.is_empty() {
            return;
        }
        let (n, m, keys) = (self.n, self.m, self.keys);
        // Cost of member `k2` on node `x`, from the column copy when there is one.
        let key = |k2: usize, x: usize| match &self.cols {
            Some(cols) if x < m => keys.lift(cols[x * n + k2]),
            _ => keys.key(k2, x),
        };
        pairs.refill(v, &self.dirty, &self.members[v], key);
    }
}

fn internal() -> Error {
    Error::Infeasible("internal error in assign_capacitated: no augmenting path".into())
}
