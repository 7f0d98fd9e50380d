-- Seeds a budget counter's settled usage after a restart, unless already known.
-- KEYS[1]: budget key. ARGV: used_tokens, used_micros, ttl_seconds.
if redis.call('HSETNX', KEYS[1], 'used_tokens', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'used_micros', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
