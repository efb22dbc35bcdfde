//! The Lua scripts of the Redis backend. Each touches only the keys it is given (one model's,
//! one hash tag: Cluster-safe) and reads time from the server, never from a client.

/// KEYS: active, queued, cancelled. ARGV: max_concurrent, max_queue, ttl_ms, unbounded (0/1),
/// lease ids… Purges expired leases, then admits each id to a free slot, else a queue place,
/// else refuses it; an id its client has given up on (in `cancelled`, see FORGET) is refused
/// however late this script runs. Returns one code per id (1 active, 2 queued, 0 refused),
/// then active, queued.
pub const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local active = redis.call('ZCARD', KEYS[1])
local queued = redis.call('ZCARD', KEYS[2])
local max_c, max_q = tonumber(ARGV[1]), tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local unbounded = ARGV[4] == '1'
local deadline = now + ttl
local any_cancelled = redis.call('EXISTS', KEYS[3]) == 1
local out = {}
for i = 5, #ARGV do
  if any_cancelled and redis.call('SISMEMBER', KEYS[3], ARGV[i]) == 1 then
    out[#out + 1] = 0
  elseif unbounded or active < max_c then
    redis.call('ZADD', KEYS[1], deadline, ARGV[i])
    active = active + 1
    out[#out + 1] = 1
  elseif queued < max_q then
    redis.call('ZADD', KEYS[2], deadline, ARGV[i])
    queued = queued + 1
    out[#out + 1] = 2
  else
    out[#out + 1] = 0
  end
end
for k = 1, 2 do
  local pttl = redis.call('PTTL', KEYS[k])
  if pttl ~= -2 and pttl < ttl then
    redis.call('PEXPIRE', KEYS[k], ttl)
  end
end
out[#out + 1] = active
out[#out + 1] = queued
return out
";

/// KEYS: one lease set. ARGV: ttl_ms, lease ids… Pushes the deadline of each id that is
/// still live; an expired or released lease is never brought back. Returns the lost ids.
pub const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local lost = {}
local renewed = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) > now then
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
    renewed = renewed + 1
  else
    lost[#lost + 1] = ARGV[i]
  end
end
if renewed > 0 and redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return lost
";

/// KEYS: active, queued. Purges expired leases and returns {active, queued}.
pub const READ: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2])}
";

/// KEYS: active, queued, cancelled. ARGV: ttl_ms, lease ids… Forgets leases whose release (or
/// whose acquisition, given up on after a timeout) could not be sent while the server was
/// away: removes them from both sets and remembers them in `cancelled` for one TTL, so an
/// acquisition still on its way can never take a slot. Returns how many leases it removed.
pub const FORGET: &str = r"
local removed = 0
for i = 2, #ARGV do
  removed = removed + redis.call('ZREM', KEYS[1], ARGV[i]) + redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('SADD', KEYS[3], ARGV[i])
end
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[1]))
return removed
";
