-- Settlement: release the hold and lease, count the cost as pending spend (mirrors
-- MemoryStateStore.settle). Called only after the trade is committed to the database.
-- KEYS: 1 account hash, 2 key hash, 3 holds, 4 hold expiries, 5 pending, 6 listing leases
-- ARGV: 1 request id, 2 cost, 3 key id
-- Returns 1 released a hold, 2 already settled (or replaced an expired hold's worst case), 3 orphan.
-- (`decrement` comes from lua/money.lua, which redis.py puts in front of this script.)
local acct, khash, holds, hexp, pend, leases = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local rid, cost = ARGV[1], tonumber(ARGV[2])

local function add_pending(key_id)
  if cost > 0 then
    local seq = redis.call('HINCRBY', acct, 'seq', 1)
    redis.call('HSET', pend, rid, seq .. '\t' .. ARGV[2] .. '\t' .. key_id .. '\t0')
    redis.call('HINCRBY', acct, 'pend', cost)
    redis.call('HINCRBY', khash, 'pend', cost)
  end
end

redis.call('ZREM', leases, rid)
local h = redis.call('HGET', holds, rid)
if h then
  local k, _l, amt = string.match(h, '^(.-)\t(.-)\t(%-?%d+)$')
  redis.call('HDEL', holds, rid)
  redis.call('ZREM', hexp, rid)
  decrement(acct, 'held', amt)
  decrement(khash, 'held', amt)
  add_pending(k)
  return 1
end
local p = redis.call('HGET', pend, rid)
if p then
  local seq, old, k, expired = string.match(p, '^(%d+)\t(%-?%d+)\t(.-)\t(%d)$')
  if expired == '1' then -- the lease ran out first: replace the worst case by the actual cost
    local delta = cost - tonumber(old)
    redis.call('HSET', pend, rid, seq .. '\t' .. ARGV[2] .. '\t' .. k .. '\t0')
    redis.call('HINCRBY', acct, 'pend', delta)
    redis.call('HINCRBY', khash, 'pend', delta)
  end
  return 2
end
-- Orphan (Redis lost the hold, or a re-seed already dropped the expired entry): count the cost until a
-- re-seed confirms it. This can only over-count until then.
add_pending(ARGV[3])
return 3
