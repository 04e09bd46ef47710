-- Settle one admitted request: free its slot, replace its estimate by the
-- tokens it used.
-- KEYS[1] ZSET of concurrency slots, KEYS[2] HASH of token buckets
-- ARGV[1] slot id ('' when no slot was taken), ARGV[2] bucket of the
-- estimate, ARGV[3] estimate, ARGV[4] tokens used, ARGV[5] bucket width ms
-- (0 when no token limit applied), ARGV[6] buckets per window
if ARGV[1] ~= '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
local width = tonumber(ARGV[5])
if width <= 0 then
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = math.floor(now / width)
local nb = tonumber(ARGV[6])
local unit = tonumber(ARGV[2])
local est = tonumber(ARGV[3])
local used = tonumber(ARGV[4])
if est > 0 and unit >= cur - nb then
  local v = redis.call('HINCRBY', KEYS[2], unit, -est)
  if v <= 0 then
    redis.call('HDEL', KEYS[2], unit)
  end
end
if used > 0 then
  redis.call('HINCRBY', KEYS[2], cur, used)
  redis.call('PEXPIRE', KEYS[2], (nb + 2) * width)
end
return 1
