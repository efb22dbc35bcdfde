//! Agent types: identical agents collapse into one row with a count, which turns the
//! assignment into a transportation problem (type `t` supplies `counts[t]` agents, model `j`
//! takes up to `cap[j]`, the unassigned node `U` takes any number).
//!
//! Solved by successive shortest paths on the small graph types → models, pushing the
//! bottleneck amount per path instead of one agent: residual arcs are type → node (always, any
//! amount) and node → type (when that type has flow there). Potentials keep reduced costs
//! non-negative; as in `solver`, only settled nodes move, so every node with room (models not
//! full and `U`) keeps potential zero and the first such node settled ends the shortest path.
//! Every augmentation exhausts a type, fills a model or empties a reverse arc, so the number of
//! paths follows the size of the small graph, not the number of agents.

use super::lex::{Keys, Lex};
use crate::error::{Error, Result};

const NONE: u32 = u32::MAX;

/// `flow[t * (m + 1) + v]`: agents of type `t` on node `v` (`m` = unassigned).
pub(super) fn solve_types(
    keys: Keys<'_>,
    counts: &[u64],
    m: usize,
    cap: &[usize],
) -> Result<Vec<u64>> {
    let n_types = counts.len();
    let nodes = m + 1;
    let mut flow = vec![0u64; n_types * nodes];
    let mut load = vec![0u64; m];
    let mut excess = counts.to_vec();
    // Reduced cost of type → node is `key + pt[t] − pv[v]`, of node → type (undoing flow)
    // `−key + pv[v] − pt[t]`. Types start at minus their cheapest key, so all are >= 0.
    let mut pt: Vec<Lex> = (0..n_types)
        .map(|t| {
            let mut best = Lex::INF;
            for v in 0..nodes {
                let k = keys.key(t, v);
                if k.lt(best) {
                    best = k;
                }
            }
            Lex::ZERO - best
        })
        .collect();
    let mut pv = vec![Lex::ZERO; nodes];
    let room = |load: &[u64], v: usize| -> u64 {
        if v == m {
            u64::MAX
        } else {
            (cap[v] as u64).saturating_sub(load[v])
        }
    };

    // Dijkstra scratch: labels, predecessors and settled flags for types and nodes.
    let mut dt = vec![Lex::INF; n_types];
    let mut dv = vec![Lex::INF; nodes];
    let mut pred_t = vec![NONE; n_types]; // node the type was reached from
    let mut pred_v = vec![NONE; nodes]; // type the node was reached from
    let mut done_t = vec![false; n_types];
    let mut done_v = vec![false; nodes];
    let mut settled_t: Vec<u32> = Vec::new();
    let mut settled_v: Vec<u32> = Vec::new();

    for s in 0..n_types {
        while excess[s] > 0 {
            dt.fill(Lex::INF);
            dv.fill(Lex::INF);
            done_t.fill(false);
            done_v.fill(false);
            settled_t.clear();
            settled_v.clear();
            dt[s] = Lex::ZERO;
            done_t[s] = true;
            settled_t.push(s as u32);
            relax_type(&keys, s, Lex::ZERO, &pt, &pv, &done_v, &mut dv, &mut pred_v);
            let sink = loop {
                // Closest unsettled node or type; nodes first on ties (a sink ends the search).
                let mut best = Lex::INF;
                let mut pick = (false, usize::MAX);
                for v in 0..nodes {
                    if !done_v[v] && dv[v].lt(best) {
                        best = dv[v];
                        pick = (false, v);
                    }
                }
                for t in 0..n_types {
                    if !done_t[t] && dt[t].lt(best) {
                        best = dt[t];
                        pick = (true, t);
                    }
                }
                // `U` is always reachable at a finite cost, so an infinite minimum is a bug.
                if pick.1 == usize::MAX || !best.is_finite() {
                    return Err(internal());
                }
                let (is_type, x) = pick;
                if is_type {
                    done_t[x] = true;
                    settled_t.push(x as u32);
                    relax_type(&keys, x, best, &pt, &pv, &done_v, &mut dv, &mut pred_v);
                    continue;
                }
                if room(&load, x) > 0 {
                    break x;
                }
                done_v[x] = true;
                settled_v.push(x as u32);
                // Reverse arcs x → t for types with agents on x: cost −key(t, x).
                for t in 0..n_types {
                    if done_t[t] || flow[t * nodes + x] == 0 {
                        continue;
                    }
                    let cand = best - keys.key(t, x) + pv[x] - pt[t];
                    if cand.lt(dt[t]) {
                        dt[t] = cand;
                        pred_t[t] = x as u32;
                    }
                }
            };
            let lt = dv[sink];
            for &t in &settled_t {
                let t = t as usize;
                pt[t] = pt[t] + (dt[t] - lt);
            }
            for &v in &settled_v {
                let v = v as usize;
                pv[v] = pv[v] + (dv[v] - lt);
            }
            // Bottleneck along the path sink ← t ← v ← t' ← … ← s.
            let mut delta = excess[s].min(room(&load, sink));
            let mut v = sink;
            let mut hops = 0usize;
            loop {
                let t = pred_v[v] as usize;
                if t == s {
                    break;
                }
                let back = pred_t[t] as usize;
                delta = delta.min(flow[t * nodes + back]);
                v = back;
                hops += 1;
                if hops > nodes {
                    return Err(internal());
                }
            }
            if delta == 0 {
                return Err(internal());
            }
            let mut v = sink;
            loop {
                let t = pred_v[v] as usize;
                flow[t * nodes + v] += delta;
                if v < m {
                    load[v] += delta;
                }
                if t == s {
                    break;
                }
                let back = pred_t[t] as usize;
                flow[t * nodes + back] -= delta;
                if back < m {
                    load[back] -= delta;
                }
                v = back;
            }
            excess[s] -= delta;
        }
    }
    Ok(flow)
}

/// Relaxes the arcs out of settled type `t` (at label `base`) to every unsettled node.
#[allow(clippy::too_many_arguments)]
#[inline]
fn relax_type(
    keys: &Keys<'_>,
    t: usize,
    base: Lex,
    pt: &[Lex],
    pv: &[Lex],
    done_v: &[bool],
    dv: &mut [Lex],
    pred_v: &mut [u32],
) {
    let from = base + pt[t];
    for v in 0..dv.len() {
        if done_v[v] {
            continue;
        }
        let cand = from + keys.key(t, v) - pv[v];
        if cand.lt(dv[v]) {
            dv[v] = cand;
            pred_v[v] = t as u32;
        }
    }
}

fn internal() -> Error {
    Error::Infeasible("internal error in assign_capacitated: no augmenting path (types)".into())
}

/// Distinct rows of a row-major `n × m` matrix (bit-equal entries): the distinct rows in order
/// of first appearance, and the type index of every row; `None` once more than `limit` are
/// distinct.
pub(super) fn distinct_rows(
    cost: &[f64],
    n: usize,
    m: usize,
    limit: usize,
) -> Option<(Vec<usize>, Vec<u32>)> {
    use std::collections::HashMap;
    let mut first: Vec<usize> = Vec::new();
    let mut type_of = Vec::with_capacity(n);
    let mut by_hash: HashMap<u64, Vec<u32>> = HashMap::new();
    for i in 0..n {
        let row = &cost[i * m..(i + 1) * m];
        let h = row.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, c| {
            (h ^ c.to_bits())
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(5)
        });
        let bucket = by_hash.entry(h).or_default();
        let found = bucket.iter().copied().find(|&t| {
            let r = first[t as usize];
            let other = &cost[r * m..(r + 1) * m];
            other
                .iter()
                .zip(row)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        });
        let t = match found {
            Some(t) => t,
            None if first.len() >= limit => return None,
            None => {
                let t = first.len() as u32;
                first.push(i);
                bucket.push(t);
                t
            }
        };
        type_of.push(t);
    }
    Some((first, type_of))
}

/// Per-agent model (−1 = unassigned) from a type flow: agents of type `t`, in the order given,
/// take type `t`'s models in ascending index, each as many times as its flow, then `U`.
pub(super) fn expand(type_of: &[u32], flow: &[u64], m: usize) -> Vec<i64> {
    let nodes = m + 1;
    let n_types = flow.len() / nodes;
    // Cursor per type: (current node, agents still to hand out on it).
    let mut cursor: Vec<(usize, u64)> = (0..n_types).map(|t| (0, flow[t * nodes])).collect();
    type_of
        .iter()
        .map(|&t| {
            let t = t as usize;
            let (mut v, mut left) = cursor[t];
            while left == 0 && v + 1 < nodes {
                v += 1;
                left = flow[t * nodes + v];
            }
            cursor[t] = (v, left.saturating_sub(1));
            if v < m && left > 0 {
                v as i64
            } else {
                -1
            }
        })
        .collect()
}
