-- Shared by the money scripts (admit, settle, seed): redis.py prepends it to each, since a Redis script
-- cannot load another.
-- HINCRBY by minus `amount` (a decimal string). Lua's -0 would be sent as "-0", which HINCRBY refuses:
-- a zero amount (a free listing's hold, a failed trade's cost) changes nothing and is skipped.
local function decrement(key, field, amount)
  local v = tonumber(amount)
  if v ~= 0 then
    redis.call('HINCRBY', key, field, -v)
  end
end
