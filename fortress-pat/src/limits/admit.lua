-- Admits one call against rate buckets (GCRA) and budgets, all or nothing.
-- KEYS: nr rate keys, then nb budget keys.
-- ARGV: nr, nb, request id, lease_us; per rate: interval_us, amount; per budget:
--       max_tokens, max_micros (-1: no cap), tokens, micros, ttl_seconds.
-- A budget key K is a hash (used_*, reserved_*); K..':leases' a sorted set of request ids
-- by lease expiry and K..':res' their reserved "tokens:micros". Reservations whose lease
-- expired (a replica died before settling) are released first.
-- Returns: admitted (1/0), refused budget index (1-based, 0: none), slowest rate index
--          (1-based, 0: none), retry_us, then per rate: remaining, reset_us.
local window = 60000000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nr = tonumber(ARGV[1])
local nb = tonumber(ARGV[2])
local request_id = ARGV[3]
local lease_us = tonumber(ARGV[4])

local function release_expired(key)
  local expired = redis.call('ZRANGEBYSCORE', key .. ':leases', '-inf', now)
  for _, id in ipairs(expired) do
    local r = redis.call('HGET', key .. ':res', id)
    if r then
      local sep = string.find(r, ':', 1, true)
      local tok = tonumber(string.sub(r, 1, sep - 1))
      local mic = tonumber(string.sub(r, sep + 1))
      local rt = tonumber(redis.call('HGET', key, 'reserved_tokens') or '0') - tok
      local rm = tonumber(redis.call('HGET', key, 'reserved_micros') or '0') - mic
      if rt < 0 then rt = 0 end
      if rm < 0 then rm = 0 end
      redis.call('HSET', key, 'reserved_tokens', string.format('%.0f', rt), 'reserved_micros', string.format('%.0f', rm))
      redis.call('HDEL', key .. ':res', id)
    end
    redis.call('ZREM', key .. ':leases', id)
  end
end

local tats = {}
local news = {}
local retry = 0
local rate_index = 0
for i = 1, nr do
  local interval = tonumber(ARGV[3 + 2 * i])
  local amount = tonumber(ARGV[4 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  news[i] = tat + amount * interval
  local over = news[i] - now - window
  if over > 0 and over > retry then
    retry = over
    rate_index = i
  end
end
local base = 5 + 2 * nr
local budget_index = 0
for j = 1, nb do
  local key = KEYS[nr + j]
  release_expired(key)
  local a = base + 5 * (j - 1)
  local max_t = tonumber(ARGV[a])
  local max_m = tonumber(ARGV[a + 1])
  local tok = tonumber(ARGV[a + 2])
  local mic = tonumber(ARGV[a + 3])
  local v = redis.call('HMGET', key, 'used_tokens', 'reserved_tokens', 'used_micros', 'reserved_micros')
  local ut, rt = tonumber(v[1] or '0'), tonumber(v[2] or '0')
  local um, rm = tonumber(v[3] or '0'), tonumber(v[4] or '0')
  if budget_index == 0 and ((max_t >= 0 and ut + rt + tok > max_t) or (max_m >= 0 and um + rm + mic > max_m)) then
    budget_index = j
  end
end
local admitted = rate_index == 0 and budget_index == 0
if admitted then
  for i = 1, nr do
    tats[i] = news[i]
    local ttl = math.ceil((news[i] - now) / 1000) + 1000
    redis.call('SET', KEYS[i], string.format('%.0f', news[i]), 'PX', ttl)
  end
  for j = 1, nb do
    local key = KEYS[nr + j]
    local a = base + 5 * (j - 1)
    redis.call('HINCRBY', key, 'reserved_tokens', ARGV[a + 2])
    redis.call('HINCRBY', key, 'reserved_micros', ARGV[a + 3])
    -- One lease per budget entry: two rules may count the same key.
    local member = request_id .. '#' .. j
    redis.call('ZADD', key .. ':leases', string.format('%.0f', now + lease_us), member)
    redis.call('HSET', key .. ':res', member, ARGV[a + 2] .. ':' .. ARGV[a + 3])
    redis.call('EXPIRE', key, ARGV[a + 4])
    redis.call('EXPIRE', key .. ':leases', ARGV[a + 4])
    redis.call('EXPIRE', key .. ':res', ARGV[a + 4])
  end
end
local out = {admitted and 1 or 0, budget_index, rate_index, math.ceil(retry)}
for i = 1, nr do
  local interval = tonumber(ARGV[3 + 2 * i])
  local busy = tats[i] - now
  if busy < 0 then busy = 0 end
  local remaining = math.floor((window - busy) / interval)
  if remaining < 0 then remaining = 0 end
  out[#out + 1] = remaining
  out[#out + 1] = math.ceil(busy)
end
return out
