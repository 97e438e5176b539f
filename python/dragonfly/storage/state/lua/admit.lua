-- Admission: check and reserve, all or nothing (mirrors MemoryStateStore._admit_once step by step).
-- KEYS: 1 account hash, 2 key hash, 3 holds (rid -> "key\tlisting\tamount"), 4 hold expiries (zset),
--       5 pending (rid -> "seq\tcost\tkey\texpired"), 6 listing rpm window (hash), 7 listing leases (zset)
-- ARGV: 1 request id, 2 key id, 3 listing id, 4 hold, 5 key budget (-1 none), 6 rpm cap (-1 none),
--       7 concurrency cap (-1 none), 8 now ms, 9 lease expiry ms, 10 month, 11 sweep max,
--       12 key-hash prefix of this account
-- Returns {1} admitted, {0, refusal, retry_after_s} refused, {2} account or key not seeded.
-- (`decrement` comes from lua/money.lua, which redis.py puts in front of this script.)
local acct, khash, holds, hexp, pend, rpm, leases = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local rid, key_id, listing_id = ARGV[1], ARGV[2], ARGV[3]
local hold, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local rpm_cap, conc_cap = tonumber(ARGV[6]), tonumber(ARGV[7])
local now, expires, month, prefix = ARGV[8], ARGV[9], ARGV[10], ARGV[12]

-- 1. Expired holds of this account (their instance died): release, count the full hold as pending
--    until the next re-seed says what was charged. Bounded work per call.
local stale = redis.call('ZRANGEBYSCORE', hexp, '-inf', now, 'LIMIT', 0, tonumber(ARGV[11]))
for _, old in ipairs(stale) do
  local h = redis.call('HGET', holds, old)
  if h then
    local k, _l, amt = string.match(h, '^(.-)\t(.-)\t(%-?%d+)$')
    redis.call('HDEL', holds, old)
    decrement(acct, 'held', amt)
    decrement(prefix .. k, 'held', amt)
    if tonumber(amt) > 0 then
      local seq = redis.call('HINCRBY', acct, 'seq', 1)
      redis.call('HSET', pend, old, seq .. '\t' .. amt .. '\t' .. k .. '\t1')
      redis.call('HINCRBY', acct, 'pend', amt)
      redis.call('HINCRBY', prefix .. k, 'pend', amt)
    end
  end
  redis.call('ZREM', hexp, old)
end

-- 2. Seeded?
local a = redis.call('HMGET', acct, 'bal', 'held', 'pend')
local kmonth = redis.call('HGET', khash, 'm')
if not a[1] or not kmonth then
  return {2}
end

-- 3. Money: account balance, then the key's monthly budget.
if tonumber(a[1]) - (tonumber(a[2]) or 0) - (tonumber(a[3]) or 0) < hold then
  return {0, 'insufficient_balance', 0}
end
if kmonth ~= month then -- a new month starts with nothing spent
  redis.call('HSET', khash, 'm', month, 'spent', 0)
end
local k = redis.call('HMGET', khash, 'spent', 'held', 'pend')
if budget >= 0 and (tonumber(k[1]) or 0) + (tonumber(k[2]) or 0) + (tonumber(k[3]) or 0) + hold > budget then
  return {0, 'budget_exceeded', 0}
end

-- 4. Listing rpm: the admissions of the last 60 seconds counted per second in one hash (second -> count,
--    'n' their sum, 'lo' no count is older than this second), so it holds at most ~62 fields whatever
--    the request rate (MemoryStateStore: the same window as a deque); then concurrency (leases that
--    expire on their own).
local sec = math.floor(tonumber(now) / 1000)
local first = sec - 59 -- the oldest second that still counts
local w = redis.call('HMGET', rpm, 'lo', 'n')
local lo, n = tonumber(w[1]), tonumber(w[2]) or 0
if lo and lo < first then
  if first - lo >= 60 then -- every count is older than the window
    redis.call('DEL', rpm)
    lo, n = nil, 0
  else
    for s = lo, first - 1 do
      local c = redis.call('HGET', rpm, s)
      if c then
        n = n - tonumber(c)
        redis.call('HDEL', rpm, s)
      end
    end
    lo = first
    redis.call('HSET', rpm, 'lo', lo, 'n', n)
  end
end
if rpm_cap >= 0 and n >= rpm_cap then
  local retry = 60
  for s = lo or first, sec do -- the oldest second counted leaves the window when second s + 60 starts
    if redis.call('HEXISTS', rpm, s) == 1 then
      retry = math.ceil(((s + 60) * 1000 - tonumber(now)) / 1000)
      break
    end
  end
  return {0, 'listing_rpm', retry}
end
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
if conc_cap >= 0 and redis.call('ZCARD', leases) >= conc_cap then
  return {0, 'listing_concurrency', 1}
end

-- 5. Reserve (the same request admitted twice holds once).
if redis.call('HEXISTS', holds, rid) == 1 then
  return {1}
end
if lo then
  redis.call('HINCRBY', rpm, math.max(sec, lo), 1) -- a clock behind the one that last moved 'lo' counts there
  redis.call('HINCRBY', rpm, 'n', 1)
else
  redis.call('HSET', rpm, sec, 1, 'lo', sec, 'n', 1)
end
redis.call('PEXPIRE', rpm, 61000) -- a listing no longer admitted leaves nothing behind
redis.call('ZADD', leases, expires, rid)
-- The lease set lives as long as its latest lease (+1 s): a lease whose instance died before settling is
-- otherwise swept only by the listing's next admission, which a deleted listing never gets. Only ever
-- lengthened, so an instance with a shorter lease time cannot cut another's lease short.
local lease_ms = tonumber(expires) - tonumber(now) + 1000
if redis.call('PTTL', leases) < lease_ms then
  redis.call('PEXPIRE', leases, lease_ms)
end
redis.call('HINCRBY', acct, 'held', hold)
redis.call('HINCRBY', khash, 'held', hold)
redis.call('HSET', holds, rid, key_id .. '\t' .. listing_id .. '\t' .. ARGV[4])
redis.call('ZADD', hexp, expires, rid)
return {1}
