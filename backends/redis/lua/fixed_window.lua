-- Fixed window, all dimensions of one request in one call (docs/semantics.md §3.1, §4, §9).
-- KEYS[1..n]: one key per dimension. ARGV[1]: now_us override or "" for Redis TIME.
-- ARGV[2i], ARGV[2i+1]: limit and window_us of KEYS[i].
-- Reply: {admitted, now_us, then per key: ok, remaining, reset_at_us, retry_after_us}.
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local n = #KEYS
local limit, window, start, count, ok, current = {}, {}, {}, {}, {}, {}
local admitted = 1
for i = 1, n do
  limit[i] = tonumber(ARGV[2 * i])
  window[i] = tonumber(ARGV[2 * i + 1])
  start[i] = now - (now % window[i])
  local s = redis.call('HMGET', KEYS[i], 's', 'c')
  -- State from an earlier window counts as an empty window.
  current[i] = s[1] and tonumber(s[1]) == start[i]
  if current[i] then
    count[i] = tonumber(s[2])
  else
    count[i] = 0
  end
  ok[i] = count[i] < limit[i]
  if not ok[i] then admitted = 0 end
end

local reply = {admitted, now}
for i = 1, n do
  local window_end = start[i] + window[i]
  local retry = 0
  if admitted == 1 then
    count[i] = count[i] + 1
    if current[i] then
      -- The window's first admission set its expiry; a field update keeps it.
      redis.call('HSET', KEYS[i], 'c', string.format('%d', count[i]))
    else
      redis.call('HSET', KEYS[i], 's', string.format('%d', start[i]), 'c', '1')
      redis.call('PEXPIREAT', KEYS[i], string.format('%d', window_end / 1000))
    end
  elseif not ok[i] then
    retry = window_end - now
  end
  local remaining = limit[i] - count[i]
  if remaining < 0 then remaining = 0 end
  reply[#reply + 1] = ok[i] and 1 or 0
  reply[#reply + 1] = remaining
  reply[#reply + 1] = window_end
  reply[#reply + 1] = retry
end
return reply
