//! Successive shortest paths with Dijkstra over the *models*, never over agents.
//!
//! Nodes are the `m` models plus the unassigned node `U` (index `m`, unlimited capacity).
//! Agents are inserted one at a time; each insertion is one shortest augmenting path from the
//! new agent to a node with spare room. Residual arcs through agents are condensed: moving some
//! agent `k` off model `v` onto node `w` costs `key(k, w) − key(k, v)`, independent of the
//! potentials, so only the cheapest such agent per ordered pair `(v, w)` matters. That minimum
//! is cached (`best`, `arg`) and repaired only for the pairs whose arg-min agent leaves `v`.
//!
//! Potentials keep reduced costs non-negative; after each search only settled nodes change
//! (JV-style), so nodes with spare room, including `U`, keep potential zero. That is what makes
//! "first node with room to be settled" the true shortest path to the sink.

use super::lex::{Keys, Lex};
use crate::error::{Error, Result};

const NONE: u32 = u32::MAX;

pub(super) struct Solver<'a> {
    keys: Keys<'a>,
    m: usize,
    cap: &'a [usize],
    /// Node of each inserted agent (`m` = unassigned).
    node_of: Vec<u32>,
    /// Agents on each real model, and each agent's index in that list (for O(1) removal).
    members: Vec<Vec<u32>>,
    pos: Vec<u32>,
    /// Row `v` (real models only; `U` is always a terminal so its row is never read), column
    /// `w` in `0..=m`: cheapest move of an agent from `v` to `w`, and that agent.
    best: Vec<Lex>,
    arg: Vec<u32>,
    pot: Vec<Lex>,
    // Scratch of one search, kept to avoid reallocating per agent.
    label: Vec<Lex>,
    pred: Vec<u32>,
    todo: Vec<u32>,
    settled: Vec<u32>,
    dirty: Vec<u32>,
    moves: Vec<(u32, u32, u32)>,
}

impl<'a> Solver<'a> {
    pub fn new(keys: Keys<'a>, n_agents: usize, m: usize, cap: &'a [usize]) -> Self {
        let nodes = m + 1;
        Solver {
            keys,
            m,
            cap,
            node_of: vec![NONE; n_agents],
            members: vec![Vec::new(); m],
            pos: vec![NONE; n_agents],
            best: vec![Lex::INF; m * nodes],
            arg: vec![NONE; m * nodes],
            pot: vec![Lex::ZERO; nodes],
            label: vec![Lex::INF; nodes],
            pred: vec![NONE; nodes],
            todo: Vec::with_capacity(nodes),
            settled: Vec::with_capacity(nodes),
            dirty: Vec::with_capacity(nodes),
            moves: Vec::with_capacity(nodes),
        }
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
        let nodes = self.m + 1;
        // Walk back from the terminal; each arc is the cached cheapest agent of its pair.
        let mut first = t;
        while self.pred[first] != NONE {
            let v = self.pred[first] as usize;
            let k = self.arg[v * nodes + first];
            if k == NONE {
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
        let mut min = Lex::INF;
        let mut at = 0;
        for v in 0..nodes {
            let l = self.keys.key(i, v) - self.pot[v];
            self.label[v] = l;
            self.pred[v] = NONE;
            if l.lt(min) {
                min = l;
                at = v;
            }
            self.todo.push(v as u32);
        }
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
            let base = lv + self.pot[v];
            let row = &self.best[v * nodes..(v + 1) * nodes];
            min = Lex::INF;
            at = 0;
            for (p, &w) in self.todo.iter().enumerate() {
                let w = w as usize;
                let cand = base + row[w] - self.pot[w];
                let mut lw = self.label[w];
                if cand.lt(lw) {
                    lw = cand;
                    self.label[w] = cand;
                    self.pred[w] = v as u32;
                }
                if lw.lt(min) {
                    min = lw;
                    at = p;
                }
            }
        }
    }

    /// Puts agent `k` on node `w` and lowers the cached minima of `w`'s row.
    fn attach(&mut self, k: usize, w: usize) {
        self.node_of[k] = w as u32;
        if w == self.m {
            return;
        }
        self.pos[k] = self.members[w].len() as u32;
        self.members[w].push(k as u32);
        let nodes = self.m + 1;
        let kw = self.keys.key(k, w);
        let row = w * nodes;
        for x in 0..nodes {
            if x == w {
                continue;
            }
            let val = self.keys.key(k, x) - kw;
            if val.lt(self.best[row + x]) {
                self.best[row + x] = val;
                self.arg[row + x] = k as u32;
            }
        }
    }

    /// Takes agent `k` off real model `v` and recomputes the pairs it was the minimum of.
    fn detach(&mut self, k: usize, v: usize) {
        let p = self.pos[k] as usize;
        let list = &mut self.members[v];
        list.swap_remove(p);
        if let Some(&moved) = list.get(p) {
            self.pos[moved as usize] = p as u32;
        }
        let nodes = self.m + 1;
        let row = v * nodes;
        self.dirty.clear();
        for x in 0..nodes {
            if self.arg[row + x] == k as u32 {
                self.dirty.push(x as u32);
                self.best[row + x] = Lex::INF;
                self.arg[row + x] = NONE;
            }
        }
        if self.dirty.is_empty() {
            return;
        }
        for &k2 in &self.members[v] {
            let kv = self.keys.key(k2 as usize, v);
            for &x in &self.dirty {
                let x = x as usize;
                let val = self.keys.key(k2 as usize, x) - kv;
                if val.lt(self.best[row + x]) {
                    self.best[row + x] = val;
                    self.arg[row + x] = k2;
                }
            }
        }
    }
}

fn internal() -> Error {
    Error::Infeasible("internal error in assign_capacitated: no augmenting path".into())
}
