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

-- The reply doubles as the per-key state: [j] ok, [j+1] count (remaining once done),
-- [j+2] window end, [j+3] retry; fresh[i] marks a key whose stored window is over.
local n = #KEYS
local reply = {1, now}
local fresh = {}
for i = 1, n do
  local window = tonumber(ARGV[2 * i + 1])
  local start = now - now % window
  local s = redis.call('HMGET', KEYS[i], 's', 'c')
  local count = 0
  -- State from an earlier window counts as an empty window.
  if s[1] and tonumber(s[1]) == start then
    count = tonumber(s[2])
  else
    fresh[i] = start
  end
  local j = 4 * i - 1
  if count < tonumber(ARGV[2 * i]) then
    reply[j] = 1
  else
    reply[j] = 0
    reply[1] = 0
  end
  reply[j + 1] = count
  reply[j + 2] = start + window
  reply[j + 3] = 0
end

local admitted = reply[1] == 1
for i = 1, n do
  local j = 4 * i - 1
  local count = reply[j + 1]
  if admitted then
    count = count + 1
    local start = fresh[i]
    if start then
      redis.call('HSET', KEYS[i], 's', string.format('%d', start), 'c', '1')
      redis.call('PEXPIREAT', KEYS[i], string.format('%d', reply[j + 2] / 1000))
    else
      -- The window's first admission set its expiry; a field update keeps it.
      redis.call('HSET', KEYS[i], 'c', count)
    end
  elseif reply[j] == 0 then
    reply[j + 3] = reply[j + 2] - now
  end
  local remaining = tonumber(ARGV[2 * i]) - count
  if remaining < 0 then remaining = 0 end
  reply[j + 1] = remaining
end
return reply
