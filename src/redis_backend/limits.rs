//! Token-aware admission in Redis: the same exact sliding 60-s windows and tokens in flight as
//! `crate::limits`, on the server's clock, so N replicas together keep one quota.
//!
//! Keys of one model (one hash tag, so Cluster-safe): `req` (sorted set: lease id → admission
//! ms), `tok` (sorted set: lease id → admission ms, for requests with tokens), `tokamt` (hash:
//! lease id → tokens counted, reconciled to usage), `toksum` (the sum of `tokamt` over the
//! window), `inflight` (hash: lease id → tokens held; entries whose lease has gone are dropped
//! at the next admission). The rule and its proof are `crate::limits::window`'s: admit at `t`
//! only if the entries with `t − 60 s < time ≤ t` plus this request fit; server time only
//! moves forward, so no window ever holds more than the limit.

use redis::RedisResult;

use super::{keys, RedisBackend};
use crate::error::{Error, Result};
use crate::limits::{Limits, Refusal};
use crate::load::{Capacity, Slot};

/// KEYS: active, queued, cancelled, req, tok, tokamt, toksum, inflight. ARGV: max_concurrent,
/// max_queue, ttl_ms, unbounded (0/1), rpm, tpm, max_tokens_in_flight (0 = none), tokens,
/// lease id. Returns {code (1 active, 2 queued, 0 refused), active, queued, limit (0 none, 1
/// rpm, 2 tpm, 3 max_tokens_in_flight), wait_ms (−1 unknown)}.
pub const ACQUIRE_LIMITED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local W = 60000
local edge = now - W
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', edge)
local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', edge)
if #old > 0 then
  local freed = 0
  for _, id in ipairs(old) do
    freed = freed + tonumber(redis.call('HGET', KEYS[6], id) or '0')
    redis.call('HDEL', KEYS[6], id)
  end
  redis.call('DECRBY', KEYS[7], freed)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', edge)
end
local tif = 0
local held = redis.call('HGETALL', KEYS[8])
for i = 1, #held, 2 do
  if redis.call('ZSCORE', KEYS[1], held[i]) or redis.call('ZSCORE', KEYS[2], held[i]) then
    tif = tif + tonumber(held[i + 1])
  else
    redis.call('HDEL', KEYS[8], held[i])
  end
end
local active = redis.call('ZCARD', KEYS[1])
local queued = redis.call('ZCARD', KEYS[2])
local max_c, max_q, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local unbounded = ARGV[4] == '1'
local rpm, tpm, max_tif, n = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local id = ARGV[9]
local limit, wait = 0, -1
if not unbounded then
  local reqs = redis.call('ZCARD', KEYS[4])
  if rpm > 0 and reqs + 1 > rpm then
    local e = redis.call('ZRANGE', KEYS[4], reqs - rpm, reqs - rpm, 'WITHSCORES')
    limit, wait = 1, tonumber(e[2]) + W - now
  end
  local toks = tonumber(redis.call('GET', KEYS[7]) or '0')
  if tpm > 0 and toks + n > tpm then
    local excess, freed, w = toks + n - tpm, 0, -1
    local entries = redis.call('ZRANGE', KEYS[5], 0, -1, 'WITHSCORES')
    for i = 1, #entries, 2 do
      freed = freed + tonumber(redis.call('HGET', KEYS[6], entries[i]) or '0')
      if freed >= excess then
        w = tonumber(entries[i + 1]) + W - now
        break
      end
    end
    if limit == 0 or w > wait then
      limit, wait = 2, w
    end
  end
  if max_tif > 0 and tif + n > max_tif and limit == 0 then
    limit = 3
  end
end
local code = 0
if limit == 0 and not (redis.call('EXISTS', KEYS[3]) == 1 and redis.call('SISMEMBER', KEYS[3], id) == 1) then
  if unbounded or active < max_c then
    redis.call('ZADD', KEYS[1], now + ttl, id)
    active = active + 1
    code = 1
  elseif queued < max_q then
    redis.call('ZADD', KEYS[2], now + ttl, id)
    queued = queued + 1
    code = 2
  end
end
if code > 0 then
  redis.call('ZADD', KEYS[4], now, id)
  if n > 0 then
    redis.call('ZADD', KEYS[5], now, id)
    redis.call('HSET', KEYS[6], id, n)
    redis.call('INCRBY', KEYS[7], n)
    redis.call('HSET', KEYS[8], id, n)
  end
  for k = 4, 7 do
    redis.call('PEXPIRE', KEYS[k], W + 1000)
  end
  for _, k in ipairs({1, 2, 8}) do
    local pttl = redis.call('PTTL', KEYS[k])
    if pttl ~= -2 and pttl < ttl then
      redis.call('PEXPIRE', KEYS[k], ttl)
    end
  end
end
return {code, active, queued, limit, wait}
";

/// KEYS: active, queued, req, tok, tokamt, toksum, inflight. ARGV: lease id, tokens used.
/// Counts `used` for the request in the TPM window (when it is still in it) and, while its
/// lease is held, in the tokens in flight. Returns the window's new sum.
pub const RECONCILE: &str = r"
local id, used = ARGV[1], tonumber(ARGV[2])
local at = redis.call('ZSCORE', KEYS[3], id)
if at then
  local old = tonumber(redis.call('HGET', KEYS[5], id) or '0')
  if not redis.call('ZSCORE', KEYS[4], id) then
    redis.call('ZADD', KEYS[4], at, id)
  end
  redis.call('HSET', KEYS[5], id, used)
  redis.call('INCRBY', KEYS[6], used - old)
end
if redis.call('ZSCORE', KEYS[1], id) or redis.call('ZSCORE', KEYS[2], id) then
  redis.call('HSET', KEYS[7], id, used)
end
return tonumber(redis.call('GET', KEYS[6]) or '0')
";

/// KEYS: active, queued, req, toksum, inflight. Returns {requests in window, tokens in window,
/// tokens in flight} (a reading: purging is left to the next admission).
pub const READ_LIMITED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local reqs = redis.call('ZCOUNT', KEYS[3], '(' .. (now - 60000), '+inf')
local tif = 0
local held = redis.call('HGETALL', KEYS[5])
for i = 1, #held, 2 do
  if redis.call('ZSCORE', KEYS[1], held[i]) or redis.call('ZSCORE', KEYS[2], held[i]) then
    tif = tif + tonumber(held[i + 1])
  end
end
return {reqs, tonumber(redis.call('GET', KEYS[4]) or '0'), tif}
";

/// The window and in-flight keys of one model (same hash tag as its lease sets).
fn limit_keys(model: &str) -> [String; 5] {
    ["req", "tok", "tokamt", "toksum", "inflight"].map(|k| format!("{{mr:{model}}}:{k}"))
}

/// What a shared token-aware admission answered.
#[derive(Debug, Clone, PartialEq)]
pub enum LimitedAdmission {
    Leased(Slot, String),
    Refused,
    Limited(Refusal),
}

const LIMIT_NAMES: [&str; 3] = ["rpm", "tpm", "max_tokens_in_flight"];

impl RedisBackend {
    /// One request of `tokens` admitted in one script run: concurrency, queue, RPM, TPM and
    /// tokens in flight across every replica.
    pub fn lease_limited(
        &self,
        model: &str,
        capacity: Capacity,
        bounded: bool,
        tokens: u64,
    ) -> Result<LimitedAdmission> {
        let inner = &self.inner;
        inner.check_fork();
        let id = inner.lease_id();
        let [active, queued] = keys(model);
        let cancelled = super::cancelled_key(model);
        let lk = limit_keys(model);
        let Limits {
            rpm,
            tpm,
            max_tokens_in_flight,
        } = capacity.limits;
        let reply: RedisResult<Vec<i64>> = inner.round_trip(|con| {
            let mut call = inner.acquire_limited.prepare_invoke();
            call.key(&active).key(&queued).key(&cancelled);
            for k in &lk {
                call.key(k);
            }
            call.arg(capacity.max_concurrent)
                .arg(capacity.max_queue)
                .arg(inner.ttl_ms)
                .arg(u8::from(!bounded))
                .arg(rpm.unwrap_or(0))
                .arg(tpm.unwrap_or(0))
                .arg(max_tokens_in_flight.unwrap_or(0))
                .arg(tokens)
                .arg(&id);
            call.invoke(con.like())
        });
        let reply = match reply {
            Ok(r) if r.len() == 5 => r,
            Ok(_) => return Err(Error::BackendUnavailable("malformed acquire reply".into())),
            Err(e) => {
                if e.is_timeout() || e.is_connection_dropped() {
                    inner.defer_forget(model, vec![id]);
                    self.ensure_renewer();
                }
                return Err(Error::BackendUnavailable(inner.unavailable(&e)));
            }
        };
        inner.remember_counts(model, reply[1] as u64, reply[2] as u64);
        let slot = match reply[0] {
            1 => Slot::Active,
            2 => Slot::Queued,
            _ => {
                return Ok(match reply[3] {
                    1..=3 => LimitedAdmission::Limited(Refusal {
                        limit: LIMIT_NAMES[reply[3] as usize - 1],
                        retry_after_s: if reply[4] >= 0 {
                            reply[4] as f64 / 1000.0
                        } else {
                            f64::NAN
                        },
                    }),
                    _ => LimitedAdmission::Refused,
                })
            }
        };
        super::lock(&inner.held)
            .entry(model.to_string())
            .or_default()
            .insert(id.clone(), slot);
        self.ensure_renewer();
        Ok(LimitedAdmission::Leased(slot, id))
    }

    /// Counts `used` tokens for the request under `lease` (see RECONCILE); best effort.
    pub fn reconcile_usage(&self, model: &str, lease: &str, used: u64) {
        let inner = &self.inner;
        let [active, queued] = keys(model);
        let [req, tok, tokamt, toksum, inflight] = limit_keys(model);
        let _: RedisResult<i64> = inner.round_trip(|con| {
            let mut call = inner.reconcile.prepare_invoke();
            for k in [&active, &queued, &req, &tok, &tokamt, &toksum, &inflight] {
                call.key(k);
            }
            call.arg(lease).arg(used);
            call.invoke(con.like())
        });
    }

    /// (requests in window, tokens in window, tokens in flight) across replicas.
    pub fn token_counts(&self, model: &str) -> Option<(u64, u64, u64)> {
        let inner = &self.inner;
        let [active, queued] = keys(model);
        let [req, _, _, toksum, inflight] = limit_keys(model);
        let reply: RedisResult<(u64, u64, u64)> = inner.round_trip(|con| {
            let mut call = inner.read_limited.prepare_invoke();
            for k in [&active, &queued, &req, &toksum, &inflight] {
                call.key(k);
            }
            call.invoke(con.like())
        });
        reply.ok()
    }
}

/// The `LoadBackend` view of a shared token-aware admission.
pub fn into_token_admission(a: LimitedAdmission) -> crate::load::TokenAdmission {
    use crate::load::TokenAdmission as T;
    match a {
        LimitedAdmission::Leased(slot, id) => T::Leased(slot, id),
        LimitedAdmission::Refused => T::Refused,
        LimitedAdmission::Limited(r) => T::Limited(r),
    }
}
