-- Token bucket give-back: undo one refused request's consumption on a Redis
-- Cluster slot group (docs/semantics.md §11.1).
-- KEYS[1..n]: the group's hashes {t = scaled tokens, u = updated_us}.
-- ARGV[1]: the request's now_us (always explicit). ARGV[2i], ARGV[2i+1]: limit
-- and window_us of KEYS[i].
-- Reply: how many keys were given back. After the §3.3 refill to
-- max(now_us, updated_us) one token is added, capped at the capacity: by
-- §3.3's min identity, the state the bucket would have had without the
-- consumption. Missing state is a full bucket: nothing to give back.
local now = tonumber(ARGV[1])

-- Least q with q*b >= a, for a >= 0 and b > 0, immune to rounding of a / b.
local function ceil_div(a, b)
  local q = math.floor(a / b)
  while q * b < a do q = q + 1 end
  while q > 0 and (q - 1) * b >= a do q = q - 1 end
  return q
end

local given = 0
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  local capacity = limit * window
  local s = redis.call('HMGET', KEYS[i], 't', 'u')
  if s[1] then
    local updated = tonumber(s[2])
    local at = now
    if updated > at then at = updated end
    local elapsed = at - updated
    if elapsed > window then elapsed = window end
    local scaled = tonumber(s[1]) + elapsed * limit + window
    if scaled > capacity then scaled = capacity end
    local reset = at + ceil_div(capacity - scaled, limit)
    redis.call('HSET', KEYS[i], 't', string.format('%d', scaled), 'u', string.format('%d', at))
    redis.call('PEXPIREAT', KEYS[i], string.format('%d', ceil_div(reset, 1000)))
    given = given + 1
  end
end
return given
