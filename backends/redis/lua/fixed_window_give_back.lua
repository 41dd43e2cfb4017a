-- Fixed window give-back: undo one refused request's consumption on a Redis
-- Cluster slot group (docs/semantics.md §11.1).
-- KEYS[1..n]: the group's keys, as the request's fixed_window.lua call had them.
-- ARGV[1]: the request's now_us (always explicit). ARGV[2i], ARGV[2i+1]: limit
-- and window_us of KEYS[i].
-- Reply: how many keys were given back (a key whose window has ended is not:
-- the new window never counted the request).
local now = tonumber(ARGV[1])
local given = 0
for i = 1, #KEYS do
  local window = tonumber(ARGV[2 * i + 1])
  local start = now - (now % window)
  local s = redis.call('HMGET', KEYS[i], 's', 'c')
  if s[1] and tonumber(s[1]) == start and tonumber(s[2]) > 0 then
    redis.call('HSET', KEYS[i], 'c', string.format('%d', tonumber(s[2]) - 1))
    given = given + 1
  end
end
return given
