//! An exact sliding 60-second window: a log of (time, amount) entries.
//!
//! Why a log and not GCRA or a fixed-window counter: providers count RPM and TPM over any 60 s,
//! and the promise here is that no window `(t − 60, t]` ever holds more than the limit — not a
//! single request or token. GCRA enforces a steady rate with a burst tolerance, which is a
//! different contract (it refuses a burst the window would allow, and a naive "burst = limit"
//! setting lets up to 2× through across a boundary); fixed minutes let 2× through across the
//! minute boundary (LiteLLM's failure). A log admits exactly what the window allows.
//!
//! The rule: a request of `n` is admitted at `t` only if the entries in `(t − 60, t]` plus `n`
//! are at most the limit. Any window `(a, a + 60]` then holds at most the limit: its entries were
//! all admitted by the time of its last one, `t ≤ a + 60`, whose check counted every entry after
//! `t − 60 ≤ a`. Entries are appended at non-decreasing times (a clock set back records at the
//! latest time seen), so the proof holds whatever the clock does.
//!
//! Memory is bounded: an entry arriving within [`MERGE_S`] of the newest one is merged into it
//! and takes the later time — it then expires up to 1 ms late, which is conservative (never an
//! overshoot) — so a window holds at most 60 / `MERGE_S` + 1 = 60,001 entries, whatever the rate.

use std::collections::VecDeque;

/// The window providers count RPM and TPM over, in seconds.
pub const WINDOW_S: f64 = 60.0;
/// Entries closer than this are merged (see the module docs), in seconds.
pub const MERGE_S: f64 = 0.001;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    at: f64,
    amount: u64,
    /// The admission sequence number of the newest request merged into this entry.
    last_seq: u64,
}

/// One sliding window (requests or tokens) of one model.
#[derive(Debug, Clone, Default)]
pub struct Window {
    entries: VecDeque<Entry>,
    sum: u64,
}

impl Window {
    /// Drops the entries that left the window `(now − 60, now]`.
    pub fn purge(&mut self, now: f64) {
        while let Some(e) = self.entries.front() {
            if now - e.at < WINDOW_S {
                break;
            }
            self.sum -= e.amount;
            self.entries.pop_front();
        }
    }

    /// What the window holds (after a `purge`).
    pub fn sum(&self) -> u64 {
        self.sum
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When the oldest entry leaves the window; +inf when empty.
    pub fn next_expiry(&self) -> f64 {
        self.entries
            .front()
            .map_or(f64::INFINITY, |e| e.at + WINDOW_S)
    }

    /// Whether `amount` more fits under `limit` now (after a `purge`).
    pub fn fits(&self, amount: u64, limit: u64) -> bool {
        self.sum.saturating_add(amount) <= limit
    }

    /// Seconds from `now` until `amount` more fits under `limit` (0 when it fits now, +inf
    /// when it never can: `amount > limit`). Call after a `purge`.
    pub fn wait_s(&self, amount: u64, limit: u64, now: f64) -> f64 {
        if amount > limit {
            return f64::INFINITY;
        }
        let Some(excess) = (self.sum + amount).checked_sub(limit).filter(|e| *e > 0) else {
            return 0.0;
        };
        let mut freed = 0u64;
        for e in &self.entries {
            freed += e.amount;
            if freed >= excess {
                return (e.at + WINDOW_S - now).max(0.0);
            }
        }
        f64::INFINITY // unreachable: the whole window frees `sum >= excess`
    }

    /// Records `amount` admitted at `now` under sequence number `seq`; returns the time
    /// recorded (the newest entry's, when the clock went back).
    pub fn record(&mut self, amount: u64, now: f64, seq: u64) -> f64 {
        if amount == 0 {
            return now;
        }
        self.sum += amount;
        if let Some(last) = self.entries.back_mut() {
            if now - last.at < MERGE_S {
                last.at = last.at.max(now);
                last.amount += amount;
                last.last_seq = seq;
                return last.at;
            }
        }
        self.entries.push_back(Entry {
            at: now,
            amount,
            last_seq: seq,
        });
        now
    }

    /// Reconciles the request admitted as `seq` at `at`: `delta` more (or fewer) than it
    /// recorded. The change goes to its own entry (or a later one, when it recorded none),
    /// so the window never counts less than it should; a request out of the window is done.
    pub fn adjust(&mut self, seq: u64, at: f64, delta: i64, now: f64) {
        if delta == 0 || now - at >= WINDOW_S {
            return;
        }
        let i = self.entries.partition_point(|e| e.last_seq < seq);
        match (self.entries.get_mut(i), delta > 0) {
            (Some(e), _) if delta < 0 => {
                let cut = delta.unsigned_abs().min(e.amount);
                e.amount -= cut;
                self.sum -= cut;
            }
            (Some(e), true) => {
                e.amount += delta as u64;
                self.sum += delta as u64;
            }
            (None, true) => {
                // No entry at or after this request: every entry is older, so `record` at its
                // own time appends (or merges, keeping the bound on entries).
                self.record(delta as u64, at, seq);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_exact_at_the_boundary() {
        let mut w = Window::default();
        w.record(3, 0.0, 0);
        w.purge(59.999);
        assert_eq!(w.sum(), 3);
        assert!(!w.fits(1, 3));
        assert!((w.wait_s(1, 3, 59.0) - 1.0).abs() < 1e-9);
        w.purge(60.0);
        assert_eq!((w.sum(), w.len()), (0, 0));
        assert!(w.fits(3, 3));
        assert_eq!(w.wait_s(4, 3, 60.0), f64::INFINITY);
    }

    #[test]
    fn close_entries_merge_and_expire_at_the_later_time() {
        let mut w = Window::default();
        for k in 0..10_000u64 {
            w.record(1, k as f64 * 1e-5, k); // 10,000 in 0.1 s
        }
        assert!(w.len() <= 101, "{}", w.len());
        assert_eq!(w.sum(), 10_000);
        w.purge(60.0 + 0.05);
        // Nothing expired early: what remains is at least what a per-request log holds.
        assert!(w.sum() >= 10_000 - 5_001, "{}", w.sum());
    }

    #[test]
    fn adjustments_land_on_the_request_or_later() {
        let mut w = Window::default();
        w.record(100, 0.0, 1);
        w.record(50, 10.0, 2);
        w.adjust(1, 0.0, -60, 11.0);
        assert_eq!(w.sum(), 90);
        w.adjust(2, 10.0, 25, 12.0);
        assert_eq!(w.sum(), 115);
        w.adjust(3, 20.0, 7, 21.0); // recorded nothing: a new entry
        assert_eq!((w.sum(), w.len()), (122, 3));
        w.adjust(1, 0.0, 1_000, 61.0); // out of the window: nothing to reconcile
        assert_eq!(w.sum(), 122);
    }
}
