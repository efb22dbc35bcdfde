//! Cache affinity: consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam,
//! "Consistent Hashing with Bounded Loads", SODA 2018).
//!
//! Each model owns [`VNODES`] points on a 64-bit ring. A key (a session id, a prompt-prefix
//! hash) walks the ring clockwise from its own hash and goes to the first model that can take
//! it without exceeding `⌈(1 + ε) · (L + 1) / n⌉` requests, where `L` is the load of the `n`
//! open models: the replica that served the key before keeps it (its prefix cache hits) until
//! it is more than (1 + ε) × the average, then the key passes on along the ring — to the same
//! next replica every time, so the overflow is cached too. Plain consistent hashing (no bound)
//! piles a hot key's traffic on one replica. The hash is FNV-1a with a SplitMix finalizer:
//! stable across processes and replicas, so every router replica walks the same ring.

/// Points per model on the ring.
pub const VNODES: usize = 64;

/// The default ε: a replica may hold up to 1.25 × the average load before keys pass on.
pub const DEFAULT_EPSILON: f64 = 0.25;

/// A stable 64-bit hash of `bytes` (FNV-1a, then SplitMix64's finalizer to spread it).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The hash ring of a fleet.
#[derive(Debug, Clone)]
pub struct Ring {
    /// (point, model index), sorted by point.
    points: Vec<(u64, u32)>,
    n: usize,
}

impl Ring {
    pub fn new<S: AsRef<str>>(ids: &[S]) -> Self {
        let mut points = Vec::with_capacity(ids.len() * VNODES);
        for (j, id) in ids.iter().enumerate() {
            for v in 0..VNODES {
                let point = stable_hash(format!("{}#{v}", id.as_ref()).as_bytes());
                points.push((point, j as u32));
            }
        }
        points.sort_unstable();
        Ring {
            points,
            n: ids.len(),
        }
    }

    /// The models in the order `key` visits them, each once.
    pub fn walk(&self, key: &str) -> impl Iterator<Item = usize> + '_ {
        let start = self
            .points
            .partition_point(|p| p.0 < stable_hash(key.as_bytes()));
        let mut seen = vec![false; self.n];
        let len = self.points.len();
        (0..len)
            .map(move |k| self.points[(start + k) % len].1 as usize)
            .filter(move |&j| !std::mem::replace(&mut seen[j], true))
    }

    /// Plain consistent hashing: the first model on the walk that `open` accepts.
    pub fn choose_plain(&self, key: &str, open: impl Fn(usize) -> bool) -> Option<usize> {
        self.walk(key).find(|&j| open(j))
    }

    /// Consistent hashing with bounded loads: the first open model on the walk whose load
    /// stays within [`bounded_cap`] with this request.
    pub fn choose_bounded(
        &self,
        key: &str,
        loads: &[u64],
        epsilon: f64,
        open: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let (n, total) = (0..loads.len())
            .filter(|&j| open(j))
            .fold((0usize, 0u64), |(n, t), j| (n + 1, t + loads[j]));
        if n == 0 {
            return None;
        }
        let cap = bounded_cap(total, n, epsilon);
        self.walk(key).find(|&j| open(j) && loads[j] < cap)
    }
}

/// The most requests one of `n` open models may hold with one more admitted, their load being
/// `total`: `⌈(1 + ε) · (total + 1) / n⌉` (at least 1, so some model always fits).
pub fn bounded_cap(total: u64, n: usize, epsilon: f64) -> u64 {
    let avg = (total + 1) as f64 / n as f64;
    ((1.0 + epsilon) * avg).ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    #[test]
    fn the_walk_visits_every_model_once_and_is_stable() {
        let ring = Ring::new(&["a", "b", "c", "d"]);
        let walk: Vec<usize> = ring.walk("session-7").collect();
        let mut sorted = walk.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2, 3]);
        assert_eq!(walk, ring.walk("session-7").collect::<Vec<_>>());
        // Removing a model moves only its keys (the consistent-hashing property).
        let smaller = Ring::new(&["a", "b", "c"]);
        let moved = (0..2000)
            .map(|k| format!("k{k}"))
            .filter(|k| {
                let before = ring.choose_plain(k, |_| true).unwrap();
                before != 3 && smaller.choose_plain(k, |_| true).unwrap() != before
            })
            .count();
        assert_eq!(moved, 0);
    }

    #[test]
    fn bounded_loads_never_exceed_the_cap_whatever_the_keys() {
        let ids: Vec<String> = (0..8).map(|j| format!("replica-{j}")).collect();
        let ring = Ring::new(&ids);
        for (seed, eps) in [(1u64, 0.25), (2, 0.1), (3, 1.0), (4, 0.0)] {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut loads = vec![0u64; 8];
            let mut held: Vec<usize> = Vec::new();
            for _ in 0..5000 {
                if !held.is_empty() && rng.random::<f64>() < 0.45 {
                    let k = rng.random_range(0..held.len());
                    loads[held.swap_remove(k)] -= 1;
                    continue;
                }
                // A skewed key stream: a few hot sessions take most requests.
                let key = format!("s{}", (rng.random::<f64>().powi(4) * 50.0) as u32);
                let total: u64 = loads.iter().sum();
                let j = ring.choose_bounded(&key, &loads, eps, |_| true).unwrap();
                assert!(loads[j] < bounded_cap(total, 8, eps), "{loads:?} {j}");
                loads[j] += 1;
                held.push(j);
            }
        }
    }

    #[test]
    fn a_key_stays_on_its_replica_until_the_bound() {
        let ring = Ring::new(&["a", "b", "c"]);
        let home = ring.choose_plain("chat-1", |_| true).unwrap();
        let mut loads = vec![0u64; 3];
        loads[home] = 2;
        loads[(home + 1) % 3] = 2;
        // total 4 + 1 over 3 at ε = 0.25: cap ⌈2.08⌉ = 3, home (2) still fits.
        assert_eq!(
            ring.choose_bounded("chat-1", &loads, 0.25, |_| true),
            Some(home)
        );
        loads[home] = 3;
        let next = ring
            .choose_bounded("chat-1", &loads, 0.25, |_| true)
            .unwrap();
        assert_ne!(next, home);
        assert_eq!(ring.choose_plain("chat-1", |j| j != home), Some(next));
    }
}
