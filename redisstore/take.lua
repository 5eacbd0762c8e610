-- sluice's shared token bucket: take up to ARGV[3] tokens for a local lease,
-- after giving back ARGV[4] unspent tokens of the previous one.
-- KEYS[1] bucket hash {t = tokens, ts = server time in µs of t}
-- ARGV: rps, burst, want, giveback
-- returns {got, tokens left ×1000 (floor), µs until the bucket holds want
-- tokens (at least 1, at most burst) when got is 0, else 0}
local rps = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local back = tonumber(ARGV[4])
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
local st = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(st[1])
local ts = tonumber(st[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = tokens + (now - ts) * rps / 1000000
end
tokens = math.min(burst, tokens + back)
local got = 0
local wait = 0
if tokens >= 1 then
  got = math.min(want, math.floor(tokens))
  tokens = tokens - got
else
  -- Until the bucket holds what was asked for (at most burst): a replica
  -- that asks again sooner would only get a token at a time.
  local need = math.max(1, math.min(want, burst))
  wait = math.ceil((need - tokens) * 1000000 / rps)
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
-- A bucket left alone refills to full; then its state says nothing.
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rps) + 1000)
return {got, math.floor(tokens * 1000), wait}
