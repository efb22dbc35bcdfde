//! Model prices from an ε-scaling auction (Bertsekas), used only to warm-start the exact solver
//! in `warm`: prices within a few ε of the optimal duals leave it a few short repair paths
//! instead of one long shortest-path search per agent.
//!
//! Each model is `cap[j]` similar slots with their own prices; an agent bids for the cheapest
//! slot of the model that is best for it at current prices, raising that slot's price by its
//! margin over the second-best slot (possibly another slot of the same model) plus ε, and
//! displacing the slot's holder. Slots never bid on cost 0 and are not stored, so an unlimited
//! capacity costs no memory. Each phase divides ε and reassigns every agent from the previous
//! phase's prices. Preconditions (checked by the caller): every cost finite, total capacity at
//! least the number of agents, so every phase ends with all agents placed.

const NONE: u32 = u32::MAX;

/// The first and last ε as shares of the cost range, and how much ε shrinks per phase. Measured
/// on 20,000 × 1,000 dot-product costs (phases of bids against repair paths): a coarser end
/// leaves more repairs, a finer one more bids; larger steps or a coarser start cost more bids.
const FIRST_SHARE: f32 = 0.05;
const FINAL_SHARE: f32 = 1e-4;
const SHRINK: f32 = 4.0;
/// Bids per person and phase beyond which the auction gives up (~10 per person per phase in the
/// measured runs).
const MAX_BIDS_PER_PERSON: usize = 1000;

/// Slots of one model that have been bid on: a binary min-heap on price, with their holders.
#[derive(Default)]
struct Slots {
    heap: Vec<(f32, u32)>,
}

impl Slots {
    fn sift_down(&mut self, mut i: usize) {
        let h = &mut self.heap;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut low = i;
            if l < h.len() && h[l].0 < h[low].0 {
                low = l;
            }
            if r < h.len() && h[r].0 < h[low].0 {
                low = r;
            }
            if low == i {
                return;
            }
            h.swap(i, low);
            i = low;
        }
    }

    fn push(&mut self, price: f32, holder: u32) {
        let h = &mut self.heap;
        h.push((price, holder));
        let mut i = h.len() - 1;
        while i > 0 && h[(i - 1) / 2].0 > h[i].0 {
            h.swap(i, (i - 1) / 2);
            i = (i - 1) / 2;
        }
    }

    /// Price of the second-cheapest stored slot (the cheapest is the root).
    fn second(&self) -> f32 {
        match self.heap.len() {
            0 | 1 => f32::INFINITY,
            2 => self.heap[1].0,
            _ => self.heap[1].0.min(self.heap[2].0),
        }
    }
}

/// Prices per model after the last phase (relative to the cheapest, 0 where a model keeps room):
/// agents' best choices at these prices are within ε of optimal, ε being `FINAL_SHARE` of the
/// cost range. `None` when the single-precision copy cannot be allocated or a phase runs past
/// its bid budget.
pub(super) fn prices(cost: &[f64], n: usize, m: usize, cap: &[usize]) -> Option<Vec<f64>> {
    let (lo, hi) = cost
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &c| {
            (a.min(c), b.max(c))
        });
    let range = if n == 0 || hi <= lo { 0.0 } else { hi - lo };
    let mut slots: Vec<Slots> = (0..m).map(|_| Slots::default()).collect();
    // Slots never bid on, per model (price 0); capacities beyond `n` never matter.
    let mut virgin: Vec<usize> = cap.iter().map(|&c| c.min(n)).collect();
    // Price of each model's cheapest slot, kept apart so a bid scans one compact array.
    // A model without capacity is never a choice.
    let mut min_price: Vec<f32> = virgin
        .iter()
        .map(|&v| if v == 0 { f32::INFINITY } else { 0.0 })
        .collect();
    if range == 0.0 {
        return Some(min_price.iter().map(|&p| p as f64).collect());
    }
    // The auction only steers the exact solver, so it bids on a single-precision copy scaled to
    // [0, 1]: half the memory traffic per bid, which is what a bid costs.
    let mut scaled: Vec<f32> = Vec::new();
    scaled.try_reserve_exact(cost.len()).ok()?;
    scaled.extend(cost.iter().map(|&c| ((c - lo) / range) as f32));
    let cost = scaled;
    let final_eps = FINAL_SHARE;
    let mut eps = FIRST_SHARE;
    // Spare slots are filled by dummy agents that cost the same everywhere: the problem is then
    // balanced, so every phase ends with every slot held and no slot keeps a stale price; the
    // dummies end on the models that should keep room.
    let slots_total: usize = virgin.iter().sum();
    let persons = slots_total.max(n);
    let idle = vec![0.0f32; m];
    let mut queue: Vec<u32> = Vec::with_capacity(persons);
    loop {
        eps = eps.max(final_eps);
        for s in &mut slots {
            s.heap.iter_mut().for_each(|slot| slot.1 = NONE);
        }
        queue.clear();
        queue.extend((0..persons as u32).rev());
        // A phase that keeps bidding far past its usual count (a price war that rounding could
        // stall) gives up: the caller then solves without prices, exactly and more slowly.
        let mut budget = persons.saturating_mul(MAX_BIDS_PER_PERSON);
        while let Some(i) = queue.pop() {
            budget = budget.checked_sub(1)?;
            let row = if (i as usize) < n {
                &cost[i as usize * m..(i as usize + 1) * m]
            } else {
                &idle[..]
            };
            let (best, w1, w2) = best_two(row, &min_price);
            let j = best;
            let s = &mut slots[j];
            let own_second = if virgin[j] >= 2 {
                0.0
            } else if virgin[j] == 1 {
                s.heap.first().map_or(f32::INFINITY, |slot| slot.0)
            } else {
                s.second()
            };
            let w2 = w2.max(-row[j] - own_second);
            // Only one slot left anywhere for this agent: any raise will do.
            let raise = if w2.is_finite() { w1 - w2 } else { 0.0 };
            let price = min_price[j] + raise + eps;
            if virgin[j] > 0 {
                virgin[j] -= 1;
                s.push(price, i);
            } else {
                let displaced = s.heap[0].1;
                s.heap[0] = (price, i);
                s.sift_down(0);
                if displaced != NONE {
                    queue.push(displaced);
                }
            }
            min_price[j] = if virgin[j] > 0 { 0.0 } else { s.heap[0].0 };
        }
        if eps <= final_eps {
            return Some(
                relative(&slots, &min_price, n)
                    .into_iter()
                    .map(|p| p as f64 * range)
                    .collect(),
            );
        }
        eps /= SHRINK;
    }
}

/// Prices over the cheapest model's, and 0 on models that keep room (hold a dummy): only
/// differences matter to the agents, and a model with room must sit at the sink's level.
fn relative(slots: &[Slots], min_price: &[f32], n: usize) -> Vec<f32> {
    let floor = min_price.iter().copied().fold(f32::INFINITY, f32::min);
    slots
        .iter()
        .zip(min_price)
        .map(|(s, &p)| {
            if !p.is_finite() {
                p
            } else if s.heap.iter().any(|slot| slot.1 as usize >= n) {
                0.0
            } else {
                p - floor
            }
        })
        .collect()
}

/// Best model for a row at current prices (value = −cost − price), its value, and the best
/// value among the other models (−inf with one model).
#[inline]
fn best_two(row: &[f32], price: &[f32]) -> (usize, f32, f32) {
    // Four independent lanes of (best, second, argbest), branch-free so the loop vectorizes;
    // the lanes are merged at the end. Minimises cost + price (value is its negation).
    const L: usize = 4;
    let mut first = [f32::INFINITY; L];
    let mut second = [f32::INFINITY; L];
    let mut arg = [0usize; L];
    let chunks = row.len() / L;
    for c in 0..chunks {
        for l in 0..L {
            let j = c * L + l;
            let x = row[j] + price[j];
            let lower = x < first[l];
            second[l] = if lower { first[l] } else { second[l].min(x) };
            arg[l] = if lower { j } else { arg[l] };
            first[l] = if lower { x } else { first[l] };
        }
    }
    let (mut b1, mut b2, mut j1) = (f32::INFINITY, f32::INFINITY, 0usize);
    let mut take = |x: f32, j: usize| {
        if x < b1 || (x == b1 && j < j1) {
            b2 = b1.min(b2);
            b1 = x;
            j1 = j;
        } else {
            b2 = b2.min(x);
        }
    };
    for l in 0..L {
        take(first[l], arg[l]);
        take(second[l], usize::MAX);
    }
    for j in chunks * L..row.len() {
        take(row[j] + price[j], j);
    }
    (j1, -b1, -b2)
}
