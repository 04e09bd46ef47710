-- Admit one request of a consumer, atomically: concurrency, then tokens.
-- KEYS[1] ZSET of the consumer's concurrency slots, scored by expiry (ms)
-- KEYS[2] HASH of the consumer's token buckets: bucket number -> tokens
-- ARGV[1] slot id, ARGV[2] concurrency limit (0 = off), ARGV[3] slot TTL ms,
-- ARGV[4] token limit (0 = off), ARGV[5] bucket width ms, ARGV[6] buckets per
-- window, ARGV[7] tokens to reserve (already clamped to the limit)
-- Returns {allowed 0|1, reason, limit, remaining, reset ms, bucket}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local conc = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local width = tonumber(ARGV[5])
local nb = tonumber(ARGV[6])
local est = tonumber(ARGV[7])

if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= conc then
    return {0, 'concurrency', conc, 0, 0, 0}
  end
end

local cur = 0
local remaining = 0
local reset = 0
if limit > 0 then
  cur = math.floor(now / width)
  local oldest = cur - nb
  local kv = redis.call('HGETALL', KEYS[2])
  local buckets = {}
  local sum = 0
  for i = 1, #kv, 2 do
    local u = tonumber(kv[i])
    local v = tonumber(kv[i + 1])
    if u == nil or v == nil or u < oldest or v <= 0 then
      redis.call('HDEL', KEYS[2], kv[i])
    else
      sum = sum + v
      buckets[#buckets + 1] = {u, v}
    end
  end
  table.sort(buckets, function(a, b) return a[1] < b[1] end)
  if sum + est > limit then
    local need = sum + est - limit
    local freed = 0
    reset = (cur + nb + 1) * width - now
    for _, b in ipairs(buckets) do
      freed = freed + b[2]
      if freed >= need then
        reset = (b[1] + nb + 1) * width - now
        break
      end
    end
    return {0, 'tokens', limit, math.max(limit - sum, 0), reset, 0}
  end
  if est > 0 then
    redis.call('HINCRBY', KEYS[2], cur, est)
  end
  sum = sum + est
  remaining = limit - sum
  if est > 0 then
    reset = (cur + nb + 1) * width - now
  elseif #buckets > 0 then
    reset = (buckets[#buckets][1] + nb + 1) * width - now
  end
  if sum > 0 then
    redis.call('PEXPIRE', KEYS[2], (nb + 2) * width)
  end
end

if conc > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {1, '', limit, remaining, reset, cur}
