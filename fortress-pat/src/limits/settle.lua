-- Settles one call: returns rate units and replaces budget reservations by usage.
-- KEYS: nr rate keys, then nb budget keys.
-- ARGV: nr, nb, request id; per rate: interval_us, refund (negative: take more); per
--       budget: used_tokens, used_micros, ttl_seconds.
-- A reservation is released only while its lease is held: if it expired and was already
-- released by an admission, releasing it again would free room other calls reserved.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nr = tonumber(ARGV[1])
local nb = tonumber(ARGV[2])
local request_id = ARGV[3]
for i = 1, nr do
  local interval = tonumber(ARGV[2 + 2 * i])
  local refund = tonumber(ARGV[3 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tat = tat - refund * interval
  if tat > now then
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  else
    redis.call('DEL', KEYS[i])
  end
end
local base = 4 + 2 * nr
for j = 1, nb do
  local a = base + 3 * (j - 1)
  local key = KEYS[nr + j]
  local member = request_id .. '#' .. j
  if request_id ~= '' and redis.call('ZREM', key .. ':leases', member) == 1 then
    local r = redis.call('HGET', key .. ':res', member)
    if r then
      local sep = string.find(r, ':', 1, true)
      local rt = tonumber(redis.call('HGET', key, 'reserved_tokens') or '0') - tonumber(string.sub(r, 1, sep - 1))
      local rm = tonumber(redis.call('HGET', key, 'reserved_micros') or '0') - tonumber(string.sub(r, sep + 1))
      if rt < 0 then rt = 0 end
      if rm < 0 then rm = 0 end
      redis.call('HSET', key, 'reserved_tokens', string.format('%.0f', rt), 'reserved_micros', string.format('%.0f', rm))
      redis.call('HDEL', key .. ':res', member)
    end
  end
  redis.call('HINCRBY', key, 'used_tokens', ARGV[a])
  redis.call('HINCRBY', key, 'used_micros', ARGV[a + 1])
  redis.call('EXPIRE', key, ARGV[a + 2])
end
return 1
