-- consume.lua: check both daily caps and count one message, atomically (one round trip).
--
-- KEYS[1]  the sender's counter for today    (<prefix>:YYYY-MM-DD:<email>)
-- KEYS[2]  the server-wide counter for today (<prefix>:YYYY-MM-DD:global)
-- KEYS[3]  the violations list               (<prefix>:violations)
-- ARGV[1]  n: recipients of this message (>= 1)
-- ARGV[2]  the sender's cap; 0 = the sender has no cap (it is still counted)
-- ARGV[3]  the server-wide cap (>= 1)
-- ARGV[4]  "count" (end of data) or "check" (RCPT pre-check: never counts)
-- ARGV[5]  "1" = enforce; "0" = log-only: a message over a cap is counted anyway
-- ARGV[6]  TTL in seconds given to a counter when it is created
-- ARGV[7]  how many violations the list keeps
-- ARGV[8]  now, unix seconds          (violation record)
-- ARGV[9]  the sender's address       (violation record)
-- ARGV[10] the SMTP client's address  (violation record)
--
-- Reply: {verdict, m, g}: verdict 0 = fits, 1 = over the sender's cap, 2 = over the server-wide
-- cap; m and g are the counts before this message. Over a cap, a JSON violation record is pushed
-- onto KEYS[3] (newest first) and the list trimmed. Counters only grow when the whole message
-- fits (or in log-only mode), so a refused burst burns no quota.

local n = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local gcap = tonumber(ARGV[3])
local m = tonumber(redis.call('GET', KEYS[1]) or '0')
local g = tonumber(redis.call('GET', KEYS[2]) or '0')
local enforce = ARGV[5] == '1'

local verdict, kind, limit, count = 0, nil, 0, 0
if cap > 0 and m + n > cap then
  verdict, kind, limit, count = 1, 'user', cap, m
elseif g + n > gcap then
  verdict, kind, limit, count = 2, 'global', gcap, g
end

if verdict ~= 0 then
  local record = string.format(
    '{"ts":%d,"type":"%s","user":%s,"limit":%d,"count":%d,"rcpt":%d,"ip":%s,"enforced":%s}',
    tonumber(ARGV[8]), kind, cjson.encode(ARGV[9]), limit, count, n, cjson.encode(ARGV[10]),
    enforce and 'true' or 'false')
  redis.call('LPUSH', KEYS[3], record)
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[7]) - 1)
end

if ARGV[4] == 'count' and (verdict == 0 or not enforce) then
  local ttl = tonumber(ARGV[6])
  if redis.call('INCRBY', KEYS[1], n) == n then
    redis.call('EXPIRE', KEYS[1], ttl)
  end
  if redis.call('INCRBY', KEYS[2], n) == n then
    redis.call('EXPIRE', KEYS[2], ttl)
  end
end

return {verdict, m, g}
