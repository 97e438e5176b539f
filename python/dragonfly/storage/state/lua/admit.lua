-- Admission: check and reserve, all or nothing (mirrors MemoryStateStore._admit_once step by step).
-- KEYS: 1 account hash, 2 key hash, 3 holds (rid -> "key\tlisting\tamount"), 4 hold expiries (zset),
--       5 pending (rid -> "seq\tcost\tkey\texpired"), 6 listing rpm window (zset), 7 listing leases (zset)
-- ARGV: 1 request id, 2 key id, 3 listing id, 4 hold, 5 key budget (-1 none), 6 rpm cap (-1 none),
--       7 concurrency cap (-1 none), 8 now ms, 9 lease expiry ms, 10 month, 11 sweep max,
--       12 key-hash prefix of this account, 13 rpm window start (now - 60 s)
-- Returns {1} admitted, {0, refusal, retry_after_s} refused, {2} account or key not seeded.
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
    redis.call('HINCRBY', acct, 'held', -tonumber(amt))
    redis.call('HINCRBY', prefix .. k, 'held', -tonumber(amt))
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

-- 4. Listing rpm (sliding minute) and concurrency (leases that expire on their own).
redis.call('ZREMRANGEBYSCORE', rpm, '-inf', ARGV[13])
if rpm_cap >= 0 and redis.call('ZCARD', rpm) >= rpm_cap then
  local first = redis.call('ZRANGE', rpm, 0, 0, 'WITHSCORES')
  local retry = 60
  if first[2] then
    retry = math.floor((tonumber(first[2]) - tonumber(ARGV[13])) / 1000) + 1
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
redis.call('ZADD', rpm, now, rid .. '@' .. now)
redis.call('ZADD', leases, expires, rid)
redis.call('HINCRBY', acct, 'held', hold)
redis.call('HINCRBY', khash, 'held', hold)
redis.call('HSET', holds, rid, key_id .. '\t' .. listing_id .. '\t' .. ARGV[4])
redis.call('ZADD', hexp, expires, rid)
return {1}
