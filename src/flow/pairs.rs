//! The cheapest agents per ordered pair of nodes `(v, x)`: moving agent `k` off model `v` onto
//! node `x` costs `key(k, x) − key(k, v)` whatever the potentials, so Dijkstra only needs the
//! minimum over `v`'s members. Each pair keeps its `K` smallest moves in ascending order: the
//! agent that leaves `v` is usually the minimum of many pairs at once, and with a short list the
//! next one is already known, so rescanning `v`'s members becomes rare.
//!
//! Invariant per pair: the listed agents are the `len` smallest moves among `v`'s members
//! (every unlisted member is at least the last listed one); a list is empty only when `v` is.
//! Rows are allocated when a model gets its first member, so few agents cost little memory.

use super::lex::{Cost, Lex};

const K: usize = 4;
const NONE: u32 = u32::MAX;

pub(super) struct PairCache<C: Cost = Lex> {
    nodes: usize,
    /// Storage row of each model, `NONE` until the model first gets a member.
    slot: Vec<u32>,
    /// List heads, kept apart so that Dijkstra scans one compact row.
    best: Vec<C>,
    arg: Vec<u32>,
    vals: Vec<C>,
    /// `NONE` past each list's length, so a lookup can scan a fixed `K` slots.
    ids: Vec<u32>,
    len: Vec<u8>,
}

impl<C: Cost> PairCache<C> {
    pub fn new(models: usize, nodes: usize) -> Self {
        PairCache {
            nodes,
            slot: vec![NONE; models],
            best: Vec::new(),
            arg: Vec::new(),
            vals: Vec::new(),
            ids: Vec::new(),
            len: Vec::new(),
        }
    }

    /// Cheapest move cost and its agent from `v` to every node (`None`: `v` never had members).
    #[inline]
    pub fn row(&self, v: usize) -> Option<(&[C], &[u32])> {
        let s = self.slot[v];
        if s == NONE {
            return None;
        }
        let r = s as usize * self.nodes..(s as usize + 1) * self.nodes;
        Some((&self.best[r.clone()], &self.arg[r]))
    }

    /// Whether `v`'s row exists (rows are made by `row_start`).
    #[inline]
    pub fn has_row(&self, v: usize) -> bool {
        self.slot[v] != NONE
    }

    /// First pair index of `v`'s row, allocating the row on first use.
    #[inline]
    pub fn row_start(&mut self, v: usize) -> usize {
        if self.slot[v] == NONE {
            self.slot[v] = (self.len.len() / self.nodes) as u32;
            let n = self.nodes;
            self.best.resize(self.best.len() + n, C::INF);
            self.arg.resize(self.arg.len() + n, NONE);
            self.vals.resize(self.vals.len() + n * K, C::INF);
            self.ids.resize(self.ids.len() + n * K, NONE);
            self.len.resize(self.len.len() + n, 0);
        }
        self.slot[v] as usize * self.nodes
    }

    /// Offers agent `k` with move cost `val` to pair `x` of the row starting at `start`;
    /// `others` is how many other members of that model have been offered to this pair (so the
    /// list is complete if it holds that many).
    #[inline]
    pub fn offer(&mut self, start: usize, x: usize, val: C, k: u32, others: usize) {
        let p = start + x;
        let l = self.len[p] as usize;
        let base = p * K;
        let take = (l < K && l == others) || (l > 0 && val.lt(self.vals[base + l - 1]));
        if !take {
            return;
        }
        let new_len = (l + 1).min(K);
        // Shift larger entries right; when full, the largest falls off the end.
        let mut i = new_len - 1;
        while i > 0 && val.lt(self.vals[base + i - 1]) {
            self.vals[base + i] = self.vals[base + i - 1];
            self.ids[base + i] = self.ids[base + i - 1];
            i -= 1;
        }
        self.vals[base + i] = val;
        self.ids[base + i] = k;
        self.len[p] = new_len as u8;
        if i == 0 {
            self.best[p] = val;
            self.arg[p] = k;
        }
    }

    /// Offers every move of agent `k` off `v` to `v`'s row, `key(x)` being its cost on node
    /// `x`; `others` as in `offer`.
    #[inline]
    pub fn offer_moves(&mut self, v: usize, k: u32, others: usize, key: impl Fn(usize) -> C) {
        let start = self.row_start(v);
        let kv = key(v);
        for x in (0..self.nodes).filter(|&x| x != v) {
            self.offer(start, x, key(x) - kv, k, others);
        }
    }

    /// Refills the pairs `dirty` of row `v` (left empty by `remove`) from `v`'s `members`,
    /// `key(k, x)` being member `k`'s cost on node `x`.
    pub fn refill(
        &mut self,
        v: usize,
        dirty: &[u32],
        members: &[u32],
        key: impl Fn(usize, usize) -> C,
    ) {
        let start = self.row_start(v);
        for &x in dirty {
            let x = x as usize;
            for (idx, &k) in members.iter().enumerate() {
                let k = k as usize;
                self.offer(start, x, key(k, x) - key(k, v), k as u32, idx);
            }
        }
    }

    /// Drops agent `k` (leaving `v`) from row `v`; pairs left empty are pushed onto `dirty` and
    /// must be refilled with `offer` from `v`'s remaining members.
    pub fn remove(&mut self, v: usize, k: u32, dirty: &mut Vec<u32>) {
        let start = self.row_start(v);
        for x in 0..self.nodes {
            let p = start + x;
            let base = p * K;
            let Some(i) = self.ids[base..base + K].iter().position(|&id| id == k) else {
                continue;
            };
            let l = self.len[p] as usize;
            for s in i..l - 1 {
                self.vals[base + s] = self.vals[base + s + 1];
                self.ids[base + s] = self.ids[base + s + 1];
            }
            self.vals[base + l - 1] = C::INF;
            self.ids[base + l - 1] = NONE;
            self.len[p] = (l - 1) as u8;
            if i == 0 {
                self.best[p] = self.vals[base];
                self.arg[p] = self.ids[base];
                if l == 1 {
                    dirty.push(x as u32);
                }
            }
        }
    }
}
