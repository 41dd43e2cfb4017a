-- Token bucket with continuous refill, all dimensions of one request in one call
-- (docs/semantics.md §3.3, §4, §9). Tokens are held scaled by window_us so that
-- every quantity is an integer below 2^53, exact in Lua's doubles.
-- KEYS[1..n]: one hash per dimension {t = scaled tokens, u = updated_us}.
-- ARGV[1]: now_us override or "" for Redis TIME.
-- ARGV[2i], ARGV[2i+1]: limit and window_us of KEYS[i].
-- Reply: {admitted, now_us, then per key: ok, remaining, reset_at_us, retry_after_us}.
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Least q with q*b >= a, for a >= 0 and b > 0, immune to rounding of a / b.
local function ceil_div(a, b)
  local q = math.floor(a / b)
  while q * b < a do q = q + 1 end
  while q > 0 and (q - 1) * b >= a do q = q - 1 end
  return q
end

-- Greatest q with q*b <= a, for a >= 0 and b > 0.
local function floor_div(a, b)
  local q = math.floor(a / b)
  while q > 0 and q * b > a do q = q - 1 end
  while (q + 1) * b <= a do q = q + 1 end
  return q
end

-- The reply doubles as the per-key state: [j] ok, [j+1] scaled tokens (remaining
-- tokens once done), [j+2] and [j+3] filled in the second pass.
local n = #KEYS
local reply = {1, now}
for i = 1, n do
  local limit, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local capacity = limit * window
  local scaled = capacity
  local s = redis.call('HMGET', KEYS[i], 't', 'u')
  if s[1] then
    local elapsed = now - tonumber(s[2])
    if elapsed < 0 then elapsed = 0 end
    if elapsed > window then elapsed = window end
    scaled = tonumber(s[1]) + elapsed * limit
    if scaled > capacity then scaled = capacity end
  end
  local j = 4 * i - 1
  if scaled >= window then
    reply[j] = 1
  else
    reply[j] = 0
    reply[1] = 0
  end
  reply[j + 1] = scaled
end

local admitted = reply[1] == 1
for i = 1, n do
  local limit, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local j = 4 * i - 1
  local scaled = reply[j + 1]
  local retry = 0
  if admitted then
    scaled = scaled - window
  end
  local reset = now + ceil_div(limit * window - scaled, limit)
  if admitted then
    redis.call('HSET', KEYS[i], 't', string.format('%d', scaled), 'u', string.format('%d', now))
    redis.call('PEXPIREAT', KEYS[i], string.format('%d', ceil_div(reset, 1000)))
  elseif reply[j] == 0 then
    retry = ceil_div(window - scaled, limit)
  end
  reply[j + 1] = floor_div(scaled, window)
  reply[j + 2] = reset
  reply[j + 3] = retry
end
return reply
