-- Re-seed one account from the database: SET (never add) its balance and its keys' month spend, and
-- drop the pending entries the database read already contains (numbered <= mark, see ports.py).
-- KEYS: 1 account hash, 2 pending
-- ARGV: 1 mark, 2 balance, 3 month, 4 key-hash prefix, then key id / spent pairs
local acct, pend, prefix = KEYS[1], KEYS[2], ARGV[4]
-- HINCRBY by minus `amount` (a decimal string). Lua's -0 would be sent as "-0", which HINCRBY refuses:
-- a zero amount (a free listing's hold, a failed trade's cost) changes nothing and is skipped.
local function decrement(key, field, amount)
  local v = tonumber(amount)
  if v ~= 0 then
    redis.call('HINCRBY', key, field, -v)
  end
end
local mark = tonumber(ARGV[1])
if (tonumber(redis.call('HGET', acct, 'seq')) or 0) < mark then
  mark = 0 -- Redis lost its data since the mark was read: drop nothing (can only over-count)
end
local entries = redis.call('HGETALL', pend)
for i = 1, #entries, 2 do
  local seq, cost, k = string.match(entries[i + 1], '^(%d+)\t(%-?%d+)\t(.-)\t')
  if tonumber(seq) <= mark then
    redis.call('HDEL', pend, entries[i])
    decrement(acct, 'pend', cost)
    decrement(prefix .. k, 'pend', cost)
  end
end
redis.call('HSET', acct, 'bal', ARGV[2])
for i = 5, #ARGV, 2 do
  redis.call('HSET', prefix .. ARGV[i], 'm', ARGV[3], 'spent', ARGV[i + 1])
end
return 1
