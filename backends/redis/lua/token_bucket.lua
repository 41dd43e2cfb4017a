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

local n = #KEYS
local limit, window, scaled, ok = {}, {}, {}, {}
local admitted = 1
for i = 1, n do
  limit[i] = tonumber(ARGV[2 * i])
  window[i] = tonumber(ARGV[2 * i + 1])
  local capacity = limit[i] * window[i]
  local s = redis.call('HMGET', KEYS[i], 't', 'u')
  if s[1] then
    local elapsed = now - tonumber(s[2])
    if elapsed < 0 then elapsed = 0 end
    if elapsed > window[i] then elapsed = window[i] end
    scaled[i] = tonumber(s[1]) + elapsed * limit[i]
    if scaled[i] > capacity then scaled[i] = capacity end
  else
    scaled[i] = capacity
  end
  ok[i] = scaled[i] >= window[i]
  if not ok[i] then admitted = 0 end
end

local reply = {admitted, now}
for i = 1, n do
  local capacity = limit[i] * window[i]
  local retry = 0
  if admitted == 1 then
    scaled[i] = scaled[i] - window[i]
  end
  local reset = now + ceil_div(capacity - scaled[i], limit[i])
  if admitted == 1 then
    redis.call('HSET', KEYS[i], 't', string.format('%d', scaled[i]), 'u', string.format('%d', now))
    redis.call('PEXPIREAT', KEYS[i], string.format('%d', ceil_div(reset, 1000)))
  elseif not ok[i] then
    retry = ceil_div(window[i] - scaled[i], limit[i])
  end
  reply[#reply + 1] = ok[i] and 1 or 0
  reply[#reply + 1] = floor_div(scaled[i], window[i])
  reply[#reply + 1] = reset
  reply[#reply + 1] = retry
end
return reply
