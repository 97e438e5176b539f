-- Abuse-limit counter (storage/state/limits.py, mirrors MemoryRateLimiter): a fixed window that opens at
-- the key's first counted event and lasts the window, so every control plane counts into one number.
-- KEYS: 1 the counter. ARGV: 1 limit, 2 window ms, 3 mode: 'take' counts one event when under the limit,
-- 'check' counts nothing.
-- Returns {1, ms left in the window (0 when none is open)} allowed, {0, ms until the window ends} refused.
local key, limit, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local n = tonumber(redis.call('GET', key) or '0')
local ttl = redis.call('PTTL', key)
if n > 0 and ttl < 0 then
  -- A counter without an expiry (never written so by this script): give it one rather than keep it forever.
  redis.call('PEXPIRE', key, window)
  ttl = window
end
if n >= limit then
  return {0, ttl}
end
if ARGV[3] == 'check' then
  return {1, math.max(ttl, 0)}
end
n = redis.call('INCR', key)
if n == 1 then
  redis.call('PEXPIRE', key, window)
  ttl = window
end
return {1, ttl}
