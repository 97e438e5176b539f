-- Re-seed one account from the database: SET (never add) its balance and its keys' month spend, and
-- drop the pending entries the database read already contains (numbered <= mark, see ports.py).
-- KEYS: 1 account hash, 2 pending
-- ARGV: 1 mark, 2 balance, 3 month, 4 key-hash prefix, then key id / spent pairs
-- (`decrement` comes from lua/money.lua, which redis.py puts in front of this script.)
local acct, pend, prefix = KEYS[1], KEYS[2], ARGV[4]
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
