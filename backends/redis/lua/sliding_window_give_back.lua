-- Sliding window give-back: undo one refused request's consumption on a
-- Redis Cluster slot group (docs/semantics.md §11.1).
-- KEYS[1..n]: the group's keys, as the request's sliding_window.lua call had them.
-- ARGV[1]: the request's now_us (always explicit). ARGV[2i], ARGV[2i+1]: limit
-- and window_us of KEYS[i].
-- Reply: how many keys were given back. One entry scored now_us is removed:
-- entries of equal score count the same, so which one goes does not matter.
local now_s = string.format('%d', tonumber(ARGV[1]))
local given = 0
for i = 1, #KEYS do
  local hit = redis.call('ZRANGE', KEYS[i], now_s, now_s, 'BYSCORE', 'LIMIT', 0, 1)
  if hit[1] then
    redis.call('ZREM', KEYS[i], hit[1])
    given = given + 1
  end
end
return given
