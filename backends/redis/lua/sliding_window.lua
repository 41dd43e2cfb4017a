-- Sliding window (exact log), all dimensions of one request in one call
-- (docs/semantics.md §3.2, §4, §9).
-- KEYS[1..n]: one sorted set per dimension, score = admission time in µs.
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
local now_s = string.format('%d', now)

local n = #KEYS
local limit, window, count, oldest, ok = {}, {}, {}, {}, {}
local admitted = 1
for i = 1, n do
  limit[i] = tonumber(ARGV[2 * i])
  window[i] = tonumber(ARGV[2 * i + 1])
  -- An entry admitted at t stops counting at exactly t + window.
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', string.format('%d', now - window[i]))
  count[i] = redis.call('ZCARD', KEYS[i])
  oldest[i] = nil
  if count[i] > 0 then
    local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    oldest[i] = tonumber(first[2])
  end
  ok[i] = count[i] < limit[i]
  if not ok[i] then admitted = 0 end
end

local reply = {admitted, now}
for i = 1, n do
  local retry = 0
  if admitted == 1 then
    -- Members must be unique per key, or ZADD would replace an entry instead of adding one.
    -- "<now>:<count before the append>" is unique while the clock only moves forward; if it
    -- stepped back, an older entry may hold that member, so move on to the next free suffix.
    -- ZADD NX adds nothing (returns 0) when the member exists.
    local seq = count[i]
    while redis.call('ZADD', KEYS[i], 'NX', now_s, now_s .. ':' .. string.format('%d', seq)) == 0 do
      seq = seq + 1
    end
    redis.call('PEXPIRE', KEYS[i], string.format('%d', math.ceil(window[i] / 1000)))
    count[i] = count[i] + 1
    if oldest[i] == nil then oldest[i] = now end
  end
  local reset = now + window[i]
  if oldest[i] ~= nil then reset = oldest[i] + window[i] end
  if admitted == 0 and not ok[i] then
    retry = reset - now
  end
  local remaining = limit[i] - count[i]
  if remaining < 0 then remaining = 0 end
  reply[#reply + 1] = ok[i] and 1 or 0
  reply[#reply + 1] = remaining
  reply[#reply + 1] = reset
  reply[#reply + 1] = retry
end
return reply
