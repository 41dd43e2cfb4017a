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

-- The reply doubles as the per-key state: [j] ok, [j+1] count (remaining once done),
-- [j+2] oldest entry's score or false, [j+3] filled in the second pass.
local n = #KEYS
local reply = {1, now}
for i = 1, n do
  local window = tonumber(ARGV[2 * i + 1])
  -- An entry admitted at t stops counting at exactly t + window.
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', string.format('%d', now - window))
  local count = redis.call('ZCARD', KEYS[i])
  local oldest = false
  if count > 0 then
    oldest = tonumber(redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')[2])
  end
  local j = 4 * i - 1
  if count < tonumber(ARGV[2 * i]) then
    reply[j] = 1
  else
    reply[j] = 0
    reply[1] = 0
  end
  reply[j + 1] = count
  reply[j + 2] = oldest
end

local admitted = reply[1] == 1
local now_s = admitted and string.format('%d', now)
for i = 1, n do
  local window = tonumber(ARGV[2 * i + 1])
  local j = 4 * i - 1
  local count, oldest = reply[j + 1], reply[j + 2]
  if admitted then
    -- Members must be unique per key, or ZADD would replace an entry instead of adding one.
    -- "<now>:<count before the append>" is unique while the clock only moves forward; if it
    -- stepped back, an older entry may hold that member, so move on to the next free suffix.
    -- ZADD NX adds nothing (returns 0) when the member exists.
    local seq = count
    while redis.call('ZADD', KEYS[i], 'NX', now_s, now_s .. ':' .. string.format('%d', seq)) == 0 do
      seq = seq + 1
    end
    redis.call('PEXPIRE', KEYS[i], string.format('%d', math.ceil(window / 1000)))
    count = count + 1
    if not oldest then oldest = now end
  end
  local reset = now + window
  if oldest then reset = oldest + window end
  local retry = 0
  if not admitted and reply[j] == 0 then
    retry = reset - now
  end
  local remaining = tonumber(ARGV[2 * i]) - count
  if remaining < 0 then remaining = 0 end
  reply[j + 1] = remaining
  reply[j + 2] = reset
  reply[j + 3] = retry
end
return reply
